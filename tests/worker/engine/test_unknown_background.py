"""What nobody looked at on a partly labeled image (the unknown_background setting): ``soft`` weighs each
background sample's loss by the model's own background probability, without gradient through the weight;
``ignore`` gives it no loss; ``full`` (and every fully labeled image) trains it as stock background."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import Matcher

from app.rounds.training_set import TargetBox, TrainingImage
from worker.engine.data import target_tensors
from worker.engine.detector import build_detector
from worker.engine.losses import fastrcnn_loss, focal_loss, rpn_loss
from worker.engine.presets import get_preset
from worker.engine.regions import BACKGROUND, IGNORED, UNKNOWN_BACKGROUND, match, soft_background

ANCHORS = torch.tensor(
    [
        [0.0, 0, 10, 10],  # on the labeled box
        [40.0, 0, 50, 10],  # inside the background answer: known background
        [80.0, 0, 90, 10],  # nobody looked here: unknown
    ]
)


def _target(mode: str | None) -> dict[str, torch.Tensor]:
    record = TrainingImage(
        "x.png",
        [TargetBox([0.0, 0, 10, 10], 1)],
        negatives=[[40.0, 0, 50, 10]],
        unknown_background=mode or "full",  # type: ignore[arg-type]
    )
    return target_tensors(record)


def test_soft_weighs_an_unknown_background_proposal_by_the_models_background_probability() -> None:
    p_object = 0.7  # the model calls the unknown proposal an object with probability 0.7
    logits = torch.tensor([[0.0, 5.0], [3.0, 0.0], [0.0, 0.0]])  # background column first
    logits[2, 0] = torch.log(torch.tensor((1 - p_object) / p_object))  # softmax background = 0.3
    logits.requires_grad_(True)
    target = _target("soft")
    matched = match(Matcher(0.5, 0.5, allow_low_quality_matches=False), ANCHORS, target)
    assert matched.tolist() == [0, BACKGROUND, BACKGROUND]
    soft = soft_background(matched, ANCHORS, target, low=0.5)
    assert soft.tolist() == [False, False, True]  # the known background keeps weight 1
    labels = [torch.tensor([1, 0, 0])]
    regression = [torch.zeros(3, 4)]
    loss, _ = fastrcnn_loss(
        logits, torch.zeros(3, 2 * 4), labels, regression, [torch.ones(3)], None, soft=[soft]
    )
    per_sample = F.cross_entropy(logits.detach(), labels[0], reduction="none")
    expected = (per_sample[0] + per_sample[1] + (1 - p_object) * per_sample[2]) / 3
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    loss.backward()
    plain = logits.detach().clone().requires_grad_(True)
    (F.cross_entropy(plain, labels[0], reduction="none")[2] / 3).backward()
    # the weight is a constant: the gradient is 0.3 x the plain background loss's, no more
    assert torch.allclose(logits.grad[2], (1 - p_object) * plain.grad[2], atol=1e-6)
    # on a fully labeled image (no unknown background) every weight stays 1
    full = _target(None)
    assert not soft_background(match(Matcher(0.5, 0.5, False), ANCHORS, full), ANCHORS, full, 0.5).any()


def test_soft_rpn_weights_background_anchors_by_one_minus_objectness() -> None:
    objectness = torch.tensor([[2.0], [0.0], [1.0]], requires_grad=True)
    labels = [torch.tensor([1.0, 0.0, 0.0])]
    soft = torch.tensor([False, False, True])
    pos, neg = torch.tensor([0]), torch.tensor([1, 2])
    loss, _ = rpn_loss(objectness, torch.zeros(3, 4), labels, [torch.zeros(3, 4)], pos, neg, soft=soft)
    bce = F.binary_cross_entropy_with_logits(objectness.detach().flatten(), labels[0], reduction="none")
    p_background = 1 - torch.sigmoid(torch.tensor(1.0))
    assert loss.item() == pytest.approx(((bce[0] + bce[1] + p_background * bce[2]) / 3).item(), abs=1e-6)


def test_ignore_gives_an_unknown_background_anchor_no_loss_and_no_gradient() -> None:
    target = _target("ignore")
    matched = match(Matcher(0.5, 0.4, allow_low_quality_matches=True), ANCHORS, target)
    assert matched.tolist() == [0, BACKGROUND, IGNORED]  # the background answer still trains as such
    logits = torch.zeros(1, 3, 2, requires_grad=True)
    loss = focal_loss(logits, [target], [matched], between_thresholds=IGNORED)
    loss.backward()
    assert logits.grad[0, 2].abs().max() == 0  # nobody looked there: no loss, no gradient
    assert (logits.grad[0, 1] > 0).all()  # the answered background: pushed down
    full = _target("full")
    assert match(Matcher(0.5, 0.4, True), ANCHORS, full).tolist() == [0, BACKGROUND, BACKGROUND]


@pytest.mark.parametrize("arch", ["faster_rcnn", "retinanet"])
@pytest.mark.parametrize("mode", ["soft", "ignore"])
def test_a_detector_trains_on_a_partly_labeled_image_under_each_mode(arch: str, mode: str) -> None:
    """Through the whole torchvision detector: finite losses, different from full on a partly labeled
    image, and identical to full on a fully labeled one."""
    torch.manual_seed(0)
    detector = build_detector(get_preset(f"{arch}_r18_fpn_lite"), 2, weights="none", min_size=96, max_size=96)
    detector.model.train()
    image = [torch.rand(3, 96, 96)]
    boxes = [TargetBox([10.0, 10, 40, 40], 0), TargetBox([50.0, 50, 80, 90], 1, noisy=True, weight=0.5)]

    def losses(unknown: str, complete: bool) -> dict[str, torch.Tensor]:
        record = TrainingImage(
            "x.png", boxes, negatives=[[60.0, 5, 90, 30]], complete=complete, unknown_background=unknown
        )
        torch.manual_seed(123)
        return detector.losses(image, [target_tensors(record)])

    partial, stock = losses(mode, complete=False), losses("full", complete=False)
    assert all(torch.isfinite(v) for v in partial.values())
    assert any(abs(partial[k].item() - stock[k].item()) > 1e-6 for k in stock)
    complete, complete_stock = losses(mode, complete=True), losses("full", complete=True)
    for key, value in complete_stock.items():
        assert complete[key].item() == pytest.approx(value.item(), abs=1e-6), key
    assert UNKNOWN_BACKGROUND[mode] > 0
