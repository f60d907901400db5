"""The annotation page, driven in headless Chromium (Debian's, through Playwright) as a person would use
it; then the API is asked what was recorded."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image as PILImage
from PIL import ImageDraw
from sqlalchemy import select, update

from app.auth.service import create_token
from app.models import Box, Query, utcnow
from tests.conftest import BCCD
from tests.factories import create_project

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no chromium installed"),
]
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# (x1, y1, x2, y2, informativeness) of the predicted boxes, served highest first
CANDIDATES = [
    (40, 40, 120, 110, 0.9),
    (160, 50, 230, 130, 0.8),
    (260, 30, 300, 90, 0.7),
    (60, 140, 140, 220, 0.6),
    (180, 150, 250, 220, 0.5),
    (270, 150, 310, 210, 0.4),
    (20, 20, 60, 60, 0.3),
    (200, 10, 240, 40, 0.2),
]


def _picture(path: Path) -> tuple[Path, list[tuple[float, float, float, float, float]]]:
    """A 320x240 picture and candidate boxes: a BCCD blood-cell photograph with boxes taken from its ground
    truth (shifted, as a model's would be) when the data set is beside the project, else drawn shapes."""
    if (BCCD / "JPEGImages" / "BloodImage_00001.jpg").exists():
        from formats.voc import parse_voc_xml

        PILImage.open(BCCD / "JPEGImages" / "BloodImage_00001.jpg").convert("RGB").resize((320, 240)).save(
            path
        )
        objects = parse_voc_xml(BCCD / "Annotations" / "BloodImage_00001.xml").objects
        boxes = [[v / 2 for v in o.bbox] for o in objects if o.defect is None]
        candidates = [
            (max(0, x1 + 3), max(0, y1 - 2), min(320, x2 + 4), min(240, y2 - 1), 0.9 - 0.1 * i)
            for i, (x1, y1, x2, y2) in enumerate(boxes[:8])
        ]
        if len(candidates) == 8 and all(c[2] - c[0] > 15 and c[3] - c[1] > 15 for c in candidates):
            return path, candidates
    image = PILImage.new("RGB", (320, 240), (70, 80, 90))
    draw = ImageDraw.Draw(image)
    for x1, y1, x2, y2, _ in CANDIDATES:
        draw.rectangle([x1 + 4, y1 + 4, x2 - 4, y2 - 4], fill=(200, 170, 60))
    image.save(path)
    return path, CANDIDATES


def _predicted(
    session, project_id: int, image_id: int, bbox: list[float], score: float, informativeness=None
) -> None:
    """A model's unanswered box on the image (class 0), as a round's scoring leaves it."""
    x1, y1, x2, y2 = bbox
    session.add(
        Box(
            project_id=project_id,
            image_id=image_id,
            source="predicted",
            status="unlabeled",
            x1=x1,
            y1=y1,
            x2=x2,
            y2=y2,
            label=0,
            score=score,
            informativeness=informativeness,
        )
    )


@pytest.fixture
def world(client, database, live_server, tmp_path: Path):
    boxes = create_project(client, name="cells", classes=["rbc", "wbc"], round_size=100, lease_ttl_s=600)
    whole = create_project(client, name="slides", classes=["rbc", "wbc"], unit="image")
    picture, candidates = _picture(tmp_path / "cells.png")
    box_image = client.post(
        f"/v1/projects/{boxes['id']}/images", json={"images": [{"uri": f"file://{picture}"}]}
    ).json()["images"][0]
    client.post(
        f"/v1/projects/{whole['id']}/images",
        json={"images": [{"uri": f"file://{picture}", "external_id": "s1"}]},
    )
    with database.transaction() as session:
        for x1, y1, x2, y2, informativeness in candidates:
            _predicted(session, boxes["id"], box_image["id"], [x1, y1, x2, y2], 0.6, informativeness)
        _, token = create_token(session, "ana", "annotator", [boxes["id"], whole["id"]])
    return {"boxes": boxes["id"], "whole": whole["id"], "token": token, "url": live_server.url}


def _current(page) -> dict:
    return page.evaluate(
        "() => ({id: window.boxal.current?.query_id, unit: window.boxal.current?.unit,"
        " bbox: window.boxal.current?.bbox, box_id: window.boxal.current?.box_id})"
    )


def _press(page, key: str) -> None:
    before = _current(page)["id"]
    page.keyboard.press(key)
    page.wait_for_function(f"() => window.boxal.current && window.boxal.current.query_id !== {before}")


def _screen(page, point: list[float]) -> tuple[float, float]:
    """Where an image point is on the screen (the canvas may be scaled by CSS)."""
    x, y = page.evaluate(f"() => window.boxal.toCanvas({point})")
    rect = page.locator("#canvas").bounding_box()
    width = page.evaluate("() => document.getElementById('canvas').width")
    scale = rect["width"] / width
    return rect["x"] + x * scale, rect["y"] + y * scale


def test_annotating_through_the_page_records_exactly_those_answers(client, database, world, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{world['url']}/ui/")
        page.fill("#token", world["token"])
        page.fill("#annotator", "someone else")  # an annotator token records its own name whatever this says
        page.click("button[type=submit]")
        page.wait_for_function("() => window.boxal.current && window.boxal.current.unit === 'box'")
        assert page.locator("#progress").inner_text().startswith("round 0")

        seen = []
        seen.append(_current(page))
        _press(page, "a")  # 1: accept as predicted

        seen.append(_current(page))  # 2: drag the bottom-right corner, then accept: sent as adjust
        x2, y2 = seen[-1]["bbox"][2], seen[-1]["bbox"][3]
        start = _screen(page, [x2, y2])
        end = _screen(page, [x2 + 12, y2 + 9])
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        page.mouse.move(*end)
        page.mouse.up()
        dragged = page.evaluate("() => window.boxal.box")
        page.screenshot(path=str(tmp_path / "ui.png"))  # mid-task, for the README
        _press(page, "a")

        seen.append(_current(page))
        _press(page, "b")  # 3: background
        seen.append(_current(page))
        _press(page, "d")  # 4: duplicate
        seen.append(_current(page))
        _press(page, "s")  # 5: skip: given back, not answered
        seen.append(_current(page))
        page.keyboard.press("2")  # 6: change the class to wbc, then accept: sent as adjust
        _press(page, "a")

        # 7: the lease runs out and someone else takes the box: the answer gets 409, the page goes on.
        # First let the page's background prefetch finish: a lease still in flight would take the box back.
        page.wait_for_function("() => window.boxal.leasing === null")
        taken = _current(page)
        with database.transaction() as session:
            session.execute(
                update(Box).where(Box.id == taken["box_id"]).values(lease_expires_at=utcnow() - timedelta(1))
            )
            session.execute(
                update(Query).where(Query.id == taken["id"]).values(expires_at=utcnow() - timedelta(1))
            )
        other = client.post(
            f"/v1/projects/{world['boxes']}/queries", json={"k": 8, "annotator": "bob"}
        ).json()
        assert taken["box_id"] in [q["box_id"] for q in other["queries"]]
        _press(page, "a")
        assert "Not recorded" in page.locator("#message").inner_text()

        page.select_option("#project", str(world["whole"]))  # the image query of the other project
        page.wait_for_function("() => window.boxal.current && window.boxal.current.unit === 'image'")
        page.keyboard.press("2")
        corner, far = _screen(page, [30, 140]), _screen(page, [150, 225])
        page.mouse.move(*corner)
        page.mouse.down()
        page.mouse.move(*far, steps=5)
        page.mouse.up()
        drawn = page.evaluate("() => window.boxal.boxes.map(b => b.bbox)")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => document.getElementById('message').textContent.includes('label_all recorded')"
        )
        page.close(run_before_unload=True)  # the page gives back what it still holds
        browser.close()

    events = client.get(f"/v1/projects/{world['boxes']}/labels").json()["items"]
    answers = [
        (e["query_id"], e["action"], e["after"]["bbox"], e["after"]["label"], e["annotator"]) for e in events
    ]
    assert answers == [
        (seen[0]["id"], "accept", seen[0]["bbox"], 0, "ana"),
        (seen[1]["id"], "adjust", dragged, 0, "ana"),
        (seen[2]["id"], "background", seen[2]["bbox"], 0, "ana"),
        (seen[3]["id"], "duplicate", seen[3]["bbox"], 0, "ana"),
        (seen[5]["id"], "adjust", seen[5]["bbox"], 1, "ana"),
    ]
    assert (
        dragged[2] > seen[1]["bbox"][2] + 8 and dragged[3] > seen[1]["bbox"][3] + 5
    )  # the drag moved the corner
    assert all(e["duration_ms"] is not None and e["duration_ms"] >= 0 for e in events)
    whole = client.get(f"/v1/projects/{world['whole']}/labels").json()["items"]
    assert len(whole) == 1 and whole[0]["action"] == "label_all" and whole[0]["annotator"] == "ana"
    recorded = [(b["bbox"], b["label"]) for b in whole[0]["after"]["boxes"]]
    assert recorded == [(drawn[0], 1)]
    assert abs(drawn[0][0] - 30) < 2 and abs(drawn[0][3] - 225) < 2
    with database.transaction(write=False) as session:
        states = dict(session.execute(select(Query.id, Query.state)).all())
        held = session.scalars(
            select(Query.id).where(
                Query.state == "leased", Query.annotator == "ana", Query.expires_at > utcnow()
            )
        ).all()
    assert states[seen[4]["id"]] == "released"  # the skip
    assert held == []  # closing the page gave its prefetched leases back
    if os.environ.get("BOXAL_UI_SCREENSHOT"):
        shutil.copy(tmp_path / "ui.png", os.environ["BOXAL_UI_SCREENSHOT"])


def test_the_page_is_served_without_a_token_and_holds_no_data(client) -> None:
    from fastapi.testclient import TestClient

    with TestClient(client.app) as anonymous:
        page = anonymous.get("/ui/")
        assert page.status_code == 200 and "boxal" in page.text and "Authorization" not in page.text
        assert anonymous.get("/ui/app.js").status_code == 200
        assert anonymous.get("/v1/projects").status_code == 401


def test_the_page_shows_the_latest_round_per_class_quality(client, database, world) -> None:
    """A round's per-class AP and box counts, as the evaluation stage records them, in the side panel;
    a class name is shown as text, never run as markup."""
    from playwright.sync_api import sync_playwright

    from app.models import Round

    names = ["rbc", "<img src=x onerror=window.pwned=1>"]
    per_class = [
        {
            "class": names[0],
            "ap": 0.41,
            "ap50": 0.8,
            "labeled": 12,
            "noisy": 30,
            "queued": 400,
            "test_boxes": 90,
        },
        {"class": names[1], "ap": None, "ap50": None, "labeled": 0, "noisy": 2, "queued": 7, "test_boxes": 0},
    ]
    with database.transaction() as session:
        for number, metrics in (
            (1, {"map": 0.1, "map50": 0.2}),
            (2, {"map": 0.4, "map50": 0.8, "per_class": per_class}),
        ):
            session.add(Round(project_id=world["boxes"], number=number, state="closed", metrics=metrics))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{world['url']}/ui/")
        page.fill("#token", world["token"])
        page.click("button[type=submit]")
        page.wait_for_selector("#class-rows tr")
        assert page.locator("#classes-title").inner_text() == "per class, round 2"
        rows = [
            [cell.inner_text() for cell in row.locator("td").all()]
            for row in page.locator("#class-rows tr").all()
        ]
        assert rows == [
            ["rbc", "0.800", "0.410", "12", "30", "400", "90"],
            [names[1], "–", "–", "0", "2", "7", "0"],
        ]
        assert page.evaluate("() => window.pwned") is None
        browser.close()


def test_an_image_review_through_the_page_keeps_fixes_and_deletes_the_models_boxes(
    client, database, live_server, tmp_path
) -> None:
    """unit review: the page draws the model's boxes; one deleted, one relabeled, one left as it is, and
    a missing object drawn, are recorded as background, adjust, accept and a drawn box."""
    from playwright.sync_api import sync_playwright

    project = create_project(client, name="reviews", classes=["rbc", "wbc"], unit="review")
    picture, candidates = _picture(tmp_path / "review.png")
    image = client.post(
        f"/v1/projects/{project['id']}/images", json={"images": [{"uri": f"file://{picture}"}]}
    ).json()["images"][0]
    with database.transaction() as session:
        for x1, y1, x2, y2, score in candidates[:3]:
            _predicted(session, project["id"], image["id"], [x1, y1, x2, y2], score)
        _, token = create_token(session, "rev", "annotator", [project["id"]])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{live_server.url}/ui/")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_function("() => window.boxal.current && window.boxal.current.unit === 'review'")
        shown = page.evaluate("() => window.boxal.boxes.map(b => [b.box_id, b.bbox])")
        assert len(shown) == 3 and all(box_id for box_id, _ in shown)  # the model's boxes, drawn
        page.keyboard.press("Delete")  # the first (selected) box: no object there
        x1, y1, x2, y2 = shown[1][1]
        page.mouse.click(*_screen(page, [(x1 + x2) / 2, (y1 + y2) / 2]))  # select the second
        page.keyboard.press("2")  # it is a wbc: fixed
        corner, far = _screen(page, [5, 200]), _screen(page, [35, 235])  # draw one it missed
        page.mouse.move(*corner)
        page.mouse.down()
        page.mouse.move(*far, steps=5)
        page.mouse.up()
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => document.getElementById('message').textContent.includes('review recorded')"
        )
        browser.close()
    (event,) = client.get(f"/v1/projects/{project['id']}/labels").json()["items"]
    assert event["action"] == "review" and event["annotator"] == "rev" and event["duration_ms"] >= 0
    verdicts = {change["box_id"]: change for change in event["after"]["reviewed"]}
    assert verdicts[shown[0][0]]["action"] == "background"
    assert verdicts[shown[1][0]]["action"] == "adjust" and verdicts[shown[1][0]]["after"]["label"] == 1
    assert verdicts[shown[2][0]]["action"] == "accept"
    (drawn,) = event["after"]["boxes"]
    assert abs(drawn["bbox"][0] - 5) < 2 and abs(drawn["bbox"][3] - 235) < 2
    assert client.get(f"/v1/projects/{project['id']}/images/{image['id']}").json()["fully_labeled"]


