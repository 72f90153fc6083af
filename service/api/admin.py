"""``POST /admin/reload``: load, verify and swap a bundle without a restart (the write token).

The body is optional: ``{"bundle": "/models/v2"}`` loads that folder, no body (or ``{}``) reloads
the configured one (``CCRL_BUNDLE``, re-read through a symlink such as ``/models/current``). The
answer comes once this worker serves the new bundle and the other workers of the same ``ccrl
serve`` have followed (or ``wait_s`` has passed): 200 with what each worker serves; 422
``reload_refused`` with the reason for a bundle that fails (the old one keeps serving); 409 while
another reload of the worker is under way. See :mod:`service.api.reload`.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic_core
from fastapi import APIRouter, Request, Response
from pydantic import ConfigDict, Field, ValidationError, with_config
from starlette.concurrency import run_in_threadpool
from typing_extensions import TypedDict

from service.api import auth, schemas
from service.api.errors import MalformedBody
from service.api.guards import require_json
from service.api.reload import Reloaded, Reloads
from service.api.routes import _json
from service.api.runtime import RuntimeDep

router = APIRouter()

WAIT_S = 120.0
"""How long an accepted reload waits for the other workers to follow before it answers."""

_CLOSED = ConfigDict(extra="forbid")


class ReloadRequest(schemas._Strict):
    """The optional body of ``POST /admin/reload``."""

    bundle: str | None = Field(
        default=None, min_length=1, description="Bundle folder; default: the configured one."
    )


@with_config(_CLOSED)
class WorkerReloadState(TypedDict):
    pid: int
    generation: int
    model: str
    model_version: str
    ok: bool
    detail: str


@with_config(_CLOSED)
class ReloadResponse(TypedDict):
    status: Literal["reloaded", "partial"]
    model: str
    model_version: str
    previous_version: str
    bundle: str
    seconds: float
    generation: int
    workers: list[WorkerReloadState]


def reload_response(done: Reloaded) -> ReloadResponse:
    """``partial`` when a worker did not reach this generation, or failed to load it."""
    workers: list[WorkerReloadState] = [
        {
            "pid": w.pid,
            "generation": w.generation,
            "model": w.model,
            "model_version": w.model_version,
            "ok": w.ok,
            "detail": w.detail,
        }
        for w in done.workers
    ]
    behind = [w for w in workers if w["generation"] < done.generation or not w["ok"]]
    return {
        "status": "partial" if behind else "reloaded",
        "model": done.model,
        "model_version": done.model_version,
        "previous_version": done.previous_version,
        "bundle": done.bundle,
        "seconds": round(done.seconds, 3),
        "generation": done.generation,
        "workers": workers,
    }


def _bundle_of(body: bytes) -> str | None:
    if not body.strip():
        return None
    try:
        obj: Any = pydantic_core.from_json(body)
        return ReloadRequest.model_validate(obj).bundle
    except ValueError as e:
        if isinstance(e, ValidationError):
            raise
        raise MalformedBody(f"body is not valid JSON ({e})") from None


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    responses={code: {"model": schemas.ErrorResponse} for code in (400, 401, 403, 409, 422, 503)},
    summary="Load, verify and swap a bundle without a restart (needs the bearer token).",
)
async def reload_bundle(request: Request, rt: RuntimeDep) -> Response:
    auth.require_write(rt.settings, request.headers)
    body = await request.body()
    if body.strip():
        await require_json(request)
    bundle = _bundle_of(body)
    reloads: Reloads = request.app.state.reloads
    done = await run_in_threadpool(reloads.reload, bundle, wait_s=WAIT_S)
    return _json(reload_response(done))
