"""The FastAPI app factory and its lifespan.

The lifespan builds the :class:`Settings` (unless given), loads the bundle and verifies every sha256
of its manifest (a tampered or incomplete bundle raises :class:`BundleError` and the app never
becomes ready), creates the ONNX Runtime session and the XGBoost booster with explicit thread
counts, and the stores: in-process by default, Redis with ``REDIS_URL``.

``create_app`` is also the uvicorn factory (``service.api.app:create_app``) for several workers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import admin, oip
from service.api.errors import BodyTooLarge, error_response, install_error_handlers
from service.api.guards import HeaderGuard, install_disconnect_handler
from service.api.metrics import Metrics
from service.api.openapi import install_openapi
from service.api.reload import Reloads
from service.api.review_routes import router as review_router
from service.api.routes import router
from service.api.runtime import Runtime
from service.api.shutdown import CloseWhenDraining
from service.bundle import Bundle, BundleError, load_bundle
from service.config import Settings
from service.scorer import Scorer
from service.selfcheck import SelfCheckError, self_check
from service.stores.base import BankStore, IndexStore
from service.stores.memory import MemoryBankStore, MemoryIndexStore
from service.tuning import freeze_heap, limit_blas_threads

log = logging.getLogger("ccrl.api")


def _version() -> str:
    """The installed package version (``ccrl``), or ``0+unknown`` when run from a bare tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ccrl")
    except PackageNotFoundError:
        return "0+unknown"


def bundle_namespace(bundle: Bundle) -> str:
    """The Redis namespace of a bundle: its version and the sha256 prefix of its bank file."""
    m = bundle.manifest
    bank_sha = m.files.get(m.bank["file"], "")[:12] or "nosha"
    return f"{m.version or m.name or 'bundle'}-{bank_sha}"


def build_stores(
    settings: Settings, bundle: Bundle, metrics: Metrics
) -> tuple[BankStore, IndexStore]:
    """In-process stores, or Redis ones with ``REDIS_URL`` (:mod:`service.stores.redis_bank` for
    the bank, :mod:`service.stores.redis` for the index)."""
    if not settings.redis_url:
        return MemoryBankStore(bundle.bank, listener=metrics), MemoryIndexStore(settings.index_cap)
    from service.stores.redis import RedisBackend, RedisIndexStore
    from service.stores.redis_bank import RedisBankStore

    backend = RedisBackend(
        settings.redis_url,
        prefix=settings.redis_prefix,
        namespace=bundle_namespace(bundle),
        timeout=settings.redis_timeout_s,
        retry_interval=settings.store_retry_interval_s,
        listener=metrics,
    )
    bank = RedisBankStore(
        backend, bundle.bank, poll_interval=settings.bank_poll_interval_s, listener=metrics
    )
    return bank, RedisIndexStore(backend, settings.index_cap)


def build_runtime(settings: Settings, previous: Runtime | None = None) -> Runtime:
    """Load and verify the bundle, create the sessions and stores: everything a process serves.

    With ``previous`` (a hot reload), the metrics and the scoring slots are the previous runtime's,
    and so are its stores when both bundles have the same namespace (same version and bank).
    Raises :class:`BundleError` for a bundle that fails its files' check or the self-check.
    """
    if settings.bundle is None:
        raise BundleError("no model bundle: set CCRL_BUNDLE or pass --bundle DIR")
    t0 = time.perf_counter()
    limit_blas_threads(settings.blas_threads)
    bundle = load_bundle(
        settings.bundle, verify=settings.verify_bundle, nthread=settings.xgb_nthread
    )
    scorer = Scorer(
        bundle,
        intra_threads=settings.ort_intra_threads,
        inter_threads=settings.ort_inter_threads,
        providers=settings.ort_providers,
        xgb_nthread=settings.xgb_nthread,
        spinning=settings.ort_spinning,
    )
    metrics = previous.metrics if previous is not None else Metrics()
    if previous is not None and bundle_namespace(previous.bundle) == bundle_namespace(bundle):
        bank, index = previous.bank, previous.index
    else:
        bank, index = build_stores(settings, bundle, metrics)
    try:
        checks = self_check(scorer, bank.snapshot())
    except SelfCheckError as e:
        if previous is None or bank is not previous.bank:
            bank.close()
            index.close()
        raise BundleError(f"{bundle.path}: self-check failed: {e}") from None
    metrics.set_model(bundle.manifest.name, bundle.manifest.version)
    log.info(
        "loaded bundle %s (version %s) in %.2fs: %s; store %s",
        bundle.path,
        bundle.manifest.version,
        time.perf_counter() - t0,
        scorer.describe(),
        bank.kind,
    )
    slots = previous.slots if previous is not None else None
    rt = Runtime(
        settings,
        bundle,
        scorer,
        bank,
        index,
        metrics,
        slots or threading.BoundedSemaphore(settings.max_concurrent_scoring),
        checks,
    )
    rt.localizer  # noqa: B018 - built (with its review store) once, before any request
    return rt


