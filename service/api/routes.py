"""The HTTP routes. Blocking work (JSON parsing of big bodies, decoding, ONNX Runtime, XGBoost,
Redis) runs in the threadpool, never on the event loop."""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

import numpy as np
import pydantic_core
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.api import schemas
from service.api.errors import ClassNotFound, MalformedBody, NotReady, Unauthorized, WritesDisabled
from service.api.runtime import Runtime
from service.decode import InputError, decode_video
from service.stores.base import LabelBatch, StoreUnavailable
from service.yt8m import SEGMENT_FRAMES

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 503)
}


def _runtime(request: Request) -> Runtime:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise NotReady("the model is not loaded yet")
    return rt


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


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


# ---------------------------------------------------------------------------- /localize
def _localize(rt: Runtime, body: bytes) -> tuple[dict[str, Any], dict[str, float]]:
    s = rt.settings
    timings: dict[str, float] = {}
    with rt.slots:
        t0 = time.perf_counter()
        req: schemas.LocalizeRequest = _parse(body, schemas.LocalizeRequest)
        frames = decode_video(req.rgb, req.audio, min_frames=s.min_frames, max_frames=s.max_frames)
        t1 = time.perf_counter()
        timings["decode"] = t1 - t0
        bank = rt.bank.snapshot()
        timings["bank"] = time.perf_counter() - t1
        loc = rt.scorer.localize(
            frames,
            bank,
            video_id=req.video_id,
            classes=req.classes,
            max_classes=req.max_classes or s.max_classes,
            max_segments=req.max_segments or s.max_segments,
            min_video_score=s.min_video_score,
        )
    timings.update(loc.timings)
    out: dict[str, Any] = {
        "video_id": req.video_id,
        "model_version": rt.model_version,
        "num_segments": loc.num_segments,
        "indexed": False,
    }
    if req.video_id is not None and req.index:
        t = time.perf_counter()
        try:
            n = rt.index.put_video(req.video_id, loc.index_entries())
            rt.metrics.indexed_segments.inc(n)
            out["indexed"] = True
        except StoreUnavailable as e:
            out["warnings"] = [f"not indexed: {e}"]
        timings["index"] = time.perf_counter() - t
    classes = []
    for c in loc.classes:
        starts = c.starts.tolist()
        ends = (c.starts + SEGMENT_FRAMES).tolist()
        scores = c.scores.astype(np.float64).tolist()
        classes.append(
            {
                "class_id": c.class_id,
                "name": c.name,
                "video_score": c.video_score,
                "segments": [
                    {"start": a, "end": b, "score": v}
                    for a, b, v in zip(starts, ends, scores, strict=True)
                ],
            }
        )
    out["classes"] = classes
    rt.metrics.candidates.observe(len(loc.classes))
    rt.metrics.pairs.observe(loc.num_pairs)
    rt.metrics.observe_stages(timings)
    return out, timings


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a JSON body the route parses itself (with numpy, not pydantic per number)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/localize",
    response_model=None,
    responses={200: {"model": schemas.LocalizeResponse}, **_ERRORS},
    openapi_extra=_json_body(schemas.LocalizeRequest),
    summary="Score a video's segments for its candidate classes (or the given ones).",
)
async def localize(request: Request) -> Response:
    rt = _runtime(request)
    body = await request.body()
    out, timings = await run_in_threadpool(_localize, rt, body)
    return _json(out, headers={"Server-Timing": _server_timing(timings)})


# ---------------------------------------------------------------------------- index reads
@router.get(
    "/classes/{class_id}/top-segments",
    response_model=schemas.TopSegmentsResponse,
    responses=_ERRORS,
    summary="The best segments of a class across the indexed corpus.",
)
def top_segments(
    request: Request,
    class_id: int,
    limit: int = Query(100, ge=1, description="Segments per page."),
    offset: int = Query(0, ge=0, description="Segments to skip."),
) -> Response:
    rt = _runtime(request)
    _check_class(rt, class_id)
    if limit > rt.settings.max_page:
        raise InputError(
            "limit", f"{limit} is more than the maximum page of {rt.settings.max_page}"
        )
    if offset >= rt.settings.index_cap:
        raise InputError("offset", f"{offset} is past the index cap of {rt.settings.index_cap}")
    t = time.perf_counter()
    total, entries = rt.index.top(class_id, limit, offset)
    rt.metrics.stage_seconds.labels(stage="index").observe(time.perf_counter() - t)
    return _json(
        {
            "class_id": class_id,
            "name": rt.scorer.names[class_id],
            "total": total,
            "segments": [
                {
                    "video_id": e.video_id,
                    "start": e.start,
                    "end": e.start + SEGMENT_FRAMES,
                    "score": e.score,
                }
                for e in entries
            ],
        }
    )