def _signed_in(playwright, url: str, token: str):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/ui/")
    page.fill("#token", token)
    page.click("button[type=submit]")
    return browser, page


def test_the_curve_shows_with_two_rounds_and_a_retrain_is_followed(client, database, world) -> None:
    """Both failed before (issue 47): the chart stayed display:none (an SVG has no .hidden), and nothing on
    the page said a round was training."""
    from playwright.sync_api import sync_playwright

    from app.jobs import service as jobs
    from app.models import Round

    with database.transaction() as session:
        for number, boxes, map50 in ((1, 20, 0.31), (2, 120, 0.52)):
            session.add(
                Round(project_id=world["boxes"], number=number, state="closed", boxes_obtained=boxes,
                      seconds=60.0 * number, metrics={"map": map50 / 2, "map50": map50})
            )  # fmt: skip
        training = Round(project_id=world["boxes"], number=3, state="training")
        session.add(training)
        session.flush()
        job = jobs.new_round_job(session, training)
        jobs.job_progress(session, job.id, stage="training", fraction=0.42)
    with sync_playwright() as playwright:
        browser, page = _signed_in(playwright, world["url"], world["token"])
        page.wait_for_selector("#chart circle.round-point")
        assert page.locator("#curve").is_visible() and page.locator("#chart").is_visible()
        assert page.locator("#chart circle.round-point").count() == 2
        assert page.locator("#chart .x-tick").all_text_contents() == ["0", "60", "120"]  # boxes obtained
        titles = page.locator("#chart circle title").all_text_contents()
        assert titles[1] == "round 2: mAP@0.5 0.520 at 120 boxes, 2 min"
        box = page.locator("#chart").bounding_box()
        assert (
            box["width"] >= 300 and box["height"] >= 180 and box["y"] > 64
        )  # below the header, not under it
        page.select_option("#curve-axis", "seconds")
        assert page.locator("#chart .x-tick").all_text_contents() == ["0 min", "1 min", "2 min"]
        page.wait_for_function("() => !document.getElementById('training').hidden")
        assert page.locator("#training").inner_text() == "retraining round 3, 42% (training)"
        browser.close()


