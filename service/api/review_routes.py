"""The review routes: ``GET /classes/{class_id}/review`` (which segments to label next) and the
review page ``GET /ui`` (static files of ``service/api/static/``: no build step, nothing fetched
from anywhere but this service). The domain rules are in :mod:`service.review`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from service.api import review_schemas
from service.api.routes import _ERRORS, _check_class, _json
from service.api.runtime import RuntimeDep
from service.decode import InputError

router = APIRouter()

STATIC = Path(__file__).resolve().parent / "static"
_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page may load and call nothing but this service."""


@router.get(
    "/classes/{class_id}/review",
    response_model=review_schemas.ReviewResponse,
    responses=_ERRORS,
    summary="Indexed segments to label next for a class (never one already labelled for it).",
)
def review_queue(
    rt: RuntimeDep,
    class_id: int,
    limit: int = Query(20, ge=1, description="Segments to list."),
    strategy: Literal["uncertain", "top_unlabelled"] = Query(
        "uncertain",
        description="uncertain: the kept segments nearest the decision boundary (margin 0); "
        "top_unlabelled: the best-scored indexed segments without a label.",
    ),
    explain: bool = Query(False, description="Add the evidence of each kept segment."),
) -> Response:
    _check_class(rt, class_id)
    if limit > rt.settings.max_page:
        raise InputError(
            "limit", f"{limit} is more than the maximum page of {rt.settings.max_page}"
        )
    with rt.metrics.timed("index"):
        items = rt.review.queue(class_id, strategy, limit, with_evidence=explain)
    bank = rt.bank.snapshot()
    out = review_schemas.review_response(
        class_id,
        rt.scorer.names[class_id],
        strategy,
        int(bank.pos_count[class_id]),
        int(bank.neg_count[class_id]),
        items,
    )
    return _json(out)


def _static(name: str) -> Response:
    return FileResponse(
        STATIC / name,
        media_type=_FILES[name],
        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"},
    )


@router.get("/ui", include_in_schema=False)
def ui_page() -> Response:
    """The review page."""
    return _static("index.html")


@router.get("/ui/{name}", include_in_schema=False)
def ui_file(name: str) -> Response:
    """The page's script and style sheet (only the files of ``_FILES``)."""
    if name not in _FILES:
        return _json({"detail": f"no such file: {name}", "error": "not_found"}, status=404)
    return _static(name)
