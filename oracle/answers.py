"""The simulated oracle (DESIGN.md, "Simulated oracle"; paper Sec. 4).

A box query is matched to the ground-truth box of its image with the highest IoU. If that object was
already obtained the answer is ``duplicate``; else IoU >= ``accept_iou`` (0.7) with the right class is
``accept`` (a correct prediction is confirmed, 1.6 s, not redrawn), IoU >= 0.5 is ``adjust`` to that box's
coordinates and class. Otherwise ``background``, coordinates unchanged. An image query is answered with
every ground-truth box of the image (``label_all``). A review query (an image with the model's confident
boxes drawn) is answered box by box as a box query would be, a box on an object already obtained (or
already taken by an earlier box of the same review) deleted as background, and every object still missing
drawn (``review``). Each answer carries ``duration_ms`` from a cost model. A ground-truth box under the
API's 2 px a side is answered as the smallest box it takes, about the same centre (formats/geometry.py,
``drawable``): an annotator cannot draw a 1x1 box either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from formats.geometry import drawable, iou
from oracle.cost import CostModel

MATCH_IOU = 0.5
ACCEPT_IOU = 0.7  # as the box-verification studies count a correct box (cost.py: 1.6 s to verify)


@dataclass(frozen=True)
class GroundTruth:
    bbox: list[float]  # xyxy pixels
    label: str


def _drawn(truth: GroundTruth, query: dict[str, Any]) -> list[float]:
    image = query.get("image") or {}
    return drawable(truth.bbox, image.get("width"), image.get("height"))


@dataclass
class Oracle:
    truth: dict[str, list[GroundTruth]]  # by image external id
    cost: CostModel = field(default_factory=CostModel)
    obtained: dict[str, set[int]] = field(default_factory=dict)
    accept_iou: float | None = ACCEPT_IOU  # None: never accept, every match is redrawn (boxal before)

    def mark_labeled(self, external_id: str) -> None:
        """An image of the initial labeled set: all its objects are obtained."""
        self.obtained[external_id] = set(range(len(self.truth.get(external_id, []))))

    def answer(self, query: dict[str, Any]) -> dict[str, Any]:
        external_id = query["image"]["external_id"]
        objects = self.truth.get(external_id, [])
        taken = self.obtained.setdefault(external_id, set())
        if query["unit"] == "review":
            return self._review(query, objects, taken)
        if query["unit"] == "image":
            new = [i for i in range(len(objects)) if i not in taken]
            taken.update(new)
            return {
                "query_id": query["query_id"],
                "action": "label_all",
                "boxes": [{"bbox": _drawn(objects[i], query), "label": objects[i].label} for i in new],
                "duration_ms": round(1000 * self.cost.image(len(new))),
            }
        overlaps = [iou(gt.bbox, query["bbox"]) for gt in objects]
        best = max(range(len(objects)), key=lambda i: overlaps[i], default=None)
        if best is None or overlaps[best] < MATCH_IOU:
            action = "background"
            answer: dict[str, Any] = {"query_id": query["query_id"], "action": action}
        elif best in taken:
            action = "duplicate"
            answer = {"query_id": query["query_id"], "action": action}
        elif (
            self.accept_iou is not None
            and overlaps[best] >= self.accept_iou
            and query.get("label") == objects[best].label
        ):
            taken.add(best)
            action = "accept"  # the box stands as predicted
            answer = {"query_id": query["query_id"], "action": action}
        else:
            taken.add(best)
            action = "adjust"
            answer = {
                "query_id": query["query_id"],
                "action": action,
                "bbox": _drawn(objects[best], query),
                "label": objects[best].label,
            }
        answer["duration_ms"] = round(1000 * self.cost.box(action))
        return answer

    def _review(self, query: dict[str, Any], objects: list[GroundTruth], taken: set[int]) -> dict[str, Any]:
        reviewed: list[dict[str, Any]] = []
        seconds = self.cost.image_base_s
        for prediction in query.get("predictions") or []:
            free = [i for i in range(len(objects)) if i not in taken]
            overlaps = {i: iou(objects[i].bbox, prediction["bbox"]) for i in free}
            best = max(free, key=lambda i: overlaps[i], default=None)
            verdict: dict[str, Any] = {"box_id": prediction["box_id"], "action": "background"}
            if best is not None and overlaps[best] >= MATCH_IOU:
                taken.add(best)
                right = prediction.get("label") == objects[best].label
                if self.accept_iou is not None and overlaps[best] >= self.accept_iou and right:
                    verdict["action"] = "accept"
                else:
                    verdict.update(
                        action="adjust", bbox=_drawn(objects[best], query), label=objects[best].label
                    )
            seconds += self.cost.box(verdict["action"])
            reviewed.append(verdict)
        missing = [i for i in range(len(objects)) if i not in taken]
        taken.update(missing)
        seconds += self.cost.image_per_box_s * len(missing)
        return {
            "query_id": query["query_id"],
            "action": "review",
            "reviewed": reviewed,
            "boxes": [{"bbox": _drawn(objects[i], query), "label": objects[i].label} for i in missing],
            "duration_ms": round(1000 * seconds),
        }