class ServiceMiddleware:
    """Pure ASGI middleware: the body size limit (413) and the request metrics by route template."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, max_body_bytes: int | None) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.max_body_bytes = max_body_bytes

    def _limit(self) -> int:
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        rt: Runtime | None = getattr(self.fastapi_app.state, "runtime", None)
        return rt.settings.max_body_bytes if rt is not None else 16 * 1024 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_box = [500]
        limit = self._limit()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = int(message["status"])
            await send(message)

        length = _content_length(scope)
        if length is not None and length > limit:
            resp = error_response(
                413, "body_too_large", f"body of {length} bytes is over the limit of {limit}"
            )
            await resp(scope, receive, send_wrapper)
        else:
            received = 0

            async def receive_limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLarge(f"body is over the limit of {limit} bytes")
                return message

            await self.app(scope, receive_limited, send_wrapper)
        self._observe(scope, status_box[0], time.perf_counter() - start)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        rt: Runtime | None = getattr(self.fastapi_app.state, "runtime", None)
        if rt is None:
            return
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        rt.metrics.requests.labels(route=template, method=method, status=str(status)).inc()
        rt.metrics.request_seconds.labels(route=template, method=method).observe(seconds)


def _content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", []):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """The service app. Settings are built at start-up (in the lifespan) unless given.

    Args:
        settings: the settings to use (default: ``Settings()`` from the environment at start-up).
        runtime: an already-built runtime to serve (tests share one between apps); its stores are
            not closed at shutdown.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        base = settings or (runtime.settings if runtime is not None else Settings())
        reloads = Reloads(app.state, base, build_runtime)  # hot reloads: service/api/reload.py
        reloads.start(runtime)  # sets app.state.runtime; builds it unless given
        app.state.reloads = reloads
        if runtime is None:
            freeze_heap()
        try:
            yield
        finally:
            reloads.shutdown()  # closes what it built (never a given runtime)

    app = FastAPI(
        title="ccrl",
        version=_version(),
        description="Temporal concept localization in video (Cross-Class Relevance Learning).",
        lifespan=lifespan,
    )
    app.state.runtime = None
    install_error_handlers(app)
    install_disconnect_handler(app)
    app.include_router(router)
    install_openapi(app)
    app.include_router(review_router)
    oip.document(app)  # the served model's name and version in /v2/models paths
    app.include_router(admin.router)
    app.include_router(oip.router)
    limit = settings.max_body_bytes if settings is not None else None
    app.add_middleware(
        HeaderGuard,
        fastapi_app=app,
        max_headers=settings.max_headers if settings else None,
        max_header_bytes=settings.max_header_bytes if settings else None,
    )
    app.add_middleware(ServiceMiddleware, fastapi_app=app, max_body_bytes=limit)
    app.add_middleware(CloseWhenDraining)  # outermost: graceful shutdown (api/shutdown.py)
    return app
