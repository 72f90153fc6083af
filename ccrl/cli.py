"""The ``ccrl`` command: ``ccrl serve`` everywhere, the offline commands where they can run.

The serving images install the runtime alone (``service/`` with the ``cpu`` or ``gpu`` extra): no
``training`` package, no torch. There ``ccrl --help`` lists ``serve`` only and says why, and an
offline command (``ccrl train ...``) exits with status 2 and a message naming the ``train`` extra,
instead of a traceback from a missing import. Whether the offline side is installed is decided
from the import system's specs (:func:`offline_missing`), without importing torch, so
``ccrl --help`` stays instant.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ccrl import offline

# The top-level modules the offline commands import: our ``training`` package and the ``train``
# extra's libraries (torch, the ONNX exporter, matplotlib for the reports' plots).
OFFLINE_MODULES = ("training", "torch", "onnx", "matplotlib")
# `ccrl index` runs the runtime on Dask: the ``batch`` package, the ``dask`` extra, and the
# torch-free corners of ``training`` (the CG rule, the submission writer); no torch.
BATCH_MODULES = ("batch", "distributed", "training")
NOT_INSTALLED_EXIT = 2


def offline_missing(modules: tuple[str, ...] = OFFLINE_MODULES) -> list[str]:
    """The modules of ``modules`` that cannot be imported here (found without importing them)."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def not_installed_message(command: str, missing: list[str]) -> str:
    return (
        f"error: `ccrl {command}` is an offline command and the offline side is not installed here "
        f"(missing: {', '.join(missing)}). This installation serves only (`ccrl serve`); to run "
        "it, install the `train` extra from a full checkout: pip install '.[cpu,train]'"
    )


def serve(
    bundle: Annotated[
        Path | None, typer.Option(help="Model bundle (default: $CCRL_BUNDLE).")
    ] = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: $CCRL_WORKERS, else 1).")
    ] = None,
) -> None:
    """Serve the localization API (runtime only: no torch, no training code)."""
    from service.api.server import run_server

    run_server(bundle=bundle, host=host, port=port, workers=workers)


def _not_installed(
    command: str, missing: list[str], message: str | None = None
) -> Callable[..., Any]:
    """A stand-in for ``command`` that takes any arguments and exits with the message."""

    def stand_in() -> None:
        typer.echo(message or not_installed_message(command, missing), err=True)
        raise typer.Exit(NOT_INSTALLED_EXIT)

    return stand_in


def _register_index(app: typer.Typer, missing: list[str]) -> None:
    """``ccrl index`` where ``batch`` and the ``dask`` extra are installed, else a stand-in."""
    if not missing:
        from batch.cli import index

        app.command("index")(index)
        return
    message = (
        f"error: `ccrl index` runs on Dask and is not installed here (missing: "
        f"{', '.join(missing)}); install the `dask` extra from a full checkout: "
        "pip install '.[cpu,dask]'"
    )
    app.command(
        "index",
        hidden=True,
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )(_not_installed("index", missing, message))


def build_app(missing: list[str], batch_missing: list[str] | None = None) -> typer.Typer:
    """The app: ``serve``, and the offline commands (hidden stand-ins when ``missing``)."""
    names = ", ".join(name for name, _ in offline.COMMANDS)
    app = typer.Typer(
        name="ccrl",
        help="Temporal concept localization in video with Cross-Class Relevance Learning.",
        epilog=(
            f"Offline commands ({names}) need the `train` extra, not installed here."
            if missing
            else None
        ),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
    )
    app.command("serve")(serve)
    from ccrl import bank  # runtime only: there in the serving images too

    app.add_typer(bank.app, name="bank")
    for name, command in offline.RUNTIME_COMMANDS:
        app.command(name)(command)
    for name, command in offline.COMMANDS:
        if not missing:
            app.command(name)(command)
            continue
        app.command(
            name,
            hidden=True,
            add_help_option=False,
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        )(_not_installed(name, missing))
    _register_index(app, batch_missing or [])
    return app


app = build_app(offline_missing(), offline_missing(BATCH_MODULES))


def main() -> None:
    app()
