"""The OpenAPI document, as the server enforces it: every ``$ref`` resolves, the limits are the
configured ones, every error status is listed, and the request bodies have working examples.

FastAPI builds the document from the routes; :func:`finish_openapi` then

- hoists the ``$defs`` of the bodies the routes parse themselves into ``components/schemas`` (the
  labels body refers to ``LabelSegment``, which FastAPI never registered);
- fills in the numbers that depend on the settings and the bundle, marked ``x-bound`` in
  :mod:`service.api.schemas`: class ids 0..C-1, the frame counts, segment starts, ``limit`` and
  ``offset`` of top-segments;
- adds the bearer security scheme (labels need it; ``/localize`` needs it to index a video), the
  error statuses of every operation, and one request example per body that the server accepts;
- checks that every ``$ref`` resolves (a broken document is a start-up bug, not a fuzzer's find).

What JSON Schema cannot say is in the field descriptions: rgb and audio have the same frame count,
a ``b64`` string holds exactly ``F * D * itemsize`` bytes, a label's start lies before the end of
the video's last whole segment and appears once per request.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.config import Settings
from service.yt8m import AUDIO_DIM, RGB_DIM, SEGMENT_FRAMES

Schema = dict[str, Any]

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
STATUS_TEXT = {
    400: "Malformed JSON, or a broken request (e.g. two Authorization headers)",
    401: "Missing or invalid bearer token",
    403: "Writes (or indexing) are disabled: no token configured",
    404: "Unknown class in the path (removing labels: a label the bank does not have)",
    408: "The request head or body did not arrive in time",
    409: "The video is already indexed (send overwrite: true), or a label by reference names a "
    "segment whose embedding is not kept (send the frames)",
    413: "Body over the configured limit",
    415: "The body is not sent as application/json",
    422: "A field is invalid; the message names it",
    431: "Too many header lines",
    503: "Not ready, the shared store is unavailable, or too many connections",
}
COMMON = (400, 408, 413, 422, 431, 503)
EXTRA: dict[tuple[str, str], tuple[int, ...]] = {
    ("/localize", "post"): (401, 403, 409, 415),
    ("/classes/{class_id}/labels", "post"): (401, 403, 404, 409, 415),
    ("/classes/{class_id}/labels", "delete"): (401, 403, 404, 415),
    ("/classes/{class_id}/top-segments", "get"): (404,),
    ("/classes/{class_id}/review", "get"): (404,),
}
SECURED = {
    ("/classes/{class_id}/labels", "post"): True,
    ("/classes/{class_id}/labels", "delete"): True,
    ("/localize", "post"): False,
}


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` with :func:`finish_openapi` of FastAPI's document (cached once the
    runtime is loaded, since the bounds come from its settings and bundle)."""

    def openapi() -> Schema:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        rt = getattr(app.state, "runtime", None)
        if rt is None:
            return finish_openapi(doc, None, None)
        app.openapi_schema = finish_openapi(doc, rt.settings, rt.scorer.num_classes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def finish_openapi(doc: Schema, settings: Settings | None, num_classes: int | None) -> Schema:
    """The finished document (see the module docstring); ``settings`` None leaves the defaults."""
    comps = doc.setdefault("components", {}).setdefault("schemas", {})
    _hoist_defs(doc, comps)
    _errors(doc)
    _security(doc)
    _examples(doc, settings)
    if settings is not None:
        _bounds(doc, _bound_values(settings, num_classes))
    _strip_marks(doc)
    check_refs(doc)
    return doc


# ---------------------------------------------------------------------------- passes
def _walk(node: Any) -> Iterator[Schema]:
    """Every dict in the document, depth first."""
    if isinstance(node, dict):
        yield node
        for v in list(node.values()):
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _hoist_defs(doc: Schema, comps: Schema) -> None:
    for node in list(_walk(doc.get("paths", {}))):
        defs = node.pop("$defs", None)
        if defs:
            for name, schema in defs.items():
                comps.setdefault(name, schema)


def _operations(doc: Schema) -> Iterator[tuple[str, str, Schema]]:
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if isinstance(op, dict) and "responses" in op:
                yield path, method, op


def _errors(doc: Schema) -> None:
    for path, method, op in _operations(doc):
        responses = op["responses"]
        for status in (*COMMON, *EXTRA.get((path, method), ())):
            responses.setdefault(
                str(status),
                {
                    "description": STATUS_TEXT[status],
                    "content": {"application/json": {"schema": dict(ERROR_REF)}},
                },
            )
        if "422" in responses:
            responses["422"]["description"] = STATUS_TEXT[422]


def _security(doc: Schema) -> None:
    doc["components"].setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <token>` exactly: CCRL_API_TOKEN for label "
        "writes; CCRL_API_TOKEN or CCRL_INDEX_TOKEN to index a video.",
    }
    for path, method, op in _operations(doc):
        required = SECURED.get((path, method))
        if required is True:
            op["security"] = [{"bearer": []}]
        elif required is False:
            op["security"] = [{}, {"bearer": []}]  # optional: only indexing needs it


def _frames_example(num_frames: int, width: int) -> Schema:
    raw = bytes([128]) * (num_frames * width)  # uint8 level 128 = 0.0157 dequantized
    return {"b64": base64.b64encode(raw).decode(), "dtype": "uint8", "shape": [num_frames, width]}


def _examples(doc: Schema, settings: Settings | None) -> None:
    n = max(settings.min_frames if settings else SEGMENT_FRAMES, SEGMENT_FRAMES)
    frames = {"rgb": _frames_example(n, RGB_DIM), "audio": _frames_example(n, AUDIO_DIM)}
    bodies = {
        ("/localize", "post"): {**frames, "max_classes": 3, "max_segments": 3},
        ("/classes/{class_id}/labels", "post"): {
            "video_id": "example-video",
            **frames,
            "segments": [{"start": 0, "label": 1}],
        },
    }
    for path, method, op in _operations(doc):
        body = bodies.get((path, method))
        media = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None and media is not None:
            media["examples"] = {"uint8": {"summary": f"{n} frames, uint8", "value": body}}


def _bound_values(settings: Settings, num_classes: int | None) -> dict[str, Schema]:
    """``x-bound`` name -> the JSON Schema keywords it stands for under these settings."""
    lo, hi = settings.min_frames, settings.max_frames
    last_start = (hi // SEGMENT_FRAMES - 1) * SEGMENT_FRAMES
    out: dict[str, Schema] = {
        "frames": {"minItems": lo, "maxItems": hi},
        "frame_count": {"minimum": lo, "maximum": hi},
        "segment_start": {"maximum": last_start},
        "segment_count": {"maxItems": hi // SEGMENT_FRAMES},
        "page": {"maximum": settings.max_page},
        "offset": {"maximum": settings.index_cap - 1},
    }
    if num_classes is not None:
        out["class_id"] = {"minimum": 0, "maximum": num_classes - 1}
    return out


def _bounds(doc: Schema, values: dict[str, Schema]) -> None:
    for node in _walk(doc):
        mark = node.get("x-bound")
        if isinstance(mark, str) and mark in values:
            node.update(values[mark])
    for path, _, op in _operations(doc):
        for param in op.get("parameters", []):
            mark = _PARAM_BOUNDS.get((path, param.get("name")))
            if mark is not None and mark in values:
                param["schema"].update(values[mark])


_PARAM_BOUNDS = {
    ("/classes/{class_id}/top-segments", "class_id"): "class_id",
    ("/classes/{class_id}/labels", "class_id"): "class_id",
    ("/classes/{class_id}/top-segments", "limit"): "page",
    ("/classes/{class_id}/top-segments", "offset"): "offset",
    ("/classes/{class_id}/review", "class_id"): "class_id",
    ("/classes/{class_id}/review", "limit"): "page",
}


def _strip_marks(doc: Schema) -> None:
    for node in _walk(doc):
        node.pop("x-bound", None)


def check_refs(doc: Schema) -> None:
    """Raise ValueError naming the first ``$ref`` of ``doc`` that does not resolve."""
    resolve: Callable[[str], bool] = lambda ref: _resolves(doc, ref)  # noqa: E731
    for node in _walk(doc):
        ref = node.get("$ref")
        if isinstance(ref, str) and not resolve(ref):
            raise ValueError(f"OpenAPI document: $ref {ref!r} does not resolve")


def _resolves(doc: Schema, ref: str) -> bool:
    if not ref.startswith("#/"):
        return False
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
