"""``ccrl serve``: run the API with uvicorn (runtime only: no torch, no training code).

The bundle is checked in the parent process first (every sha256 of its manifest), and so are the
settings (a token shorter than 16 characters), so a bad start stops the command with a clear
message before any worker starts. With several workers, Prometheus multiprocess mode is set up (a
fresh ``PROMETHEUS_MULTIPROC_DIR``) before the workers import anything.

Connection limits (:func:`uvicorn_limits`, from the settings): the h11 protocol with the read
deadlines of :mod:`service.api.protocol`, the request head capped at ``CCRL_MAX_HEADER_BYTES``,
``CCRL_KEEP_ALIVE_S`` idle keep-alive, and ``CCRL_MAX_CONNECTIONS`` (per worker) beyond which
requests are answered 503.

The workers share a control folder (``CCRL_CONTROL_DIR``: hot reloads) and run under
:mod:`service.api.supervisor`: SIGHUP reloads the bundle in place, SIGTERM drains and exits 0
(:mod:`service.api.shutdown`).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.api.control import ENV as CONTROL_ENV
from service.api.supervisor import LOG_FORMAT, ShutdownTimes, serve
from service.bundle import BundleError, read_manifest, verify_files
from service.config import Settings

log = logging.getLogger("ccrl.server")


def resolve_bundle(bundle: Path | str | None) -> Path:
    """``--bundle`` or ``$CCRL_BUNDLE``, checked (manifest and every sha256); exits on a bad one."""
    raw = bundle if bundle is not None else os.environ.get("CCRL_BUNDLE")
    if not raw:
        raise BundleError("no model bundle: pass --bundle DIR or set CCRL_BUNDLE")
    path = Path(raw).expanduser().absolute()  # not resolved: a reload re-reads a symlink
    if not path.is_dir():
        raise BundleError(f"{path}: bundle folder not found")
    manifest = read_manifest(path)
    verify_files(path, manifest)
    return path


def uvicorn_limits(settings: Settings) -> dict[str, Any]:
    """The uvicorn options that enforce the connection limits of ``settings``."""
    from service.api.protocol import PROTOCOL

    return {
        "http": PROTOCOL,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": settings.keep_alive_s,
    }


def load_settings() -> Settings:
    """The settings from the environment, or exit with the problem (never the token itself)."""
    try:
        return Settings()
    except ValidationError as e:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        print("error: refusing to serve: bad settings\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


def run_server(
    bundle: Path | str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Serve the API on ``host:port`` with ``workers`` processes until interrupted.

    The event loop and the access log are the settings' (``CCRL_EVENT_LOOP``,
    ``CCRL_ACCESS_LOG``), and so is the default worker count (``CCRL_WORKERS``).

    Args:
        bundle: the model bundle folder (default ``$CCRL_BUNDLE``).
        host: bind address.
        port: TCP port.
        workers: uvicorn worker processes (each loads the bundle; share state through Redis);
            None = ``CCRL_WORKERS`` (default 1).
    """
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if workers is not None and workers < 1:
        print(f"error: --workers must be >= 1, got {workers}", file=sys.stderr)
        raise SystemExit(2)
    try:
        path = resolve_bundle(bundle)
    except BundleError as e:
        print(f"error: refusing to serve: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    os.environ["CCRL_BUNDLE"] = str(path)
    settings = load_settings()
    workers = settings.workers if workers is None else workers
    mp_dir: str | None = None
    if workers > 1:
        mp_dir = tempfile.mkdtemp(prefix="ccrl-prometheus-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = mp_dir
    if workers > 1 and not os.environ.get("REDIS_URL"):
        print(
            "warning: several workers without REDIS_URL: each worker keeps its own label bank "
            "and corpus index (set REDIS_URL to share them)",
            file=sys.stderr,
        )
    print(f"serving {path} on http://{host}:{port} ({workers} worker(s))", file=sys.stderr)
    control = tempfile.mkdtemp(prefix="ccrl-control-")
    os.environ[CONTROL_ENV] = control  # reload requests and worker states (service.api.control)
    times = ShutdownTimes(settings.shutdown_grace_s, settings.shutdown_drain_s)
    try:
        status = serve(
            "service.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            loop=settings.event_loop,
            access_log=settings.access_log,
            times=times,
            balanced=settings.balance_connections,
            **uvicorn_limits(settings),
        )
    finally:
        for folder in (mp_dir, control):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
    if status:
        raise SystemExit(status)
