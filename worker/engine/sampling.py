"""Which images each training batch holds: uniformly shuffled passes over the training set (the paper, and
the default), or a set share of every batch from complete images (``complete_share``, after Lyu et al.'s
``MultiBalanceSampler``, lyumengyao/blad, which keeps complete and partly labeled images 1:1).

Without it, a round whose training set is 20 complete and 400 partly labeled images spends about one batch
slot in twenty on a complete image; with ``complete_share`` 0.5 it spends half of them there, whatever
the ratio. Each slot of a batch is a complete image with probability ``complete_share`` (for a batch of B,
floor(B x share) slots always, one more with the fractional part's probability), so the share holds in
expectation for any batch size; within each group images are drawn in shuffled passes, every image once
per pass. A group with no image gives its slots to the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class _Passes:
    """Indices drawn in shuffled passes over ``indices``, a fresh shuffle each pass."""

    def __init__(self, indices: list[int], generator: torch.Generator) -> None:
        self.indices, self.generator = indices, generator
        self._order: list[int] = []

    def take(self) -> int:
        if not self._order:
            permutation = torch.randperm(len(self.indices), generator=self.generator).tolist()
            self._order = [self.indices[i] for i in permutation]
        return self._order.pop()


class CompleteShareBatches(Sampler[list[int]]):
    """Batches of ``batch_size`` dataset indices, a ``share`` of their slots from ``complete`` indices.

    ``batches`` per pass (one epoch of the schedule: the uniform loader's count, so that an epoch lasts as
    long either way). ``generator`` makes the draw reproducible; each DDP process passes its own."""

    def __init__(
        self,
        complete: list[int],
        partial: list[int],
        *,
        batch_size: int,
        share: float,
        batches: int,
        generator: torch.Generator,
    ) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"complete_share must lie in [0, 1], got {share}")
        if not complete and not partial:
            raise ValueError("nothing to sample: no images")
        self.batch_size, self.share, self.batches = batch_size, share, batches
        self.generator = generator
        self.complete = _Passes(complete, generator) if complete else None
        self.partial = _Passes(partial, generator) if partial else None

    def __len__(self) -> int:
        return self.batches

    def _complete_slots(self) -> int:
        expected = self.batch_size * self.share
        whole = math.floor(expected)
        extra = torch.rand((), generator=self.generator).item() < expected - whole
        return min(self.batch_size, whole + int(extra))

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.batches):
            slots = self._complete_slots()
            if self.complete is None:
                slots = 0
            elif self.partial is None:
                slots = self.batch_size
            batch = [self.complete.take() for _ in range(slots)] if self.complete else []
            if self.partial is not None:
                batch += [self.partial.take() for _ in range(self.batch_size - slots)]
            yield batch
