"""Estimated annotator time per answer. Every default figure cites the study it comes from.

- Verifying a box (is this an object? yes / no) takes 1.6 s: Papadopoulos, Uijlings, Keller, Ferrari,
  "We don't need no bounding-boxes: Training object class detectors using only human verification",
  CVPR 2016 (mean box-verification time, Sec. 5). Used for accept, background and duplicate answers.
- Drawing a tight box takes 7.0 s with extreme clicking: Papadopoulos, Uijlings, Keller, Ferrari,
  "Extreme clicking for efficient object annotation", ICCV 2017 (vs 34.5 s for the crowdsourcing
  protocol of Su, Deng, Fei-Fei, HCOMP 2012). Used for adjust (the box is redrawn) and for each box
  of a whole-image query.
- Deciding that an image holds no more objects: 1.0 s per image, the time for an image-level label
  in Bearman, Russakovsky, Ferrari, Fei-Fei, "What's the point: Semantic segmentation with point
  supervision", ECCV 2016 (about 1 s per image and class).
- An image review (the model's boxes drawn) is costed action by action from the same figures: 1.0 s for
  the image, 1.6 s to verify and keep or delete each drawn box, 7.0 s to redraw one that is off, and
  7.0 s for each object it missed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CostModel:
    accept_s: float = 1.6
    adjust_s: float = 7.0
    background_s: float = 1.6
    duplicate_s: float = 1.6
    image_base_s: float = 1.0
    image_per_box_s: float = 7.0

    def box(self, action: str) -> float:
        return {
            "accept": self.accept_s,
            "adjust": self.adjust_s,
            "background": self.background_s,
            "duplicate": self.duplicate_s,
        }[action]

    def image(self, boxes: int) -> float:
        return self.image_base_s + self.image_per_box_s * boxes
