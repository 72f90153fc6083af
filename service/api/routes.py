"""The HTTP routes: parse, call the runtime, answer. ``/localize`` scores on the event loop by
default (``CCRL_SCORE_ON_LOOP``: a thread hop cost more than it overlapped, loadtests/README.md;
worker processes give the parallelism); the label writes and index reads run in the threadpool.

The domain rules live outside this package: the localize-then-index step in
:mod:`service.localize`, the label checks and slicing in :mod:`service.labels`, the response
shapes in :mod:`service.api.schemas` (built by its functions, serialized here as they are).
"""

from __future__ import annotations

import time
from typing import Any

import pydantic_core
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service import labels
from service.api import auth, schemas
from service.api.bodies import parse_frames_body
from service.api.errors import ClassNotFound, MalformedBody
from service.api.guards import require_json
from service.api.responses import json_response
from service.api.runtime import Runtime, RuntimeDep
from service.decode import InputError, decode_video
from service.localize import LocalizeQuery

router = APIRouter()
JSON_BODY = [Depends(require_json)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 503)
}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return json_response(data, status, headers)


def _parse(body: bytes, model: type[schemas._Strict]) -> Any:
    """Body bytes -> validated model; 400 for non-JSON, 422 (pydantic) for wrong fields."""
    if not body.strip():
        raise MalformedBody("empty body: expected a JSON object")
    try:  # pydantic-core's parser: 3x faster than json.loads on big float arrays
        obj = pydantic_core.from_json(body, allow_inf_nan=True)
    except ValueError as e:
        raise MalformedBody(f"body is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise MalformedBody(f"body must be a JSON object, got {type(obj).__name__}")
    return model.model_validate(obj)


def _check_class(rt: Runtime, class_id: int) -> None:
    if not 0 <= class_id < rt.scorer.num_classes:
        raise ClassNotFound(
            f"class {class_id} is not in the vocabulary (ids 0..{rt.scorer.num_classes - 1})"
        )


def _server_timing(timings: dict[str, float]) -> str:
    return ", ".join(f"{k};dur={v * 1000:.3f}" for k, v in timings.items())


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a JSON body the route parses itself (with numpy, not pydantic per number)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# ---------------------------------------------------------------------------- /localize
def _localize(
    rt: Runtime, body: bytes, headers: Any
) -> tuple[schemas.LocalizeResponse, dict[str, float]]:
    with rt.slots:  # parsing and scoring; the index write below holds no slot
        t0 = time.perf_counter()
        req = parse_frames_body(
            body, schemas.LocalizeRequest, lambda b: _parse(b, schemas.LocalizeRequest)
        )
        query = LocalizeQuery(
            req.rgb,
            req.audio,
            video_id=req.video_id,
            classes=req.classes,
            max_classes=req.max_classes,
            max_segments=req.max_segments,
            index=req.index,
            overwrite=req.overwrite,
            explain=req.explain,
        )
        if query.index_wanted:  # who may index: checked before any work
            auth.require_index(rt.settings, headers, str(req.video_id))
        done = rt.localizer.score(query, started=t0)
    out = schemas.localize_response(done, rt.model_version)  # all that can fail comes first
    rt.localizer.index(done)  # last: only a request that fully succeeded writes the index
    out["indexed"] = done.indexed
    if done.warnings:
        out["warnings"] = list(done.warnings)
    rt.metrics.observe_localize(done)
    return out, done.timings


@router.post(
    "/localize",
    response_model=None,
    responses={200: {"model": schemas.LocalizeResponse}, **_ERRORS},
    openapi_extra=_json_body(schemas.LocalizeRequest),
    dependencies=JSON_BODY,
    summary="Score a video's segments for its candidate classes (or the given ones).",
)
async def localize(request: Request, rt: RuntimeDep) -> Response:
    body = await request.body()
    if rt.settings.score_on_loop:  # no thread hop: loadtests/README.md
        out, timings = _localize(rt, body, request.headers)
    else:
        out, timings = await run_in_threadpool(_localize, rt, body, request.headers)
    return _json(out, headers={"Server-Timing": _server_timing(timings)})


# ---------------------------------------------------------------------------- index reads
@router.get(
    "/classes/{class_id}/top-segments",
    response_model=schemas.TopSegmentsResponse,
    responses=_ERRORS,
    summary="The best segments of a class across the indexed corpus.",
)
def top_segments(
    rt: RuntimeDep,
    class_id: int,
    limit: int = Query(100, ge=1, description="Segments per page."),
    offset: int = Query(0, ge=0, description="Segments to skip."),
) -> Response:
    _check_class(rt, class_id)
    if limit > rt.settings.max_page:
        raise InputError(
            "limit", f"{limit} is more than the maximum page of {rt.settings.max_page}"
        )
    if offset >= rt.settings.index_cap:
        raise InputError("offset", f"{offset} is past the index cap of {rt.settings.index_cap}")
    with rt.metrics.timed("index"):
        total, entries = rt.index.top(class_id, limit, offset)
    name = rt.scorer.names[class_id]
    return _json(schemas.top_segments_response(class_id, name, total, entries))


# ---------------------------------------------------------------------------- labels
def _add_labels(rt: Runtime, class_id: int, body: bytes) -> schemas.LabelsResponse:
    s = rt.settings
    with rt.slots:
        req: schemas.LabelsRequest = _parse(body, schemas.LabelsRequest)
        marks = [seg.label for seg in req.segments]
        if req.by_reference:  # the kept embeddings (or 409)
            batch = rt.review.reference_batch(
                class_id, req.video_id, [seg.start for seg in req.segments], marks
            )
        else:
            frames = decode_video(
                req.rgb, req.audio, min_frames=s.min_frames, max_frames=s.max_frames
            )
            starts = labels.check_starts([seg.start for seg in req.segments], frames.shape[0])
            with rt.metrics.timed("candidate"):
                embeddings = rt.scorer.embed(frames)
            batch = labels.label_batch(class_id, req.video_id, starts, marks, embeddings)
    with rt.metrics.timed("bank"):
        result = rt.bank.add(batch)
    rescored = rt.rescore_after_labels(class_id)
    return schemas.labels_response(
        class_id, req.video_id, len(batch.starts), result, rescored=rescored
    )


@router.post(
    "/classes/{class_id}/labels",
    response_model=None,
    status_code=201,
    responses={201: {"model": schemas.LabelsResponse}, **_ERRORS},
    openapi_extra=_json_body(schemas.LabelsRequest),
    dependencies=JSON_BODY,
    summary="Add labelled segments of a video to a class's bank (needs the bearer token).",
    description=(
        "A 503 (`store_unavailable`) means the outcome is unknown: the shared store did not "
        "confirm the write, which may or may not have been stored. Retrying the same request is "
        "safe: a segment labelled again keeps its latest label (a relabel), never a duplicate."
    ),
)
async def add_labels(request: Request, rt: RuntimeDep, class_id: int) -> Response:
    auth.require_write(rt.settings, request.headers)
    _check_class(rt, class_id)
    body = await request.body()
    out = await run_in_threadpool(_add_labels, rt, class_id, body)
    return _json(out, status=201)


def _remove_labels(rt: Runtime, class_id: int, body: bytes) -> schemas.LabelsRemovedResponse:
    req: schemas.LabelsRemoveRequest = _parse(body, schemas.LabelsRemoveRequest)
    starts = labels.check_removal(req.starts).tolist()
    with rt.metrics.timed("bank"):
        result = rt.bank.remove(class_id, req.video_id, starts)
    rescored = rt.rescore_after_labels(class_id)
    return schemas.labels_removed_response(
        class_id, req.video_id, starts, result, rescored=rescored
    )


@router.delete(
    "/classes/{class_id}/labels",
    response_model=None,
    responses={200: {"model": schemas.LabelsRemovedResponse}, **_ERRORS},
    openapi_extra=_json_body(schemas.LabelsRemoveRequest),
    dependencies=JSON_BODY,
    summary="Remove labelled segments of a video from a class's bank (needs the bearer token); "
    "404 when any of them is not in the bank (nothing is removed then).",
)
async def remove_labels(request: Request, rt: RuntimeDep, class_id: int) -> Response:
    auth.require_write(rt.settings, request.headers)
    _check_class(rt, class_id)
    body = await request.body()
    out = await run_in_threadpool(_remove_labels, rt, class_id, body)
    return _json(out)


# ---------------------------------------------------------------------------- catalogue, health
@router.get("/classes", response_model=schemas.ClassesResponse, summary="The vocabulary and bank.")
def list_classes(rt: RuntimeDep) -> Response:
    return _json(schemas.classes_response(rt.scorer.names, rt.bank.snapshot()))


@router.get("/healthz", response_model=schemas.Health, summary="The process is alive.")
async def healthz() -> Response:
    return _json(schemas.HEALTHY)


@router.get(
    "/readyz",
    response_model=schemas.Readiness,
    summary="Model loaded; shared store reachable and index complete (else 'degraded').",
)
def readyz(rt: RuntimeDep) -> Response:
    health, index = rt.bank.health(), rt.index.state()
    out = schemas.readiness(rt.model_name, rt.model_version, health, rt.bank.version(), index)
    return _json(out)


@router.get("/metrics", summary="Prometheus metrics.", include_in_schema=False)
def metrics(rt: RuntimeDep) -> Response:
    data, content_type = rt.metrics.render()
    return Response(data, media_type=content_type)