def test_undo_brings_the_last_answer_back_and_sends_the_new_one_as_a_correction(client, world) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, page = _signed_in(playwright, world["url"], world["token"])
        page.wait_for_function("() => window.boxal.current && window.boxal.current.unit === 'box'")
        first = _current(page)
        _press(page, "b")  # a slip: the box was an object
        second = _current(page)
        page.keyboard.press("u")
        page.wait_for_function(f"() => window.boxal.current.query_id === {first['id']}")
        assert "answering query" in page.locator("#message").inner_text()
        _press(page, "a")
        assert "accept recorded in place of background" in page.locator("#message").inner_text()
        assert _current(page)["id"] == second["id"]  # the query that was on screen comes back next
        assert page.locator("#undo").is_enabled()
        browser.close()
    events = client.get(f"/v1/projects/{world['boxes']}/labels").json()["items"]
    assert [(e["kind"], e["query_id"], e["action"]) for e in events] == [
        ("answer", first["id"], "background"),
        ("correction", first["id"], "accept"),
    ]
    assert events[1]["after"]["supersedes"] == events[0]["id"]
    box = next(b for b in client.get(f"/v1/projects/{world['boxes']}/images/1").json()["boxes"]
               if b["id"] == first["box_id"])  # fmt: skip
    assert box["status"] == "labeled"


