"""Picking detections from a head's outputs, the same way for both backends (detector.py, d2/detector.py)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, remove_small_boxes


def class_detections(
    boxes: Tensor, probs: Tensor, t_d: float, nms_thresh: float, top: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every (proposal, class) pair whose probability reaches ``t_d``, from per-class ``boxes`` (n, C, 4)
    or (n, C * 4) and ``probs`` (n, C): near-empty boxes dropped, class-wise NMS, the best ``top``.
    Returns their boxes, scores, labels (0..C-1) and proposal rows."""
    n, classes = probs.shape
    labels = torch.arange(classes, device=probs.device).repeat(n)
    rows = torch.arange(n, device=probs.device).repeat_interleave(classes)
    boxes, flat = boxes.reshape(-1, 4), probs.reshape(-1)
    keep = torch.where(flat >= t_d)[0]
    boxes, flat, labels, rows = boxes[keep], flat[keep], labels[keep], rows[keep]
    keep = remove_small_boxes(boxes, min_size=1e-2)
    boxes, flat, labels, rows = boxes[keep], flat[keep], labels[keep], rows[keep]
    keep = batched_nms(boxes, flat, labels, nms_thresh)[:top]
    return boxes[keep], flat[keep], labels[keep], rows[keep]


def dense_candidates(logits: Tensor, num_classes: int, t_d: float, top: int) -> tuple[Tensor, Tensor, Tensor]:
    """A dense head's level, (anchors, C) logits: the best ``top`` sigmoid scores reaching ``t_d``, with
    their anchor (row within the level) and class."""
    scores = torch.sigmoid(logits).flatten()
    candidates = torch.where(scores >= t_d)[0]
    scores, order = scores[candidates].topk(min(top, candidates.numel()))
    candidates = candidates[order]
    return scores, torch.div(candidates, num_classes, rounding_mode="floor"), candidates % num_classes
