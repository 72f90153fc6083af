"""The offline commands of ``ccrl``: they run the ``training`` package (torch, the ONNX exporter).

Each one imports what it needs inside its body, so ``ccrl --help`` stays instant. They are plain
functions here; :mod:`ccrl.cli` registers them on the app only where the offline side is installed.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class CandidateModel(StrEnum):
    lstm = "lstm"
    logistic = "logistic"
    ensemble = "ensemble"


class Preset(StrEnum):
    small = "small"
    paper = "paper"


def synth(
    out: Annotated[Path, typer.Argument(help="Output folder (train/, validate/, test/, CSVs).")],
    profile: Annotated[
        str, typer.Option(help="Corpus structure: default or hard (training/synth_profiles.py).")
    ] = "default",
    videos: Annotated[
        int | None, typer.Option(help="Total videos over all splits (default: the profile's).")
    ] = None,
    classes: Annotated[
        int | None, typer.Option(help="Vocabulary size (default: the profile's).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the corpus is deterministic for it.")] = 0,
    gzip: Annotated[bool, typer.Option("--gzip", help="Write gzip-compressed TFRecords.")] = False,
    shards: Annotated[int, typer.Option(help="Shards per split.")] = 4,
    min_frames: Annotated[
        int | None, typer.Option(help="Shortest video, in frames (>= 10; default: the profile's).")
    ] = None,
    max_frames: Annotated[
        int | None, typer.Option(help="Longest video, in frames (<= 300; default: the profile's).")
    ] = None,
) -> None:
    """Write a synthetic corpus in the YouTube-8M frame-level layout (see training/synth.py).

    ``--profile default`` (2000 videos, 100 classes) or ``hard`` (5100 videos, 78 classes: weak
    context, rated classes often secondary or absent, noisy labels; training/synth_profiles.py).
    """
    from training.synth import run_synth
    from training.synth_profiles import get_profile

    try:
        get_profile(profile)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile") from exc
    run_synth(
        out,
        videos=videos,
        classes=classes,
        seed=seed,
        gzip=gzip,
        shards=shards,
        min_frames=min_frames,
        max_frames=max_frames,
        profile=profile,
    )


def inspect_cmd(
    paths: Annotated[list[Path], typer.Argument(help="TFRecord files, folders or globs.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    skip_corrupt: Annotated[
        bool, typer.Option("--skip-corrupt", help="Skip corrupt records with a warning.")
    ] = False,
) -> None:
    """Summarize a data set: videos, frames, rated and positive segments, classes."""
    from training.summary import run_inspect

    run_inspect(paths, json_out=json_out, skip_corrupt=skip_corrupt)


def score(
    submission: Annotated[Path, typer.Argument(help="Kaggle submission CSV (Class,Segments).")],
    data: Annotated[list[Path], typer.Option(help="Segment-rated TFRecords (files/folders).")],
    top: Annotated[int, typer.Option(help="Segments kept per class.")] = 100_000,
) -> None:
    """Score a submission with the challenge metric; the last line is `mAP <value>`."""
    from training.metric import run_score

    run_score(submission, data, top=top)


def train_candidates(
    data: Annotated[Path, typer.Argument(help="Corpus folder with train/ and a rated split.")],
    out: Annotated[Path, typer.Option(help="Output folder for the ONNX graph(s) and report.")],
    model: Annotated[CandidateModel, typer.Option(help="Which generator.")] = CandidateModel.lstm,
    preset: Annotated[Preset, typer.Option(help="Model size.")] = Preset.small,
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option(help="Resume from the last checkpoint in OUT.")] = False,
) -> None:
    """Train the video-level candidate model(s) and export candidate.onnx with a recall report."""
    from training.candidates import run_train_candidates

    run_train_candidates(
        data, out, model=model.value, preset=preset.value, epochs=epochs, seed=seed, resume=resume
    )


def train(
    data: Annotated[Path, typer.Argument(help="Corpus folder (train/, validate/, test/).")],
    out: Annotated[Path, typer.Option(help="Bundle folder, e.g. models/NAME.")],
    preset: Annotated[Preset, typer.Option(help="Candidate model size.")] = Preset.small,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: Annotated[
        int | None, typer.Option(help="Train the CCRL GBM on a local Dask cluster of N workers.")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Train the CCRL GBM on this running Dask scheduler.")
    ] = None,
) -> None:
    """Run the whole pipeline: candidates, baselines, CCRL, bank, export, report."""
    from training.pipeline import run_train

    run_train(data, out, preset=preset.value, seed=seed, workers=workers, scheduler=scheduler)


def evaluate(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder.")],
    data: Annotated[list[Path], typer.Option(help="Segment-rated TFRecords (files/folders).")],
    out: Annotated[Path | None, typer.Option(help="Report folder (default BUNDLE/report).")] = None,
) -> None:
    """Evaluate every model of a bundle and write the report (markdown, JSON, plots)."""
    from training.report import run_evaluate

    run_evaluate(bundle, data, out=out)


def submit(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder.")],
    data: Annotated[list[Path], typer.Option(help="TFRecords to rank (files/folders).")],
    out: Annotated[Path, typer.Option(help="Submission CSV to write.")],
    model: Annotated[str, typer.Option(help="ccrl, lstm, convnet, ensemble, ...")] = "ccrl",
    no_cg: Annotated[bool, typer.Option("--no-cg", help="Rank all segments (no CG).")] = False,
    top: Annotated[int, typer.Option(help="Segments kept per class.")] = 100_000,
) -> None:
    """Write a Kaggle submission (Class,Segments) for any model, with or without CG."""
    from training.submit import run_submit

    run_submit(bundle, data, out, model=model, cg=not no_cg, top=top)


def demo(
    data: Annotated[Path, typer.Option(help="Demo corpus folder.")] = Path("data/demo"),
    bundle: Annotated[Path, typer.Option(help="Demo bundle folder.")] = Path("models/demo"),
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    build_only: Annotated[
        bool, typer.Option("--build-only", help="Build the corpus and bundle, do not serve.")
    ] = False,
) -> None:
    """Build the demo corpus and bundle when missing, then serve them (`make serve`)."""
    from ccrl.demo import run_demo

    run_demo(data=data, bundle=bundle, host=host, port=port, build_only=build_only)


def explain(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder.")],
    data: Annotated[list[Path], typer.Option(help="TFRecords holding the video (files/folders).")],
    video: Annotated[str, typer.Option(help="The video id.")],
    class_id: Annotated[int, typer.Option("--class", help="The class id.")],
    segments: Annotated[int, typer.Option(help="Best segments to explain.", min=1)] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Why a video's segments score what they do for a class: feature contributions, neighbours."""
    from service.bundle import BundleError
    from service.explain_offline import run_explain

    try:
        run_explain(bundle, data, video, class_id, segments=segments, json_out=json_out)
    except (BundleError, LookupError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None


# Commands that need the runtime alone (no torch, no ``training``): listed everywhere.
RUNTIME_COMMANDS = (("explain", explain),)

# (command name, function), in the order of ``ccrl --help``.
COMMANDS = (
    ("synth", synth),
    ("inspect", inspect_cmd),
    ("score", score),
    ("train-candidates", train_candidates),
    ("train", train),
    ("evaluate", evaluate),
    ("submit", submit),
    ("demo", demo),
)
