"""k-center greedy (Sener & Savarese), exact, with picks batched so the feature matrix is read rarely.

Plain greedy reads the whole (N, D) matrix once per pick (a matrix-vector product: memory-bound).
Here each pass keeps the T points farthest from all centres as candidates. Every other point is at
most tau away from its nearest centre (tau: the smallest candidate distance), and new centres only
shrink distances, so while the best candidate, updated against the picks so far, stays above tau it
is the true next greedy pick. When it does not, the pending picks are applied to all points at once
(a blocked matrix product: compute-bound) and a new pass begins. The picks are plain greedy's,
except where two distances differ by float rounding (matrix and vector products sum in different
orders): such near-ties may be taken in the other order (seen: 5e-6 relative, same set of picks).

Memory: the matrix, O(N) vectors, a (T, D) candidate block and (BLOCK, picks) distance blocks.
"""

from __future__ import annotations

import numpy as np

BLOCK = 4096
CANDIDATES = 2048


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _lower(nearest: np.ndarray, pool: np.ndarray, norms: np.ndarray, centres: np.ndarray) -> None:
    """nearest = min(nearest, squared distance to any of ``centres``), block by block."""
    if len(centres) == 0:
        return
    centre_norms = _sq_norms(centres)
    for start in range(0, len(centres), BLOCK):
        block, block_norms = centres[start : start + BLOCK], centre_norms[start : start + BLOCK]
        for row in range(0, len(pool), BLOCK):
            d = norms[row : row + BLOCK, None] - 2.0 * (pool[row : row + BLOCK] @ block.T) + block_norms[None]
            np.minimum(nearest[row : row + BLOCK], d.min(axis=1), out=nearest[row : row + BLOCK])
    np.maximum(nearest, 0.0, out=nearest)


def k_center_greedy(
    pool: np.ndarray, centres: np.ndarray, budget: int, *, candidates: int = CANDIDATES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick ``budget`` points of ``pool`` (N, D), each the farthest from all centres and earlier picks.

    centres: (M, D), possibly empty (then the first pick is the point farthest from the pool's mean).
    Returns (order of picked indices, L2 distance of each pick when it was picked, final L2 distance
    of every point to its nearest centre or pick).
    """
    pool = np.ascontiguousarray(pool, dtype=np.float32)
    n = pool.shape[0]
    budget = min(budget, n)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
    norms = _sq_norms(pool)
    centres = np.ascontiguousarray(centres, dtype=np.float32).reshape(-1, pool.shape[1])
    if len(centres) == 0:
        centres = pool.mean(axis=0, keepdims=True)
    nearest = np.full(n, np.inf, dtype=np.float32)
    _lower(nearest, pool, norms, centres)
    order: list[int] = []
    picked: list[float] = []
    pending: list[int] = []
    while len(order) < budget:
        _lower(nearest, pool, norms, pool[pending])
        nearest[order] = 0.0
        pending = []
        size = min(n, candidates)
        cand = np.argpartition(-nearest, size - 1)[:size] if size < n else np.arange(n)
        tau = float(nearest[cand].min()) if size < n else -np.inf
        block = pool[cand]
        block_norms = norms[cand]
        values = nearest[cand].copy()
        first = True
        while len(order) < budget:
            j = int(np.argmax(values))
            if not first and values[j] <= tau:
                break  # a point outside the candidates might now be as far: refresh everything
            first = False
            index = int(cand[j])
            order.append(index)
            picked.append(float(np.sqrt(values[j])))
            pending.append(index)
            d = block_norms - 2.0 * (block @ pool[index]) + norms[index]
            np.minimum(values, d, out=values)
            values[j] = -1.0
    _lower(nearest, pool, norms, pool[pending])
    nearest[order] = 0.0
    return np.asarray(order, dtype=np.int64), np.asarray(picked), np.sqrt(nearest)


def coreset_scores(pool: np.ndarray, centres: np.ndarray, budget: int) -> np.ndarray:
    """Core-set informativeness: the first ``budget`` picks of k-center greedy score their distance at
    pick time (non-increasing), the rest their final distance to the nearest centre or pick. Ranking by
    this score serves the greedy order first."""
    if len(pool) == 0:
        return np.zeros(0)
    order, picked_distance, final_distance = k_center_greedy(pool, centres, budget)
    scores = final_distance.astype(np.float64).copy()
    scores[order] = picked_distance
    # a picked point must stay above every unpicked one, including ties at the boundary
    if len(order) and len(order) < len(scores):
        unpicked = np.setdiff1d(np.arange(len(scores)), order)
        floor = scores[unpicked].max()
        scores[order] = np.maximum(scores[order], np.nextafter(floor, np.inf))
    return scores
