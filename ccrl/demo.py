"""``ccrl demo`` (``make serve``): the offline side builds the demo, then the runtime serves it.

:func:`training.demo.build_demo` writes what is missing (corpus, bundle, example request); this
module makes the demo's write token, prints how to query the service and starts
:func:`service.api.server.run_server`, so that ``training`` never imports the API.

Indexing a video and label writes need a bearer token. Unless ``CCRL_API_TOKEN`` is set, the demo
keeps one in ``DATA/api-token`` (made on first use, readable by its owner only) and serves with it;
the printed ``curl`` line passes it with ``$(cat DATA/api-token)``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TOKEN_FILE = "api-token"


def demo_token(data: Path) -> Path:
    """``DATA/api-token``, made (32 random url-safe bytes, mode 600) when missing."""
    path = Path(data) / TOKEN_FILE
    if not path.is_file() or not path.read_text(encoding="ascii").strip():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    return path


def curl_example(host: str, port: int, request: Path, token_file: Path | None = None) -> str:
    """The shell command that posts the example ``request`` file to ``/localize`` (with the
    token of ``token_file``, else of ``$CCRL_API_TOKEN``: the example indexes its video)."""
    token = f"$(cat {token_file})" if token_file is not None else "$CCRL_API_TOKEN"
    return (
        f"curl -s -X POST http://{host}:{port}/localize -H 'Content-Type: application/json' "
        f'-H "Authorization: Bearer {token}" --data @{request}'
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
    own_token = not os.environ.get("CCRL_API_TOKEN", "").strip()
    token_file = demo_token(data) if own_token else None
    where = token_file or "$CCRL_API_TOKEN"
    print(
        f"[demo] bundle {bundle} is ready; indexing and label writes need the token in {where}; "
        f"try:\n  {curl_example(host, port, request, token_file)}"
    )
    if build_only:
        return
    if token_file is not None:
        os.environ["CCRL_API_TOKEN"] = token_file.read_text(encoding="ascii").strip()
    os.environ.pop("REDIS_URL", None)  # the demo runs on the embedded in-process store
    from service.api.server import run_server

    run_server(bundle=bundle, host=host, port=port, workers=1)
