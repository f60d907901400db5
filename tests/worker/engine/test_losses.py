"""The dampened loss against stock torchvision, and its properties (DESIGN.md, "The dampened loss")."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from app.rounds.training_set import TargetBox, TrainingImage, with_noisy_mode
from worker.engine.d2 import MISSING as D2_MISSING
from worker.engine.d2 import available as d2_available
from worker.engine.data import target_tensors
from worker.engine.detector import Detector, build_detector
from worker.engine.losses import NOISY_ANCHOR, anchor_weights, fastrcnn_loss, focal_loss, rpn_loss
from worker.engine.presets import get_preset

ARCHS = ["faster_rcnn", "retinanet"]
TOL = 1e-6
# the identities hold for both backends: torchvision's lite presets, and Detectron2's model-zoo R-50 FPN
# configs against Detectron2's own stock heads (worker/engine/d2/; skipped where it is not installed)
WITH_DETECTRON2 = pytest.mark.skipif(not d2_available(), reason=D2_MISSING)
BACKENDS = [
    *(pytest.param("torchvision", arch, id=f"torchvision-{arch}") for arch in ARCHS),
    *(pytest.param("detectron2", arch, id=f"detectron2-{arch}", marks=WITH_DETECTRON2) for arch in ARCHS),
]


def _pair(arch: str, backend: str = "torchvision") -> tuple[Detector, Detector]:
    """A dampened detector and a stock one of the same backend with identical weights."""
    preset = get_preset(f"{arch}_r18_fpn_lite" if backend == "torchvision" else f"{arch}_r50_fpn")
    torch.manual_seed(0)
    common = {"weights": "none", "min_size": 128, "max_size": 128, "backend": backend}
    dampened = build_detector(preset, 3, **common)  # type: ignore[arg-type]
    stock = build_detector(preset, 3, dampened=False, **common)  # type: ignore[arg-type]
    stock.model.load_state_dict(dampened.model.state_dict())
    return dampened, stock


def record(path: str, boxes: list, labels: list[int], noisy: list[bool] | None = None) -> TrainingImage:
    """A training record from parallel lists (compact to write in tests)."""
    flags = noisy or [False] * len(boxes)
    return TrainingImage(
        path, [TargetBox(b, c, noisy=n) for b, c, n in zip(boxes, labels, flags, strict=True)]
    )


def apply_noisy_mode(item: TrainingImage, mode: str) -> TrainingImage:
    return with_noisy_mode(item, mode, lambda_d=0.5)  # type: ignore[arg-type]


def _batch() -> tuple[list[Tensor], list[TrainingImage]]:
    torch.manual_seed(1)
    images = [torch.rand(3, 128, 128) for _ in range(3)]
    items = [
        record(
            "a", [[10, 12, 50, 60], [60, 62, 110, 120], [20, 70, 45, 100]], [0, 2, 1], [False, True, False]
        ),
        record("b", [[5, 5, 40, 40], [70, 20, 120, 90]], [1, 1], [True, True]),
        record("c", [], [], []),  # an image with no objects
    ]
    return images, items


def _losses(
    detector: Detector,
    images: list[Tensor],
    items: list[TrainingImage],
    lambda_d: float = 1.0,
) -> dict[str, Tensor]:
    """The detector's loss terms with noisy boxes weighing ``lambda_d`` (stock torchvision reads no
    weights: it treats every box as a label)."""
    detector.model.train()
    if hasattr(detector.model, "loss_normalizer"):  # Detectron2 RetinaNet's running mean: every call alike
        del detector.model.loss_normalizer
    targets = [target_tensors(with_noisy_mode(item, "dampen", lambda_d)) for item in items]
    torch.manual_seed(123)  # the samplers draw the same anchors and proposals every time
    return detector.losses(images, targets)


def _grads(detector: Detector, losses: dict[str, Tensor]) -> Tensor:
    detector.model.zero_grad()
    sum(losses.values()).backward()
    return torch.cat([p.grad.flatten() for p in detector.model.parameters() if p.grad is not None])


@pytest.mark.parametrize(("backend", "arch"), BACKENDS)
def test_without_noisy_boxes_every_term_equals_the_stock_loss(backend: str, arch: str) -> None:
    dampened, stock = _pair(arch, backend)
    images, items = _batch()
    clean = [record(i.path, [b.bbox for b in i.boxes], [b.label for b in i.boxes]) for i in items]
    ours = _losses(dampened, images, clean, lambda_d=0.5)
    theirs = _losses(stock, images, clean)
    assert set(ours) == set(theirs) and len(ours) == (4 if arch == "faster_rcnn" else 2)
    for name in theirs:
        assert abs(ours[name].item() - theirs[name].item()) <= TOL, (name, ours[name], theirs[name])
        assert theirs[name].item() > 0


@pytest.mark.parametrize(("backend", "arch"), BACKENDS)
def test_full_is_lambda_one_and_drop_removes_noisy_boxes(backend: str, arch: str) -> None:
    dampened, stock = _pair(arch, backend)
    images, items = _batch()
    as_labels = _losses(stock, images, [apply_noisy_mode(i, "full") for i in items])
    at_one = _losses(dampened, images, items, lambda_d=1.0)
    dropped = _losses(stock, images, [apply_noisy_mode(i, "drop") for i in items])
    drop_ours = _losses(dampened, images, [apply_noisy_mode(i, "drop") for i in items], lambda_d=0.5)
    at_zero = _losses(dampened, images, items, lambda_d=0.0)
    for name in as_labels:
        assert abs(at_one[name].item() - as_labels[name].item()) <= TOL, name
        assert abs(drop_ours[name].item() - dropped[name].item()) <= TOL, name
    # dropping is not the same as dampening to zero: dropped boxes' regions train as background
    assert any(abs(at_zero[n].item() - dropped[n].item()) > 1e-4 for n in dropped)


@pytest.mark.parametrize(("backend", "arch"), BACKENDS)
def test_loss_and_gradient_are_linear_in_lambda(backend: str, arch: str) -> None:
    dampened, _ = _pair(arch, backend)
    images, items = _batch()
    at = {lam: _losses(dampened, images, items, lambda_d=lam) for lam in (0.0, 0.25, 0.5, 1.0)}
    grads = {lam: _grads(dampened, at[lam]) for lam in (0.0, 0.25, 1.0)}
    for lam in (0.25, 0.5):
        for name in at[0.0]:
            expected = at[0.0][name] + lam * (at[1.0][name] - at[0.0][name])
            assert abs(at[lam][name].item() - expected.item()) <= TOL, (lam, name)
    noisy_part = grads[1.0] - grads[0.0]
    assert noisy_part.abs().max() > 1e-4  # the noisy boxes do contribute at lambda 1
    assert torch.allclose(grads[0.25] - grads[0.0], 0.25 * noisy_part, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_dampened_losses_train_under_mixed_precision(arch: str) -> None:
    """CUDA training autocasts (TrainConfig.amp): heads then give half-precision outputs while the
    smooth-L1 and cross-entropy terms run in float32. CPU autocast in bfloat16 takes the same mixed-dtype
    path, so a loss that writes one into a buffer of the other fails here as it would on a GPU."""
    dampened, _ = _pair(arch)
    images, items = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = _losses(dampened, images, items, lambda_d=0.5)
    grads = _grads(dampened, mixed)
    plain = _losses(dampened, images, items, lambda_d=0.5)
    for name, value in mixed.items():
        assert torch.isfinite(value), name
        assert abs(value.item() - plain[name].item()) <= 0.05 * abs(plain[name].item()) + 1e-3, name
    assert torch.isfinite(grads).all() and grads.abs().max() > 0


def test_rpn_noisy_anchors_get_zero_gradient_at_lambda_zero_and_stay_foreground() -> None:
    objectness = torch.tensor([[2.0], [-1.0], [0.5], [0.3], [-0.7]], requires_grad=True)
    deltas = torch.randn(5, 4, requires_grad=True)
    labels = [torch.tensor([1.0, 0.0, NOISY_ANCHOR, NOISY_ANCHOR, 0.0])]
    targets = [torch.randn(5, 4)]
    pos, neg = torch.tensor([0, 2, 3]), torch.tensor([1, 4])
    objectness_loss, box_loss = rpn_loss(objectness, deltas, labels, targets, pos, neg)  # noisy weight 0
    (objectness_loss + box_loss).backward()
    assert objectness.grad[2:4].abs().max() == 0 and deltas.grad[2:4].abs().max() == 0
    assert objectness.grad[[0, 1, 4]].abs().min() > 0
    # normalised by all 5 sampled anchors, as stock: the labeled anchors' share of the stock mean
    stock = (
        torch.nn.functional.binary_cross_entropy_with_logits(
            objectness.detach().flatten()[[0, 1, 4]], torch.tensor([1.0, 0.0, 0.0]), reduction="sum"
        )
        / 5
    )
    assert abs(objectness_loss.item() - stock.item()) <= TOL


def test_roi_and_focal_losses_weight_noisy_samples() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    regression = torch.randn(4, 12, requires_grad=True)
    labels = [torch.tensor([1, 2, 0, 2])]
    weights = [anchor_weights(torch.tensor([1.0, 0.0]), torch.tensor([0, 1, 0, 1]), labels[0] > 0)]
    assert weights[0].tolist() == [1.0, 0.0, 1.0, 0.0]  # background keeps weight 1 even if matched to 0
    cls, box = fastrcnn_loss(logits, regression, labels, [torch.randn(4, 4)], weights)
    (cls + box).backward()
    assert logits.grad[[1, 3]].abs().max() == 0 and logits.grad[[0, 2]].abs().min() > 0

    cls_logits = torch.randn(1, 5, 3, requires_grad=True)
    target = {
        "boxes": torch.zeros(2, 4),
        "labels": torch.tensor([0, 2]),
        "weights": torch.tensor([1.0, 0.0]),  # the second box is noisy, at lambda_d 0
    }
    matched = [torch.tensor([0, 1, -1, -2, 1])]
    loss = focal_loss(cls_logits, [target], matched, between_thresholds=-2)
    loss.backward()
    grad = cls_logits.grad[0]
    assert grad[[1, 4]].abs().max() == 0 and grad[3].abs().max() == 0  # noisy, and ignored
    assert grad[0].abs().min() > 0 and grad[2].abs().min() > 0  # labeled and background


# --- negatives, ignore regions, and the literal reading of Eq. 3 --------------------------------------


def test_anchors_near_a_negative_train_as_background_and_never_match_a_noisy_box() -> None:
    from worker.engine.regions import BACKGROUND, IGNORED, relabel

    anchors = torch.tensor(
        [
            [0.0, 0, 10, 10],  # on the labeled box
            [20.0, 0, 30, 10],  # on the noisy box, and on the negative just as well
            [40.0, 0, 50, 10],  # on the negative only (no target box there)
            [60.0, 0, 70, 10],  # on the ignore region
            [80.0, 0, 90, 10],  # nowhere: background
        ]
    )
    target = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [20.0, 0, 30, 10]]),
        "noisy": torch.tensor([False, True]),
        "negatives": torch.tensor([[20.0, 0, 30, 10], [40.0, 0, 50, 10], [0.0, 0, 10, 10]]),
        "ignore": torch.tensor([[60.0, 0, 70, 10]]),
    }
    from torchvision.ops import box_iou

    quality = box_iou(target["boxes"], anchors)
    matched = torch.tensor([0, 1, BACKGROUND, BACKGROUND, BACKGROUND])
    out = relabel(matched, quality, anchors, target, low=0.3, high=0.7)
    # the labeled box wins even over a negative on it; the noisy one loses to the negative
    assert out.tolist() == [0, BACKGROUND, BACKGROUND, IGNORED, BACKGROUND]
    assert torch.equal(relabel(matched, quality, anchors, {"boxes": target["boxes"]}, 0.3, 0.7), matched)


def test_an_ignore_region_gives_its_anchors_no_loss_and_a_negative_trains_as_background() -> None:
    """RetinaNet's focal loss through the matcher: zero gradient where the ignore region is; a negative's
    anchors get the background target (gradient pushing their scores down)."""
    from torchvision.models.detection._utils import Matcher

    from worker.engine.regions import match

    anchors = torch.tensor([[0.0, 0, 10, 10], [60.0, 0, 70, 10], [40.0, 0, 50, 10], [80.0, 0, 90, 10]])
    target = {
        "boxes": torch.tensor([[0.0, 0, 10, 10]]),
        "labels": torch.tensor([1]),
        "weights": torch.tensor([1.0]),
        "noisy": torch.tensor([False]),
        "negatives": torch.tensor([[40.0, 0, 50, 10]]),
        "ignore": torch.tensor([[60.0, 0, 70, 10]]),
    }
    matched = match(Matcher(0.5, 0.4, allow_low_quality_matches=True), anchors, target)
    logits = torch.zeros(1, 4, 2, requires_grad=True)
    focal_loss(logits, [target], [matched], between_thresholds=-2).backward()
    grad = logits.grad[0]
    assert grad[1].abs().max() == 0  # the ignore region: no loss
    assert (grad[2] > 0).all() and (grad[3] > 0).all()  # negative and plain background: pushed down
    assert grad[0, 1] < 0  # the labeled object: its class pushed up


def test_the_literal_reading_is_the_mean_over_labeled_plus_lambda_times_the_mean_over_noisy() -> None:
    from worker.engine.losses import combine

    per_anchor = torch.tensor([1.0, 3.0, 5.0, 10.0, 20.0])
    noisy = torch.tensor([False, False, False, True, True])
    weights = torch.where(noisy, 0.5, 1.0)
    counted = torch.ones(5, dtype=torch.bool)
    assert combine(per_anchor, weights, noisy, counted, "group_means").item() == pytest.approx(
        (1 + 3 + 5) / 3 + 0.5 * (10 + 20) / 2
    )
    assert combine(per_anchor, weights, noisy, counted, "anchor_weights").item() == pytest.approx(
        (1 + 3 + 5 + 0.5 * 10 + 0.5 * 20) / 5
    )
    # the RPN's objectness term on a hand-made batch: two noisy anchors at weight 0.5
    objectness = torch.tensor([[2.0], [-1.0], [0.5], [0.3], [-0.7]])
    labels = [torch.tensor([1.0, 0.0, NOISY_ANCHOR + 0.5, NOISY_ANCHOR + 0.5, 0.0])]
    pos, neg = torch.tensor([0, 2, 3]), torch.tensor([1, 4])
    literal, _ = rpn_loss(objectness, torch.zeros(5, 4), labels, [torch.zeros(5, 4)], pos, neg, "group_means")
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    flat = objectness.flatten()
    expected = bce(flat[[0, 1, 4]], torch.tensor([1.0, 0.0, 0.0])) + 0.5 * bce(flat[[2, 3]], torch.ones(2))
    assert abs(literal.item() - expected.item()) <= TOL


@pytest.mark.parametrize("arch", ARCHS)
def test_the_literal_reading_without_noisy_boxes_is_the_stock_loss(arch: str) -> None:
    preset = get_preset(f"{arch}_r18_fpn_lite")
    torch.manual_seed(0)
    literal = build_detector(preset, 3, weights="none", min_size=128, max_size=128, reading="group_means")
    stock = build_detector(preset, 3, weights="none", min_size=128, max_size=128, dampened=False)
    stock.model.load_state_dict(literal.model.state_dict())
    images, items = _batch()
    clean = [record(i.path, [b.bbox for b in i.boxes], [b.label for b in i.boxes]) for i in items]
    ours, theirs = _losses(literal, images, clean), _losses(stock, images, clean)
    for name in theirs:
        assert abs(ours[name].item() - theirs[name].item()) <= TOL, name