CHESS = [
    f"{side}-{piece}"
    for side in ("white", "black")
    for piece in ("king", "queen", "rook", "bishop", "knight", "pawn")
]


def test_twelve_classes_are_picked_by_name_and_long_names_wrap(
    client, database, live_server, tmp_path
) -> None:
    from playwright.sync_api import sync_playwright

    project = create_project(client, name="chess", classes=CHESS)
    long_name = "a-very-long-photograph-name-from-the-camera-roll-" * 3
    picture, candidates = _picture(tmp_path / "board.png")
    image = client.post(
        f"/v1/projects/{project['id']}/images",
        json={"images": [{"uri": f"file://{picture}", "external_id": long_name[:200]}]},
    ).json()["images"][0]
    with database.transaction() as session:
        _predicted(session, project["id"], image["id"], list(candidates[0][:4]), 0.6, 0.9)
        _, token = create_token(session, "kim", "annotator", [project["id"]])
    with sync_playwright() as playwright:
        browser, page = _signed_in(playwright, live_server.url, token)
        page.wait_for_function("() => window.boxal.current && window.boxal.current.unit === 'box'")
        assert page.evaluate("() => document.activeElement.tagName") == "CANVAS"  # no button holds the keys
        aside = page.locator("aside").bounding_box()
        info = page.locator("#query-info").bounding_box()
        assert info["x"] + info["width"] <= aside["x"] + aside["width"] + 1  # the long name wraps
        page.keyboard.press("/")
        assert page.evaluate("() => document.activeElement.id") == "class-search"
        page.keyboard.type("black-pa")
        page.keyboard.press("Enter")
        assert page.evaluate("() => window.boxal.label") == "black-pawn"
        _ = page.evaluate("() => window.boxal.current.query_id")
        page.keyboard.press("a")
        page.wait_for_function(
            "() => document.getElementById('message').textContent.includes('adjust recorded')"
        )
        browser.close()
    (event,) = client.get(f"/v1/projects/{project['id']}/labels").json()["items"]
    assert event["action"] == "adjust" and event["after"]["label"] == CHESS.index("black-pawn") == 11
