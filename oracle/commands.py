"""The oracle's commands on the `boxal` CLI (registered by the ``boxal.commands`` entry point):
`boxal simulate` and `boxal report`. Importing this module is light: no torch, no server code."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from boxal.watchdog import STALL_S  # light: no server, no torch


def register(cli: typer.Typer) -> None:
    cli.command(epilog=_presets_help())(simulate)
    cli.command()(report)


def _presets_help() -> str:
    from oracle.presets import PRESETS  # light: no torch

    return "Presets:\n\n" + "\n\n".join(f"{name}: {preset.description}" for name, preset in PRESETS.items())


def simulate(
    preset: Annotated[str, typer.Option(help="a preset, listed below")] = "smoke",
    url: Annotated[
        str | None, typer.Option(help="a running boxal server; default: start an embedded one")
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="experiment directory (default: experiments/<preset>)")
    ] = None,
    seed: Annotated[
        list[int] | None, typer.Option(help="seeds to run (repeatable); default: the preset's")
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="data set location (VOC/COCO presets, or a digits folder)")
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(help="active-learning rounds per arm; default: the preset's")
    ] = None,
    initial_images: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="fully labeled images the first model trains on, drawn from the pool by the seed; default: "
            "the preset's (a probe for the size that gives a first model of a chosen strength)",
        ),
    ] = None,
    token: Annotated[str | None, typer.Option(envvar="BOXAL_TOKEN", help="bearer token for --url")] = None,
    smoke: Annotated[
        bool, typer.Option(help="the preset at toy size (a dozen images, one round): that it runs")
    ] = False,
    arm: Annotated[
        list[str] | None,
        typer.Option(
            help="run only these arms (repeatable; 'control' and 'full' name the control and the reference): "
            "a long experiment made in parts, merged by `boxal report`; default: every arm"
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="the detector backend of every arm: torchvision or detectron2; default: the preset's"
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="KEY=VALUE: a project setting of every arm, the initial model and the reference, over "
            "the preset's (repeatable; VALUE read as JSON, else as text; the initial model's and the "
            "reference's own step counts stay); recorded, so runs merge only with alike",
        ),
    ] = None,
    stall_timeout: Annotated[
        float,
        typer.Option(
            help="give up (exit 1) when a round's job shows no progress for this many seconds; the run "
            "also gives up when the server's worker exits for good or stops consuming for 120 s"
        ),
    ] = STALL_S,
) -> None:
    """Reproduce the paper's box vs image query experiment with a simulated oracle, over the REST API."""
    from boxal.client import BoxalError
    from boxal.watchdog import ServerStuck
    from oracle.simulate import overrides
    from oracle.simulate import simulate as run

    try:
        run(
            preset,
            url=url,
            out=Path(out or f"experiments/{preset}"),
            seeds=seed,
            data=Path(data) if data else None,
            token=token,
            rounds=rounds,
            initial_images=initial_images,
            smoke=smoke,
            only=arm,
            backend=backend,
            settings=overrides(set_ or []),
            stall_s=stall_timeout,
        )
    except ServerStuck as exc:
        typer.echo(f"boxal simulate stopped: {exc}", err=True)
        raise typer.Exit(1) from exc
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    except BoxalError as exc:
        # only a refusal of the project's settings is the user's to mend; any other answer is a fault
        if (exc.status, exc.method, exc.path) != (422, "POST", "/v1/projects") or "settings" not in str(
            exc.detail
        ):
            raise
        typer.echo(f"the server refused the experiment's settings: {exc}", err=True)
        raise typer.Exit(2) from exc


def report(
    runs: Annotated[list[str], typer.Argument(help="experiment directories of one experiment, other seeds")],
    out: Annotated[str, typer.Option(help="where the merged rounds, plots and summary go")],
    level: Annotated[
        list[float] | None,
        typer.Option(
            help="a share of the fully supervised mAP@0.5 to tabulate the cost of (repeatable, 0.9 = 90%); "
            "default: 0.8, 0.9 and 0.95"
        ),
    ] = None,
    reference: Annotated[
        list[str] | None,
        typer.Option(
            help="a run of another experiment whose fully supervised reference stands for seeds the runs "
            "have none of (repeatable): same data set, model settings and reference schedule, checked"
        ),
    ] = None,
) -> None:
    """Merge runs of one experiment made separately (e.g. one seed per machine) into one report."""
    from oracle.merge import merge_runs
    from oracle.report import LEVELS

    try:
        command = shlex.join(
            [
                "boxal", "report", *runs, "--out", out,
                *(f"--reference={r}" for r in reference or []),
                *(f"--level={v:g}" for v in level or []),
            ]
        )  # fmt: skip
        merge_runs(
            [Path(r) for r in runs],
            Path(out),
            command,
            level or LEVELS,
            [Path(r) for r in reference or []],
        )
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"merged {len(runs)} runs: {Path(out) / 'summary.md'}")
