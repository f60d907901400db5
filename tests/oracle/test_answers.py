"""The simulated oracle on hand-made cases with known answers (DESIGN.md, "Simulated oracle")."""

from __future__ import annotations

from oracle.answers import GroundTruth, Oracle
from oracle.cost import CostModel

CAT = GroundTruth([0.0, 0.0, 10.0, 10.0], "cat")
DOG = GroundTruth([20.0, 0.0, 30.0, 10.0], "dog")


def _query(bbox: list[float], qid: int = 1, image: str = "a", unit: str = "box") -> dict:
    return {"query_id": qid, "unit": unit, "image": {"external_id": image}, "bbox": bbox}


def test_iou_just_above_half_is_adjusted_to_the_ground_truth() -> None:
    oracle = Oracle({"a": [CAT, DOG]})
    # [0, 0, 10, 5.1] against the 10x10 cat: IoU 0.51
    answer = oracle.answer(_query([0.0, 0.0, 10.0, 5.1]))
    assert answer == {
        "query_id": 1,
        "action": "adjust",
        "bbox": CAT.bbox,
        "label": "cat",
        "duration_ms": 7000,
    }


def test_iou_just_below_half_is_background_with_coordinates_unchanged() -> None:
    oracle = Oracle({"a": [CAT, DOG]})
    answer = oracle.answer(_query([0.0, 0.0, 10.0, 4.9]))  # IoU 0.49
    assert answer == {"query_id": 1, "action": "background", "duration_ms": 1600}
    assert oracle.obtained["a"] == set()


def test_the_best_overlap_wins_and_a_second_query_on_one_object_is_a_duplicate() -> None:
    oracle = Oracle({"a": [CAT, DOG]})
    first = oracle.answer(_query([19.0, 0.0, 30.0, 10.0], qid=1))  # the dog, IoU 0.91
    second = oracle.answer(_query([21.0, 1.0, 30.0, 10.0], qid=2))  # the dog again
    assert first["action"] == "adjust" and first["label"] == "dog"
    assert second == {"query_id": 2, "action": "duplicate", "duration_ms": 1600}


def test_an_image_query_gets_every_object_not_yet_obtained() -> None:
    oracle = Oracle({"a": [CAT, DOG], "b": [DOG]}, CostModel(image_base_s=1.0, image_per_box_s=7.0))
    oracle.answer(_query([0.0, 0.0, 10.0, 9.0], qid=1))  # the cat is obtained by a box query
    answer = oracle.answer({"query_id": 5, "unit": "image", "image": {"external_id": "a"}})
    assert answer == {
        "query_id": 5,
        "action": "label_all",
        "boxes": [{"bbox": DOG.bbox, "label": "dog"}],
        "duration_ms": 8000,
    }
    empty = oracle.answer({"query_id": 6, "unit": "image", "image": {"external_id": "c"}})
    assert empty["boxes"] == [] and empty["duration_ms"] == 1000
    oracle.mark_labeled("b")
    assert oracle.answer(_query([20.0, 0.0, 30.0, 10.0], image="b"))["action"] == "duplicate"


def test_a_right_class_box_at_iou_07_is_accepted_and_a_looser_one_adjusted() -> None:
    oracle = Oracle({"a": [CAT, DOG]})
    # [0, 0, 10, 8] against the 10x10 cat: IoU 0.8, predicted as a cat
    accepted = oracle.answer({**_query([0.0, 0.0, 10.0, 8.0], qid=1), "label": "cat"})
    assert accepted == {"query_id": 1, "action": "accept", "duration_ms": 1600}  # verified, not redrawn
    assert oracle.obtained["a"] == {0}
    # the dog at IoU 0.6: found, but the box must be redrawn
    adjusted = oracle.answer({**_query([20.0, 0.0, 26.0, 10.0], qid=2), "label": "dog"})
    assert adjusted["action"] == "adjust" and adjusted["bbox"] == DOG.bbox and adjusted["duration_ms"] == 7000
    # IoU 0.8 but the wrong class: adjusted to the right one
    other = Oracle({"a": [CAT]}).answer({**_query([0.0, 0.0, 10.0, 8.0]), "label": "dog"})
    assert other["action"] == "adjust" and other["label"] == "cat"
    never = Oracle({"a": [CAT]}, accept_iou=None).answer({**_query([0.0, 0.0, 10.0, 8.0]), "label": "cat"})
    assert never["action"] == "adjust"  # the oracle of the runs before accept existed


def test_an_image_review_is_answered_box_by_box_then_the_missing_objects_drawn_each_costed() -> None:
    bird = GroundTruth([40.0, 0.0, 50.0, 10.0], "bird")
    oracle = Oracle({"a": [CAT, DOG, bird]})
    query = {
        "query_id": 9,
        "unit": "review",
        "image": {"external_id": "a"},
        "predictions": [
            {"box_id": 1, "bbox": [0.0, 0.0, 10.0, 8.0], "label": "cat"},  # IoU 0.8, right class: keep
            {"box_id": 2, "bbox": [20.0, 0.0, 26.0, 10.0], "label": "dog"},  # IoU 0.6: fix it
            {"box_id": 3, "bbox": [0.0, 1.0, 10.0, 9.0], "label": "cat"},  # the cat again: delete
            {"box_id": 4, "bbox": [70.0, 0.0, 80.0, 10.0], "label": "dog"},  # nothing there: delete
        ],
    }
    answer = oracle.answer(query)
    assert answer["action"] == "review"
    assert answer["reviewed"] == [
        {"box_id": 1, "action": "accept"},
        {"box_id": 2, "action": "adjust", "bbox": DOG.bbox, "label": "dog"},
        {"box_id": 3, "action": "background"},
        {"box_id": 4, "action": "background"},
    ]
    assert answer["boxes"] == [{"bbox": bird.bbox, "label": "bird"}]  # the one it missed, drawn
    # 1.0 s for the image + 1.6 keep + 7.0 fix + 1.6 + 1.6 deletes + 7.0 drawing the bird
    assert answer["duration_ms"] == 19_800
    assert oracle.obtained["a"] == {0, 1, 2}


def test_a_ground_truth_box_under_2_px_is_answered_as_the_smallest_box_the_api_takes() -> None:
    """Aquarium's pool holds a 1x1 px object; the labels API refuses boxes under 2 px a side, so the oracle
    answers it with a 2x2 box about the same centre, moved inside the image at its edge."""
    speck = GroundTruth([964.5, 604.5, 965.5, 605.5], "fish")
    corner = GroundTruth([1023.5, 0.0, 1024.0, 0.5], "fish")
    sliver = GroundTruth([10.0, 20.0, 10.5, 120.0], "fish")
    oracle = Oracle({"a": [speck, corner, sliver, CAT]})
    image = {"external_id": "a", "width": 1024, "height": 768}
    answer = oracle.answer({"query_id": 1, "unit": "image", "image": image})
    assert [b["bbox"] for b in answer["boxes"]] == [
        [964.0, 604.0, 966.0, 606.0],
        [1022.0, 0.0, 1024.0, 2.0],
        [9.25, 20.0, 11.25, 120.0],
        CAT.bbox,
    ]
    adjusted = Oracle({"a": [GroundTruth([5.0, 5.0, 6.0, 6.0], "cat")]}).answer(
        {"query_id": 2, "unit": "box", "image": image, "bbox": [4.9, 4.9, 6.1, 6.1]}
    )
    assert adjusted["action"] == "adjust" and adjusted["bbox"] == [4.5, 4.5, 6.5, 6.5]
    assert speck.bbox == [964.5, 604.5, 965.5, 605.5]  # the truth itself is unchanged
