"""How long a new project's annotators wait: from import to the first query, and to the first box query.

    python bench/first_query.py                     # Aquarium: 30 labeled + 300 pool images, default settings
    python bench/first_query.py --smoke             # 2 + 6 images: that it runs, in a minute

`boxal serve` on the embedded default (its own data dir, its own worker) is given a project with the
default settings and model preset, the pool images registered and the ground truth of the first
``--labeled`` of them imported (the initial labeled set), as the README's walk-through does. Then:
- the first lease right after the import: before any model, a whole image to label (annotators never
  wait for the first model);
- POST /rounds, then leases for box queries every half second until one comes: the first model's
  training and scoring of the pool, read off the job's progress, stage by stage;
- meanwhile, a lease without a unit: work is served while the round trains.
Alone on the machine: training and scoring take both cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oracle.server import embedded_server  # noqa: E402

console = Console()
SHARED = ROOT.parent / "shared" / "datasets" / "aquarium"


def run(data: Path, labeled: int, pool: int, settings: dict) -> list[tuple[str, str]]:
    names = yaml.safe_load((data / "data.yaml").read_text())["names"]
    classes = list(names.values()) if isinstance(names, dict) else list(names)
    files = sorted((data / "train" / "images").iterdir())[: labeled + pool]
    rows: list[tuple[str, str]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        embedded_server(Path(tmp) / "server", image_root=data, log=Path(tmp) / "server.log") as (url, token),
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client,
    ):
        pid = client.post(
            "/v1/projects", json={"name": "bench", "classes": classes, "settings": settings}
        ).json()["id"]
        images = [{"uri": f"file://{f}", "split": "pool"} for f in files]
        client.post(f"/v1/projects/{pid}/images", json={"images": images}).raise_for_status()
        ids = [f.stem for f in files[:labeled]]
        body = {"format": "yolo", "path": str(data), "subsets": ["train"], "ids": ids}
        client.post(f"/v1/projects/{pid}/imports", json=body).raise_for_status()
        imported = time.perf_counter()
        first = client.post(f"/v1/projects/{pid}/queries", json={"k": 1, "annotator": "a"}).json()["queries"]
        rows.append(
            ("first query after the import", f"{time.perf_counter() - imported:.3f} s ({first[0]['unit']})")
        )
        client.delete(f"/v1/projects/{pid}/queries/{first[0]['query_id']}")
        started = time.perf_counter()
        job = client.post(f"/v1/projects/{pid}/rounds").json()["job_id"]
        served_while_training, stages = None, {}
        box = None
        while box is None and time.perf_counter() - started < 3600:
            progress = client.get(f"/v1/jobs/{job}").json()
            stage = (progress.get("progress") or {}).get("stage", progress["state"])
            stages.setdefault(stage, time.perf_counter() - started)
            if served_while_training is None and stage == "training":
                work = client.post(f"/v1/projects/{pid}/queries", json={"k": 1, "annotator": "b"}).json()[
                    "queries"
                ]
                served_while_training = work[0]["unit"] if work else "nothing"
            lease = {"k": 1, "annotator": "a", "unit": "box"}
            found = client.post(f"/v1/projects/{pid}/queries", json=lease).json()["queries"]
            if found:
                box = time.perf_counter() - started
            elif progress["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.5)
        rounds = client.get(f"/v1/projects/{pid}/rounds").json()["items"]
        client_settings = client.get(f"/v1/projects/{pid}").json()["settings"]
    for stage, at in stages.items():
        rows.append((f"round 1 reached '{stage}'", f"{at:.0f} s after POST /rounds"))
    rows.append(("a query served while round 1 trains", str(served_while_training)))
    if box is not None:
        rows.append(("first box query after POST /rounds", f"{box:.0f} s"))
    else:  # why: the round's predictions, and the floor a box query's candidate must reach
        last = rounds[-1]
        floor = client_settings["query_min_score"]
        map50 = (last.get("metrics") or {}).get("map50")
        predictions = (last.get("pool") or {}).get("unlabeled_boxes", 0)
        measured = f" (test mAP@0.5 {map50:.3f})" if map50 is not None else ""
        why = f"round {last['round']} {last['state']}{measured}, {predictions}"
        why += f" predictions, none served at query_min_score {floor}" + (
            f" ({last['notice']})" if last.get("notice") else ""
        )
        rows.append(("first box query", f"none: {why}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="a YOLO folder (data.yaml, train/)")
    parser.add_argument("--labeled", type=int, default=30)
    parser.add_argument("--pool", type=int, default=300)
    parser.add_argument("--loop", choices=["boxal", "paper"], help="the project's loop (default: boxal's)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: that it runs")
    args = parser.parse_args()
    settings: dict = {"loop": args.loop} if args.loop else {}
    if args.smoke:
        args.labeled, args.pool = 2, 6
        settings |= {"epochs": 1, "min_size": 128, "max_size": 160}
    rows = run(args.data, args.labeled, args.pool, settings)
    what = f"{args.labeled} labeled + {args.pool} pool images of {args.data.name}"
    console.print(f"{what}, settings {settings or 'default'}")
    print("| measure | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
