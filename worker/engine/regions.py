"""Negatives and ignore regions: how anchors and proposals near them change before the loss.

A target may carry, besides its boxes, ``negatives`` (regions answered background or duplicate: known not
to hold a new object) and ``ignore`` regions (uncertain predictions: neither object nor background). They
act on the matcher's output, in torchvision's own convention (index >= 0 foreground, -1 background,
-2 ignored), so every detector head treats them the same way:

- an anchor matched to a noisy box whose IoU with a negative is at least its IoU with that box, and an
  unmatched anchor whose IoU with a negative reaches the matcher's high threshold, become background;
- an anchor that would train as background but whose IoU with an ignore region reaches the matcher's
  low threshold becomes ignored (no loss, not sampled);
- anchors matched to labeled boxes never change. Negatives win over ignore regions.

On a partly labeled image a target may also carry ``unknown_background`` (the project setting, as a code
of UNKNOWN_BACKGROUND): the background anchors nobody looked at, those whose IoU with every negative is
below the matcher's low threshold, are then ignored (``ignore``), or keep training as background with a
weight the heads take from the model's own background probability (``soft``, ``soft_background``).

With none of these in a target the matcher's output is returned unchanged: the stock loss.

Regions are stored in original-image pixels, like the boxes, and must go through the same flip
(data.hflip_target) and resize as the image before matching: ``scale_regions`` is the one resize every
backend uses (torchvision through ``RegionTransform``, Detectron2 in d2/matching.py), and it takes every
box-valued field of a target, so a region field added later cannot be left in the wrong pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import box_iou

BACKGROUND = -1  # torchvision's Matcher.BELOW_LOW_THRESHOLD
IGNORED = -2  # torchvision's Matcher.BETWEEN_THRESHOLDS
UNKNOWN_BACKGROUND = {"full": 0, "soft": 1, "ignore": 2}  # the setting's values, as target codes


def unknown_background(target: dict[str, Tensor]) -> int:
    """The target's code in UNKNOWN_BACKGROUND ("full" where it carries none: stock training)."""
    code = target.get("unknown_background")
    return UNKNOWN_BACKGROUND["full"] if code is None else int(code)


def _unknown(out: Tensor, anchors: Tensor, target: dict[str, Tensor], low: float) -> Tensor:
    """(A,) bool: background anchors in no background answer (IoU with every negative below ``low``)."""
    unknown = out == BACKGROUND
    negatives = _regions(target, "negatives")
    if negatives is not None and unknown.any():
        unknown &= box_iou(negatives.to(anchors.dtype), anchors).max(dim=0).values < low
    return unknown


def soft_background(matched: Tensor, anchors: Tensor, target: dict[str, Tensor], low: float) -> Tensor:
    """(A,) bool: the anchors (or proposals) whose background loss the model's own background probability
    weighs, under ``unknown_background: soft``; all False otherwise (the heads then weigh as stock)."""
    if unknown_background(target) != UNKNOWN_BACKGROUND["soft"]:
        return torch.zeros(matched.shape, dtype=torch.bool, device=matched.device)
    return _unknown(matched, anchors, target, low)


def soft_weights(weights: Tensor, soft: Tensor, p_background: Tensor) -> Tensor:
    """``weights`` (N,) with those of the ``soft`` (N,) bool samples replaced by ``p_background`` (N,),
    detached: the weight steers the loss, no gradient flows through it."""
    return torch.where(soft, p_background.detach().to(weights.dtype), weights)


def is_region_valued(value: Tensor) -> bool:
    """A target field of boxes or regions: (N, 4) xyxy pixels (what a flip or a resize must move)."""
    return value.ndim == 2 and value.shape[-1] == 4


def scale_regions(
    target: dict[str, Tensor], scale_x: float, scale_y: float, *, skip: tuple[str, ...] = ()
) -> dict[str, Tensor]:
    """A copy of ``target`` with every region-valued field (``boxes``, ``negatives``, ``ignore``, ...)
    but those in ``skip`` scaled from original-image pixels to the model's input pixels."""
    out = dict(target)
    for key, value in target.items():
        if key not in skip and is_region_valued(value):
            factor = [scale_x, scale_y, scale_x, scale_y]
            out[key] = value * torch.tensor(factor, dtype=value.dtype, device=value.device)
    return out


class RegionTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform, whose resize scales ``target["boxes"]`` (and masks, keypoints)
    only, with every other region-valued field of the target scaled alike (``scale_regions``)."""

    def resize(
        self, image: Tensor, target: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        height, width = image.shape[-2:]
        image, target = super().resize(image, target)
        if target is None:
            return image, target
        new_height, new_width = image.shape[-2:]
        return image, scale_regions(target, new_width / width, new_height / height, skip=("boxes",))


def _regions(target: dict[str, Tensor], key: str) -> Tensor | None:
    regions = target.get(key)
    return regions if regions is not None and regions.numel() > 0 else None


def relabel(
    matched: Tensor,
    quality: Tensor | None,
    anchors: Tensor,
    target: dict[str, Tensor],
    low: float,
    high: float,
) -> Tensor:
    """The matcher's ``matched`` (A,) for ``anchors`` (A, 4) against ``target["boxes"]`` (``quality``:
    their (G, A) IoU matrix, None without boxes), adjusted for the target's negatives and ignore regions."""
    negatives, ignore = _regions(target, "negatives"), _regions(target, "ignore")
    ignore_unknown = unknown_background(target) == UNKNOWN_BACKGROUND["ignore"]
    if negatives is None and ignore is None and not ignore_unknown:
        return matched
    out = matched.clone()
    foreground = matched >= 0
    noisy = target.get("noisy")
    if noisy is not None and noisy.numel() > 0:
        labeled = foreground & ~noisy[matched.clamp(min=0)]
    else:
        labeled = foreground
    if ignore is not None:
        near = box_iou(ignore.to(anchors.dtype), anchors).max(dim=0).values >= low
        out[(out == BACKGROUND) & near] = IGNORED
    if negatives is not None:
        negative_iou = box_iou(negatives.to(anchors.dtype), anchors).max(dim=0).values
        if quality is not None and quality.numel() > 0:
            own = quality.gather(0, matched.clamp(min=0).unsqueeze(0)).squeeze(0)
        else:
            own = torch.zeros_like(negative_iou)
        explained = torch.where(foreground, negative_iou >= own, negative_iou >= high)
        out[~labeled & explained] = BACKGROUND
    if ignore_unknown:
        out[_unknown(out, anchors, target, low)] = IGNORED
    return out


def match(matcher: Matcher, anchors: Tensor, target: dict[str, Tensor]) -> Tensor:
    """torchvision's matching of ``anchors`` (A, 4) to ``target["boxes"]`` (every anchor background when
    there are none), then ``relabel``: (A,) box index, or BACKGROUND, or IGNORED."""
    boxes = target["boxes"]
    if boxes.numel() == 0:
        quality = None
        matched = torch.full((anchors.shape[0],), BACKGROUND, dtype=torch.int64, device=anchors.device)
    else:
        quality = box_iou(boxes.to(anchors.dtype), anchors)
        matched = matcher(quality)
    return relabel(matched, quality, anchors, target, matcher.low_threshold, matcher.high_threshold)
