"""The health and metadata endpoints of the Open Inference Protocol (KServe / Triton "v2").

Load balancers, KServe and Triton-aware tools know these URLs; the service's own ``/healthz`` and
``/readyz`` stay as they are. Health answers follow the protocol: 200 (empty body) for true, a 4xx
for false (here 400 with the protocol's ``{"error": ...}`` object saying why):

- ``GET /v2/health/live``: the process answers.
- ``GET /v2/health/ready``, ``GET /v2/models/{name}[/versions/{version}]/ready``: strict
  readiness, true only while a model is loaded whose candidate graph, booster and bank passed
  the self-check (:mod:`service.selfcheck`); an unknown name or version is 404. The state of the
  shared store is not part of it (the service scores from its bank copy while Redis is away:
  ``/readyz`` reports that).
- ``GET /v2``: the server's metadata; ``GET /v2/models/{name}[/versions/{version}]``: the model's
  (name, versions, platform, input and output tensors).

The model's name and version are the bundle manifest's; after a hot reload they are the new
bundle's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

from service.api.routes import _json
from service.api.runtime import Runtime
from service.selfcheck import CHECKS
from service.yt8m import AUDIO_DIM, RGB_DIM

router = APIRouter(prefix="/v2", tags=["open inference protocol"])

PLATFORM = "ccrl_onnxruntime_xgboost"
"""The model's platform, in the protocol's ``<backend>_<format>`` style."""


@with_config(ConfigDict(extra="forbid"))
class OipError(TypedDict):
    """The protocol's error object."""

    error: str


_STATUS: dict[int | str, dict[str, Any]] = {
    200: {"description": "True (no body)", "content": None},
    400: {"model": OipError, "description": "False: no verified model is loaded"},
}
_MODEL: dict[int | str, dict[str, Any]] = {
    **_STATUS,
    404: {"model": OipError, "description": "Not this server's model or version"},
}
_METADATA: dict[int | str, dict[str, Any]] = {k: v for k, v in _MODEL.items() if k != 200}


def document(app: FastAPI) -> None:
    """Pin the ``name`` and ``version`` path parameters of ``/v2/models`` in the OpenAPI document
    to the served model (after a reload, the new one), as the server answers 404 for others."""
    base: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        doc = base()
        rt: Runtime | None = getattr(app.state, "runtime", None)
        if rt is None:
            return doc
        values = {"name": rt.model_name, "version": rt.model_version}
        for path, item in doc.get("paths", {}).items():
            if path.startswith("/v2/models/"):
                for param in item.get("get", {}).get("parameters", []):
                    if param.get("name") in values:
                        param["schema"]["enum"] = [values[param["name"]]]
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def ready_runtime(request: Request) -> tuple[Runtime | None, str]:
    """(the runtime, "") when a verified model is loaded, else (None or it, why not)."""
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        return None, "the model is not loaded yet"
    missing = [c for c in CHECKS if c not in rt.checks]
    if missing:
        return rt, f"the model's {', '.join(missing)} did not pass the self-check"
    return rt, ""


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status=status)


def _find(request: Request, name: str, version: str | None) -> tuple[Runtime | None, Response]:
    """The runtime serving ``name`` (and ``version``), or the protocol's error answer."""
    rt, why = ready_runtime(request)
    if rt is None:
        return None, _error(400, why)
    if name != rt.model_name:
        return None, _error(404, f"unknown model {name!r}: this server serves {rt.model_name!r}")
    if version is not None and version != rt.model_version:
        return None, _error(
            404, f"model {name!r} has no version {version!r} (serving {rt.model_version!r})"
        )
    if why:
        return None, _error(400, why)
    return rt, Response(status_code=200)


def model_metadata(rt: Runtime) -> dict[str, Any]:
    """The protocol's model metadata object of the served bundle."""
    classes = rt.scorer.num_classes
    return {
        "name": rt.model_name,
        "versions": [rt.model_version],
        "platform": PLATFORM,
        "inputs": [
            {"name": "rgb", "datatype": "FP32", "shape": [-1, RGB_DIM]},
            {"name": "audio", "datatype": "FP32", "shape": [-1, AUDIO_DIM]},
        ],
        "outputs": [
            {"name": "video_scores", "datatype": "FP32", "shape": [classes]},
            {"name": "segment_scores", "datatype": "FP32", "shape": [-1, -1]},
        ],
    }


@router.get(
    "/health/live",
    response_class=Response,
    responses={200: _STATUS[200]},
    summary="OIP: the server is live (200, else 4xx).",
)
async def live() -> Response:
    return Response(status_code=200)


@router.get(
    "/health/ready",
    response_class=Response,
    responses=_STATUS,
    summary="OIP: the model is loaded and verified (200, else 400).",
)
async def ready(request: Request) -> Response:
    _, why = ready_runtime(request)
    return _error(400, why) if why else Response(status_code=200)


@router.get("", summary="OIP: server metadata.")
async def server_metadata(request: Request) -> Response:
    return _json({"name": "ccrl", "version": request.app.version, "extensions": []})


@router.get("/models/{name}", responses=_METADATA, summary="OIP: model metadata.")
async def metadata(request: Request, name: str) -> Response:
    rt, answer = _find(request, name, None)
    return _json(model_metadata(rt)) if rt is not None else answer


@router.get(
    "/models/{name}/ready",
    response_class=Response,
    responses=_MODEL,
    summary="OIP: the model is ready (200, else 4xx).",
)
async def model_ready(request: Request, name: str) -> Response:
    return _find(request, name, None)[1]


@router.get(
    "/models/{name}/versions/{version}",
    responses=_METADATA,
    summary="OIP: model version metadata.",
)
async def version_metadata(request: Request, name: str, version: str) -> Response:
    rt, answer = _find(request, name, version)
    return _json(model_metadata(rt)) if rt is not None else answer


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_class=Response,
    responses=_MODEL,
    summary="OIP: the version is ready.",
)
async def version_ready(request: Request, name: str, version: str) -> Response:
    return _find(request, name, version)[1]
