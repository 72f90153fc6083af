"""Prometheus metrics of the service (names shared with the dashboards and alerts: keep them).

Each app gets its own :class:`Metrics` (its own registry, so tests can build many apps). With
several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` is set by ``run_server`` before the
workers start: every worker then writes its samples to that folder and ``/metrics`` aggregates
all of them.
No per-class label on any series.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from service.bank import ClassBank
from service.localize import Localized
from service.stores.base import StoreListener

STAGES = ("decode", "candidate", "features", "gbm", "rank", "index", "bank")
STORE_OPS = (
    ("bank", "poll"),
    ("bank", "refresh"),
    ("bank", "load"),
    ("bank", "seed"),
    ("bank", "add"),
    ("bank", "decode"),
    ("index", "put"),
    ("index", "top"),
    ("index", "ping"),
    ("index", "epoch"),
)
"""The (store, op) pairs of ``ccrl_store_errors_total``, exported at 0 from the start."""
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def multiprocess_dir() -> str | None:
    """The multiprocess folder when the service runs several workers, else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics(StoreListener):
    """Every series of the service, plus the store hooks that feed some of them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ccrl_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "ccrl_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "ccrl_stage_duration_seconds",
            "Latency of each scoring stage (decode|candidate|features|gbm|rank|index|bank).",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.candidates = Histogram(
            "ccrl_candidate_classes_per_request",
            "Classes scored per /localize request.",
            buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.pairs = Histogram(
            "ccrl_pairs_per_request",
            "(segment, class) pairs scored per /localize request.",
            buckets=(0, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000),
            registry=r,
        )
        self.store_errors = Counter(
            "ccrl_store_errors_total",
            "Failed store operations by store (bank|index) and operation.",
            ["store", "op"],
            registry=r,
        )
        self.degraded_gauge = Gauge(
            "ccrl_degraded",
            "1 while the shared store is unreachable and scoring uses the local bank snapshot.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.bank_refreshes = Counter(
            "ccrl_bank_refreshes_total", "Loads of the local bank copy.", registry=r
        )
        self.bank_segments = Gauge(
            "ccrl_bank_segments",
            "Labelled segments in the local bank copy, by label (positive|negative).",
            ["label"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.indexed_segments = Counter(
            "ccrl_indexed_segments_total", "Segments written to the corpus index.", registry=r
        )
        self.model_info = Gauge(
            "ccrl_model_info",
            "The served bundle (set to 1).",
            ["name", "version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "ccrl_reloads_total",
            "Hot reloads of the bundle by result (ok|refused).",
            ["result"],
            registry=r,
        )
        self.index_partial = Gauge(
            "ccrl_index_partial",
            "1 while the corpus index is partial: Redis lost its data since (rebuild it).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.redis_resets = Counter(
            "ccrl_redis_resets_total",
            "Times this replica found that Redis had lost its data (the epoch key).",
            registry=r,
        )
        for stage in STAGES:  # export every stage series from the start
            self.stage_seconds.labels(stage=stage)
        for store, op in STORE_OPS:  # and every store error series, at 0 until one fails
            self.store_errors.labels(store=store, op=op)
        for result in ("ok", "refused"):
            self.reloads.labels(result=result)
        self.degraded_gauge.set(0)
        self.index_partial.set(0)

    # ------------------------------------------------------------------ store hooks
    def store_error(self, store: str, op: str) -> None:
        self.store_errors.labels(store=store, op=op).inc()

    def degraded(self, on: bool) -> None:
        self.degraded_gauge.set(1 if on else 0)

    def bank_refreshed(self, bank: ClassBank) -> None:
        self.bank_refreshes.inc()
        self.bank_segments.labels(label="positive").set(float(bank.pos_count.sum()))
        self.bank_segments.labels(label="negative").set(float(bank.neg_count.sum()))

    def index_state(self, partial: bool) -> None:
        self.index_partial.set(1 if partial else 0)

    def redis_reset(self) -> None:
        self.redis_resets.inc()

    # ------------------------------------------------------------------ helpers
    def set_model(self, name: str, version: str) -> None:
        self.model_info.labels(name=name, version=version).set(1)

    def observe_stages(self, timings: dict[str, float]) -> None:
        for stage, seconds in timings.items():
            self.stage_seconds.labels(stage=stage).observe(seconds)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Observe the seconds of the block as ``stage`` (not when it raises)."""
        t = time.perf_counter()
        yield
        self.stage_seconds.labels(stage=stage).observe(time.perf_counter() - t)

    def observe_localize(self, done: Localized) -> None:
        """The series of one localized video: its stages, classes, pairs and indexed segments."""
        if done.indexed:
            self.indexed_segments.inc(done.indexed_segments)
        self.candidates.observe(len(done.localization.classes))
        self.pairs.observe(done.localization.num_pairs)
        self.observe_stages(done.timings)

    def render(self) -> tuple[bytes, str]:
        """The exposition text: this registry, or every worker's in multiprocess mode."""
        mp = multiprocess_dir()
        if mp:
            from prometheus_client import multiprocess

            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg, path=mp)  # type: ignore[no-untyped-call]
            return generate_latest(reg), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def process_exit(self) -> None:
        """Mark this worker dead in multiprocess mode (its live gauges stop counting)."""
        if multiprocess_dir():
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
