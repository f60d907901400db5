"""The project settings of ``unit: auto`` (app/rounds/unit.py): its quality gate, what it measures on, and
the annotator cost model it weighs, which a team can set to its own figures."""

from __future__ import annotations

from pydantic import Field

from app.schemas import Strict


class AnnotatorCosts(Strict):
    """What an annotator's actions cost, in seconds (defaults: the studies oracle/cost.py cites)."""

    verify_s: float = Field(
        1.6, gt=0, le=3600, description="verify a box: accept it, or call it background or a duplicate "
        "(Papadopoulos et al., CVPR 2016)",
    )  # fmt: skip
    draw_s: float = Field(
        7.0, gt=0, le=3600, description="draw or redraw a tight box (extreme clicking, Papadopoulos et al., "
        "ICCV 2017)",
    )  # fmt: skip
    image_s: float = Field(
        1.0, ge=0, le=3600, description="look over an image and decide it holds no more objects (Bearman "
        "et al., ECCV 2016)",
    )  # fmt: skip


class AutoSettings(Strict):
    """Read only when ``unit`` is auto."""

    auto_min_recall: float = Field(
        0.7,
        ge=0,
        le=1,
        description="unit auto: box queries are served only when the model's predictions cover at least this "
        "share of the objects on recently completed images (the rest of a box-queried image stays unknown)",
    )
    auto_window: int = Field(
        40, ge=1, le=10_000, description="unit auto: the most recently completed images it measures"
    )
    auto_min_images: int = Field(
        5, ge=1, le=10_000, description="unit auto: with fewer completed images measured, review is served"
    )
    annotator_costs: AnnotatorCosts = Field(
        default_factory=AnnotatorCosts,
        description="seconds per annotator action, which unit auto weighs (enter your team's own)",
    )
