"""The ``ccrl index`` command (registered in the ``ccrl`` CLI); ``python -m batch.cli`` runs it too.

Imports Dask and the job only when run, so ``ccrl --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def index(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder (the same path on workers).")],
    data: Annotated[list[Path], typer.Option(help="TFRecords to index (files/folders/globs).")],
    workers: Annotated[
        int | None, typer.Option(help="Local Dask worker processes (default 1).")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="A running Dask scheduler, e.g. tcp://host:8786.")
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="Write the service's index into this Redis.")
    ] = None,
    redis_prefix: Annotated[str, typer.Option(help="The service's CCRL_REDIS_PREFIX.")] = "ccrl",
    out: Annotated[Path | None, typer.Option(help="Kaggle submission CSV to write.")] = None,
    top: Annotated[int, typer.Option(help="Segments kept per class (CSV and Redis).")] = 100_000,
    no_cg: Annotated[bool, typer.Option("--no-cg", help="Rank all segments (no CG).")] = False,
    resume: Annotated[
        Path | None, typer.Option(help="Record finished tasks here; a rerun does the rest.")
    ] = None,
    chunk: Annotated[
        int | None, typer.Option(help="Videos per task (default: one task per shard).")
    ] = None,
    retries: Annotated[int, typer.Option(help="Extra tries of a task that fails.")] = 2,
) -> None:
    """Score a whole corpus on Dask into the service's Redis index and/or a Kaggle CSV."""
    import sys

    from batch.index_job import run_index, summary

    res = run_index(
        bundle,
        data,
        workers=workers,
        scheduler=scheduler,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        out=out,
        top=top,
        cg=not no_cg,
        resume=resume,
        chunk_size=chunk,
        retries=retries,
        progress=sys.stderr.isatty(),
    )
    typer.echo(summary(res))


def main() -> None:
    typer.run(index)


if __name__ == "__main__":
    main()