# ---------------------------------------------------------------------------- labels
def _authorize(rt: Runtime, request: Request) -> None:
    token = rt.settings.token()
    if token is None:
        raise WritesDisabled("writes are disabled: the service has no CCRL_API_TOKEN configured")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized(
            "missing 'Authorization: Bearer <token>' header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


def _add_labels(rt: Runtime, class_id: int, body: bytes) -> dict[str, Any]:
    s = rt.settings
    with rt.slots:
        req: schemas.LabelsRequest = _parse(body, schemas.LabelsRequest)
        frames = decode_video(req.rgb, req.audio, min_frames=s.min_frames, max_frames=s.max_frames)
        num_seg = frames.shape[0] // SEGMENT_FRAMES
        starts = np.asarray([seg.start for seg in req.segments], dtype=np.int64)
        labels = np.asarray([seg.label for seg in req.segments], dtype=np.int8)
        for i, st in enumerate(starts.tolist()):
            if st % SEGMENT_FRAMES:
                raise InputError(f"segments[{i}].start", f"{st} is not a multiple of 5")
            if st // SEGMENT_FRAMES >= num_seg:
                raise InputError(
                    f"segments[{i}].start",
                    f"{st} is past the last whole segment of the video ({frames.shape[0]} frames)",
                )
        uniq, counts = np.unique(starts, return_counts=True)
        if (counts > 1).any():
            raise InputError("segments", f"start {int(uniq[counts > 1][0])} is listed twice")
        t = time.perf_counter()
        emb = rt.scorer.embed(frames)[starts // SEGMENT_FRAMES]
        rt.metrics.stage_seconds.labels(stage="candidate").observe(time.perf_counter() - t)
    batch = LabelBatch(class_id, req.video_id, starts, labels, emb.astype(np.float32))
    t = time.perf_counter()
    result = rt.bank.add(batch)
    rt.metrics.stage_seconds.labels(stage="bank").observe(time.perf_counter() - t)
    return {
        "class_id": class_id,
        "video_id": req.video_id,
        "added": len(starts),
        "bank_version": result.version,
        "bank": {"positive": result.positive, "negative": result.negative},
    }


@router.post(
    "/classes/{class_id}/labels",
    response_model=None,
    status_code=201,
    responses={201: {"model": schemas.LabelsResponse}, **_ERRORS},
    openapi_extra=_json_body(schemas.LabelsRequest),
    summary="Add labelled segments of a video to a class's bank (needs the bearer token).",
)
async def add_labels(request: Request, class_id: int) -> Response:
    rt = _runtime(request)
    _authorize(rt, request)
    _check_class(rt, class_id)
    body = await request.body()
    out = await run_in_threadpool(_add_labels, rt, class_id, body)
    return _json(out, status=201)


# ---------------------------------------------------------------------------- catalogue, health
@router.get("/classes", response_model=schemas.ClassesResponse, summary="The vocabulary and bank.")
def list_classes(request: Request) -> Response:
    rt = _runtime(request)
    bank = rt.bank.snapshot()
    pos = bank.pos_count.tolist()
    neg = bank.neg_count.tolist()
    return _json(
        {
            "classes": [
                {"class_id": c, "name": name, "bank": {"positive": pos[c], "negative": neg[c]}}
                for c, name in enumerate(rt.scorer.names)
            ]
        }
    )


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health, summary="The process is alive.")
async def healthz() -> Response:
    return _json({"status": "ok"})


@router.get("/readyz", summary="Model loaded; shared store reachable (else 'degraded').")
def readyz(request: Request) -> Response:
    rt = _runtime(request)
    health = rt.bank.health()
    status = "ready" if health.reachable else "degraded"
    return _json(
        {
            "status": status,
            "model": rt.model_name,
            "model_version": rt.model_version,
            "store": health.kind,
            "store_reachable": health.reachable,
            "store_detail": health.detail,
            "bank_version": rt.bank.version(),
            "degraded": not health.reachable,
        }
    )


@router.get("/metrics", summary="Prometheus metrics.", include_in_schema=False)
def metrics(request: Request) -> Response:
    rt = _runtime(request)
    data, content_type = rt.metrics.render()
    return Response(data, media_type=content_type)
