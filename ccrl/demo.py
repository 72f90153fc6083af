"""``ccrl demo`` (``make serve``): the offline side builds the demo, then the runtime serves it.

:func:`training.demo.build_demo` writes what is missing (corpus, bundle, example request); this
module prints how to query it and starts :func:`service.api.server.run_server`, so that
``training`` never imports the API.
"""

from __future__ import annotations

import os
from pathlib import Path


def curl_example(host: str, port: int, request: Path) -> str:
    """The shell command that posts the example ``request`` file to ``/localize``."""
    return (
        f"curl -s -X POST http://{host}:{port}/localize "
        f"-H 'Content-Type: application/json' --data @{request}"
    )


def run_demo(
    data: Path = Path("data/demo"),
    bundle: Path = Path("models/demo"),
    host: str = "127.0.0.1",
    port: int = 8000,
    build_only: bool = False,
) -> None:
    """Build what is missing (with progress bars), then serve ``bundle`` on ``host:port``."""
    from training.demo import build_demo

    data, bundle = Path(data), Path(bundle)
    request = build_demo(data, bundle)
    print(f"[demo] bundle {bundle} is ready; try:\n  {curl_example(host, port, request)}")
    if build_only:
        return
    os.environ.pop("REDIS_URL", None)  # the demo runs on the embedded in-process store
    from service.api.server import run_server

    run_server(bundle=bundle, host=host, port=port, workers=1)
