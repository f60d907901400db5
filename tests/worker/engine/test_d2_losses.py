"""The Detectron2 backend's dampened loss at the level of its heads: noisy anchors at weight 0, and
matching with negatives and ignore regions. The identities against Detectron2's stock heads (no noisy
boxes, lambda_d = 1, linearity) are test_losses.py's, run on both backends."""

from __future__ import annotations

import pytest
import torch

from worker.engine.d2 import MISSING, available
from worker.engine.losses import NOISY_ANCHOR
from worker.engine.presets import get_preset

pytestmark = pytest.mark.skipif(not available(), reason=MISSING)


def _build(arch: str, **kwargs):  # type: ignore[no-untyped-def]
    from worker.engine.d2 import build_d2_detector

    return build_d2_detector(get_preset(f"{arch}_r50_fpn"), 3, min_size=128, max_size=128, **kwargs)


def test_rpn_noisy_anchors_get_zero_gradient_at_lambda_zero_and_stay_foreground() -> None:
    from detectron2.structures import Boxes
    from detectron2.utils.events import EventStorage

    rpn = _build("faster_rcnn").model.proposal_generator
    anchors = [Boxes(torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]]))]
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.3]], requires_grad=True)
    deltas = torch.randn(1, 4, 4, requires_grad=True)
    labels = [torch.tensor([1.0, 0.0, NOISY_ANCHOR, NOISY_ANCHOR + 1.0])]  # noisy at weight 0, and at 1
    boxes = [torch.tensor([[0.0, 0, 11, 11], [0, 0, 1, 1], [40, 0, 52, 11], [60, 0, 71, 12]])]
    with EventStorage(0):
        terms = rpn.losses(anchors, [logits], labels, [deltas], boxes)
    sum(terms.values()).backward()
    assert logits.grad[0, 2] == 0 and deltas.grad[0, 2].abs().max() == 0  # weight 0: no gradient
    assert logits.grad[0, 3] < 0  # the same noisy anchor at weight 1 is pushed towards foreground
    assert logits.grad[0, 0] < 0 and logits.grad[0, 1] > 0


def test_matching_turns_anchors_on_a_negative_to_background_and_on_an_ignore_region_to_ignored() -> None:
    """Detectron2's matcher, then regions.py's rules, in Detectron2's labels (1, 0, -1)."""
    from detectron2.modeling.matcher import Matcher
    from detectron2.structures import Boxes

    from worker.engine.d2.matching import match

    anchors = Boxes(
        torch.tensor(
            [
                [0.0, 0, 10, 10],  # on the labeled box (a negative there too: the label wins)
                [20.0, 0, 30, 10],  # on the noisy box and on a negative: the negative wins
                [40.0, 0, 50, 10],  # on a negative only
                [60.0, 0, 70, 10],  # on the ignore region
                [80.0, 0, 90, 10],  # nowhere: background
            ]
        )
    )
    boxes = Boxes(torch.tensor([[0.0, 0, 10, 10], [20.0, 0, 30, 10]]))
    target = {
        "boxes": boxes.tensor,
        "noisy": torch.tensor([False, True]),
        "negatives": torch.tensor([[20.0, 0, 30, 10], [40.0, 0, 50, 10], [0.0, 0, 10, 10]]),
        "ignore": torch.tensor([[60.0, 0, 70, 10]]),
    }
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    matched, labels = match(matcher, boxes, anchors, target)
    assert labels.tolist() == [1, 0, 0, -1, 0] and matched[0] == 0
    _, stock_labels = match(matcher, boxes, anchors, {"boxes": boxes.tensor})
    assert stock_labels.tolist() == [1, 1, 0, 0, 0]  # without regions: the matcher's own answer
