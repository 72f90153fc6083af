"""``ccrl bank ...``: the label bank of a bundle (runtime only: numpy, no torch, no training code).

``ccrl bank import BUNDLE ENTRIES.npz --out NEW_BUNDLE`` writes a new bundle whose bank is the
given labelled segments (:mod:`service.bank_import` says what the file holds and what is checked).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="bank",
    help="The label bank of a bundle: bulk-load your own rated segments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.command("import")
def import_(
    bundle: Annotated[Path, typer.Argument(help="The bundle whose models the new one keeps.")],
    entries: Annotated[
        Path,
        typer.Argument(
            help="npz: embeddings f32[N,D], classes i64[N], labels i8[N] 1/0, videos str[N], "
            "starts i64[N] (read with allow_pickle=False)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="The new bundle folder (must not exist).")],
) -> None:
    """A new bundle whose bank is ENTRIES: checked, re-hashed, with a new version."""
    from service.bank_import import EntriesError, import_bank
    from service.bundle import BundleError

    try:
        res = import_bank(bundle, entries, out)
    except (EntriesError, BundleError, FileExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{res.out}: version {res.version}, bank of {res.entries} entries "
        f"({res.positives} positive, {res.negatives} negative), D={res.dim}"
    )
