"""Strategies on hand-made inputs whose answers are known, built from the registry."""

from __future__ import annotations

import numpy as np
import pytest

from worker.acquisition import REGISTRY, BoxBatch, Params, build, hashed_uniform, rank, reduce
from worker.acquisition.coreset import coreset_scores, k_center_greedy
from worker.acquisition.strategies import distribution, entropy, least_confidence, margin


def score(name: str, *, ids: np.ndarray, probs: np.ndarray | None = None) -> np.ndarray:
    """Per-box scores from the registry's strategy of that name."""
    return build(name, Params()).score_boxes(BoxBatch(ids, np.zeros_like(ids), probs))


PROBS = np.array(
    [
        [0.90, 0.05, 0.05],  # confident
        [0.34, 0.33, 0.33],  # flattest
        [0.60, 0.35, 0.05],  # in between, close second
        [0.50, 0.49, 0.01],  # tiny margin
    ]
)


def test_least_confidence_picks_the_flattest_distribution() -> None:
    assert np.allclose(least_confidence(PROBS), [0.10, 0.66, 0.40, 0.50])
    assert rank(np.arange(4), score("least_confidence", ids=np.arange(4), probs=PROBS)).tolist() == [
        1,
        3,
        2,
        0,
    ]


def test_object_aware_scores_do_not_chase_what_the_model_calls_background() -> None:
    from worker.acquisition.strategies import least_confidence_with_background, object_class_uncertainty

    probs = np.array(
        [
            [0.03, 0.02],  # firmly background (0.95)
            [0.48, 0.47],  # surely an object, class a coin toss
            [0.94, 0.01],  # a confident object of class 0
            [0.30, 0.25],  # object or background, unsure
        ]
    )
    plain = least_confidence(probs)
    with_bg = least_confidence_with_background(probs)
    objects = object_class_uncertainty(probs)
    assert np.argmax(plain) == 0  # the paper's score chases the background box first
    assert np.argmin(with_bg) in (0, 2) and with_bg[3] == with_bg.max()
    assert np.argmax(objects) == 1 and objects[0] < 0.05 and objects[2] < 0.05
    assert np.allclose(objects[1], 0.95 * (1 - 0.48 / 0.95))
    ranked = rank(np.arange(4), score("object_uncertainty", ids=np.arange(4), probs=probs))
    assert ranked.tolist()[0] == 1


def test_entropy_and_margin() -> None:
    assert np.argmax(entropy(PROBS)) == 1
    assert np.argmin(entropy(PROBS)) == 0
    assert np.isclose(entropy(np.array([[0.5, 0.5]]))[0], np.log(2))
    assert np.argmax(margin(PROBS)) in (1, 3) and margin(PROBS)[3] > margin(PROBS)[2] > margin(PROBS)[0]
    # foreground probabilities that leave mass over: background takes it
    assert np.allclose(distribution(np.array([[0.2, 0.3]])), [[0.2, 0.3, 0.5]])
    assert np.allclose(distribution(np.array([[0.9, 0.9]])).sum(axis=1), 1.0)  # sigmoids renormalised


def test_random_is_seeded_per_box_and_independent_of_sharding() -> None:
    ids = np.arange(10_000)
    whole = hashed_uniform(ids, seed=3, salt=1)
    sharded = np.concatenate([hashed_uniform(ids[:4000], 3, 1), hashed_uniform(ids[4000:], 3, 1)])
    assert np.array_equal(whole, sharded)
    assert not np.array_equal(whole, hashed_uniform(ids, seed=4, salt=1))
    assert whole.min() >= 0 and whole.max() < 1 and abs(whole.mean() - 0.5) < 0.02
    assert np.histogram(whole, bins=10)[0].min() > 900


def test_reductions_per_image() -> None:
    scores = np.array([0.2, 0.4, 0.9, 0.1])
    images = np.array([0, 0, 2, 2])
    assert np.allclose(reduce(scores, images, 3, "mean"), [0.3, 0.0, 0.5])
    assert np.allclose(reduce(scores, images, 3, "max"), [0.4, 0.0, 0.9])
    assert np.allclose(reduce(scores, images, 3, "sum"), [0.6, 0.0, 1.0])
    with pytest.raises(ValueError, match="unknown reduction"):
        reduce(scores, images, 3, "median")  # type: ignore[arg-type]


def test_coreset_picks_the_farthest_point_first() -> None:
    centres = np.zeros((1, 2))
    pool = np.array([[1.0, 0.0], [5.0, 0.0], [0.0, 3.0], [4.5, 0.5]])
    order, picked, final = k_center_greedy(pool, centres, 2)
    assert order.tolist() == [
        1,
        2,
    ]  # 5 away first; then [0, 3] (3 from origin) beats [4.5, .5] (~0.7 from pick)
    assert np.allclose(picked, [5.0, 3.0])
    assert np.allclose(final, [1.0, 0.0, 0.0, np.hypot(0.5, 0.5)])
    scores = coreset_scores(pool, centres, 2)
    assert rank(np.arange(4), scores).tolist()[:2] == [1, 2]


def test_coreset_seeds_with_labeled_centres() -> None:
    pool = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 1.0]])
    labeled = np.array([[10.0, 0.5]])  # the two far points are already covered by a labeled box
    order, _, _ = k_center_greedy(pool, labeled, 1)
    assert order.tolist() == [0]


def test_every_registered_strategy_is_documented_and_unknown_names_fail() -> None:
    assert set(REGISTRY) == {
        "random",
        "least_confidence",
        "least_confidence_bg",
        "object_uncertainty",
        "entropy",
        "margin",
        "coreset",
        "consistency",
    }
    with pytest.raises(ValueError, match="unknown strategy"):
        score("bald", ids=np.arange(3))
    with pytest.raises(ValueError, match="needs class probabilities"):
        score("entropy", ids=np.arange(3))


def _plain_greedy(pool: np.ndarray, centres: np.ndarray, budget: int) -> list[int]:
    nearest = ((pool[:, None, :] - centres[None]) ** 2).sum(-1).min(axis=1)
    order = []
    for _ in range(budget):
        index = int(np.argmax(nearest))
        order.append(index)
        nearest = np.minimum(nearest, ((pool - pool[index]) ** 2).sum(-1))
    return order


def test_batched_coreset_makes_the_same_picks_as_plain_greedy() -> None:
    rng = np.random.default_rng(5)
    pool = (rng.normal(size=(30, 8)) * 10)[rng.integers(30, size=1500)] + rng.normal(size=(1500, 8))
    centres = pool[:20] + 0.5
    expected = _plain_greedy(pool, centres, 200)
    for candidates in (4, 32, 5000):  # tiny candidate sets force many refreshes
        order, picked, final = k_center_greedy(pool, centres, 200, candidates=candidates)
        assert order.tolist() == expected, candidates
    assert np.all(np.diff(picked) <= 1e-4)  # greedy distances never increase
    assert final[order].max() == 0 and final.max() <= picked[-1] + 1e-4


def test_the_api_offers_exactly_the_registered_strategies_and_loads_no_torch() -> None:
    import subprocess
    import sys

    from app.projects.schemas import ProjectSettings

    offered = ProjectSettings.model_json_schema()["properties"]["strategy"]["enum"]
    assert offered == list(REGISTRY)
    probe = "import sys, app.main; print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"
