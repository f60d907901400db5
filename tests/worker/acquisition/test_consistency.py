"""The consistency strategy on cases with known answers: its pool normalisation, and the view measurements
(worker/engine/views.py) through a hand-made detector whose class belief depends on where a box is, so
that flipping the image changes its mind about one box and not about the other."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from worker.acquisition import build
from worker.acquisition.consistency import normalised_disagreement
from worker.engine.detector import Detections
from worker.engine.views import view_terms


def test_each_term_is_normalised_over_the_pool_then_averaged() -> None:
    terms = np.array([[0.8, 0.5], [0.0, 0.0], [0.4, 0.1], [0.2, 0.5]])
    scores = build("consistency").score_pool(terms, np.zeros((0, 2)))
    assert np.allclose(scores, [(1.0 + 1.0) / 2, 0.0, (0.5 + 0.2) / 2, (0.25 + 1.0) / 2])
    assert list(np.argsort(-scores)) == [0, 3, 2, 1]
    assert np.allclose(normalised_disagreement(np.array([[0.0, 0.3], [0.0, 0.6]])), [0.25, 0.5])
    # a pool that barely disagrees is not blown up: below MIN_SCALE (0.05) the scale stays 0.05
    assert np.allclose(normalised_disagreement(np.array([[0.01, 0.0], [0.02, 0.0]])), [0.1, 0.2])
    assert normalised_disagreement(np.zeros((0, 2))).shape == (0,)
    assert normalised_disagreement(np.zeros((0, 0))).shape == (0,)  # shards that saved no candidate


class SquareFinder:
    """Finds the bright squares of an image (columns of bright pixels, in runs), and believes a square is
    class 0 with probability x_centre / width: not equivariant to a flip, except at the centre."""

    def __init__(self) -> None:
        self.model = nn.Linear(1, 1)  # where its tensors live

    def detect(self, images: list[Tensor], t_d: float) -> list[Detections]:
        out = []
        for image in images:
            bright = image.mean(dim=0) > 0.5
            columns = [*bright.any(dim=0).tolist(), False]
            boxes, probs = [], []
            start = None
            for x, on in enumerate(columns):
                if on and start is None:
                    start = x
                elif not on and start is not None:
                    rows = torch.nonzero(bright[:, start:x].any(dim=1)).flatten()
                    boxes.append([float(start), float(rows.min()), float(x), float(rows.max() + 1)])
                    p = (start + x) / 2 / image.shape[-1]
                    probs.append([p, 1 - p])
                    start = None
            p = torch.tensor(probs).reshape(-1, 2)
            boxes_t = torch.tensor(boxes).reshape(-1, 4)
            out.append(Detections(boxes_t, p.argmax(dim=1), p.max(dim=1).values, p, None, torch.zeros(1)))
        return out


def test_a_box_whose_flipped_view_disagrees_outranks_one_that_agrees() -> None:
    image = torch.zeros(3, 100, 200)
    image[:, 40:60, 20:40] = 1.0  # near the left edge: class 0 with 0.15, flipped 0.85
    image[:, 40:60, 90:110] = 1.0  # at the centre: 0.5 either way
    finder = SquareFinder()
    found = finder.detect([image], 0.0)[0]
    terms = view_terms(finder, image, found.boxes, found.probs, t_d=0.0)  # type: ignore[arg-type]
    left, centre = terms
    assert left[0] > 0.3 and centre[0] < 1e-6  # classification: the flip changes its mind on the left box
    assert left[1] < 0.1 and centre[1] < 0.1  # localisation: both found in the same place in every view
    scores = build("consistency").score_pool(terms, np.zeros((0, 2)))
    assert scores[0] > scores[1]
    # a box no view finds disagrees fully
    lost = torch.tensor([[150.0, 0, 160, 10]])
    nowhere = view_terms(finder, image, lost, torch.tensor([[0.5, 0.5]]), 0.0)  # type: ignore[arg-type]
    assert np.allclose(nowhere, [[1.0, 1.0]])
