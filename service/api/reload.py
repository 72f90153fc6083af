"""Hot reload: load a bundle beside the serving one, verify it, swap, retire the old one.

A reload (``POST /admin/reload``, or SIGHUP) builds a whole new :class:`Runtime` in the background
with the app's own builder (:func:`service.api.app.build_runtime`): every sha256 of the bundle,
the ONNX Runtime session and the booster, the self-check (:mod:`service.selfcheck`), and the
bank/index stores of the new bundle's namespace (with Redis: ``{prefix}:{version}-{bank sha}``, as
at start-up). Only then is ``app.state.runtime`` swapped, in one assignment: a request that started
before keeps the old runtime to its end (:func:`service.api.runtime.get_runtime` leases it), and
the old runtime's stores are closed once its last request is done. A bundle that fails anything
is refused with the reason (in the answer and the log) and the old one keeps serving.

With several workers the reload has to reach all of them: the worker that accepted it publishes
a new generation in the control folder (:mod:`service.api.control`), and every other worker's
watch thread loads the same bundle. A SIGHUP publishes a generation for the configured bundle.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.api.control import ControlFolder, ReloadRequest, WorkerState, control_dir
from service.api.errors import ApiError
from service.api.runtime import Runtime
from service.config import Settings

log = logging.getLogger("ccrl.reload")

Builder = Callable[[Settings, Runtime | None], Runtime]
"""``build(settings, previous) -> Runtime``: the app's runtime builder."""

RETIRE_WAIT_S = 600.0
"""Longest wait for the old runtime's requests before its stores are closed anyway."""


class ReloadBusy(ApiError):
    status, code = 409, "reload_in_progress"


class ReloadRefused(ApiError):
    status, code = 422, "reload_refused"


@dataclass(frozen=True)
class Reloaded:
    """One accepted reload of this worker."""

    model: str
    model_version: str
    previous_version: str
    bundle: str
    seconds: float
    generation: int
    workers: list[WorkerState] = field(default_factory=list)


_ACTIVE: set[Reloads] = set()
"""The apps of this process that can reload (a SIGHUP without a control folder reloads them)."""


def hangup() -> None:
    """SIGHUP: every worker reloads its configured bundle (through the control folder if any)."""
    path = control_dir()
    if path is not None:
        generation = ControlFolder(path).publish(None)
        log.info("SIGHUP: reload generation %d of the configured bundle", generation)
        return
    for reloads in list(_ACTIVE):
        threading.Thread(target=reloads.follow, args=(None, 0), daemon=True).start()


class Reloads:
    """The reloads of one app: swaps of ``state.runtime``, the control watch, the retirements.

    Args:
        state: the app's ``app.state`` (its ``runtime`` attribute is swapped).
        settings: the settings the app started with (their ``bundle`` is the configured one).
        build: the runtime builder.
        control: the control folder (default: ``$CCRL_CONTROL_DIR``, None without one).
    """

    def __init__(
        self,
        state: Any,
        settings: Settings,
        build: Builder,
        *,
        control: ControlFolder | None = None,
        poll_s: float = 0.25,
    ) -> None:
        self.state = state
        self.settings = settings
        self.build = build
        path = control_dir()
        self.control = control or (ControlFolder(path) if path is not None else None)
        self.poll_s = poll_s
        self.generation = 0
        self._lock = threading.Lock()
        self._owned: set[int] = set()  # ids of the runtimes this object must close
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ start and stop
    def start(self, runtime: Runtime | None = None) -> Runtime:
        """Serve ``runtime`` (not closed here), or build one: the latest published bundle's if a
        reload was published before this worker started, else the configured one."""
        # The request as it was before the build: one published while this worker loads is
        # followed by the watch thread (it checks the request file once as it starts).
        request = self.control.request() if self.control is not None else ReloadRequest()
        if runtime is None:
            settings = self.settings
            if request.bundle:
                settings = settings.model_copy(update={"bundle": Path(request.bundle)})
            runtime = self.build(settings, None)
            self._owned.add(id(runtime))
        self.generation = request.generation
        self.state.runtime = runtime
        _ACTIVE.add(self)
        self._report(runtime)
        if self.control is not None:
            watch = threading.Thread(target=self._watch, name="ccrl-reload-watch", daemon=True)
            watch.start()
            self._threads.append(watch)
        return runtime

    def shutdown(self) -> None:
        """Stop watching, wait for retirements, close every runtime this object owns."""
        self._stop.set()
        _ACTIVE.discard(self)
        for t in self._threads:
            t.join(timeout=RETIRE_WAIT_S)
        rt: Runtime | None = self.state.runtime
        self.state.runtime = None
        if rt is not None and id(rt) in self._owned:
            rt.close()
            rt.metrics.process_exit()
        if self.control is not None:
            self.control.forget(os.getpid())

    # ------------------------------------------------------------------ reloading
    def reload(self, bundle: str | None, *, wait_s: float = 0.0) -> Reloaded:
        """Load, verify and swap ``bundle`` (None: the configured one), then publish it to the
        other workers and wait up to ``wait_s`` for them. Blocking: run it in a thread.

        Raises:
            ReloadBusy: another reload of this worker is under way.
            ReloadRefused: the bundle failed; the old one keeps serving.
        """
        if not self._lock.acquire(blocking=False):
            raise ReloadBusy("a reload is already under way in this worker; try again later")
        try:
            done = self._load_and_swap(bundle)
            if self.control is not None:
                self.generation = self.control.publish(done.bundle)
                done = dataclasses.replace(done, generation=self.generation)
                self._report(self.state.runtime)
        finally:
            self._lock.release()
        return dataclasses.replace(done, workers=self._wait_workers(wait_s))

    def follow(self, bundle: str | None, generation: int) -> None:
        """Apply a reload published elsewhere (the watch thread, or SIGHUP); never raises."""
        with self._lock:
            if self.control is not None and generation <= self.generation:
                return
            detail = ""
            try:
                self._load_and_swap(bundle)
            except ReloadRefused as e:
                detail = e.detail
            self.generation = max(self.generation, generation)
            self._report(self.state.runtime, detail)

    def _target(self, bundle: str | None) -> Path:
        raw = bundle if bundle else self.settings.bundle
        if raw is None:
            raise ReloadRefused("no bundle given and none configured (CCRL_BUNDLE)")
        return Path(raw).expanduser().resolve()  # a symlink such as /models/current, once

    def _load_and_swap(self, bundle: str | None) -> Reloaded:
        """Build the new runtime (the caller holds the lock), swap it in, retire the old one."""
        t0 = time.perf_counter()
        old: Runtime = self.state.runtime
        try:
            path = self._target(bundle)
            settings = self.settings.model_copy(update={"bundle": path, "verify_bundle": True})
            new = self.build(settings, old)
        except Exception as e:  # anything at all: the old runtime keeps serving
            reason = e.detail if isinstance(e, ApiError) else str(e) or type(e).__name__
            old.metrics.reloads.labels(result="refused").inc()
            log.error("reload refused, still serving version %s: %s", old.model_version, reason)
            raise ReloadRefused(f"reload refused: {reason}") from None
        self._owned.add(id(new))
        self.state.runtime = new  # the swap: new requests get the new runtime from here on
        if (old.model_name, old.model_version) != (new.model_name, new.model_version):
            new.metrics.model_info.labels(name=old.model_name, version=old.model_version).set(0)
        new.metrics.reloads.labels(result="ok").inc()
        seconds = time.perf_counter() - t0
        log.info(
            "reloaded %s: version %s -> %s in %.2fs",
            path,
            old.model_version,
            new.model_version,
            seconds,
        )
        self._retire(old, new)
        return Reloaded(new.model_name, new.model_version, old.model_version, str(path), seconds, 0)

    def _retire(self, old: Runtime, new: Runtime) -> None:
        """Close the old runtime's stores (unless the new one kept them) after its last request."""
        if id(old) not in self._owned:
            return
        self._owned.discard(id(old))
        shared = old.bank is new.bank

        def wait_and_close() -> None:
            deadline = time.monotonic() + RETIRE_WAIT_S
            while old.leases > 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            if not shared:
                old.close()

        t = threading.Thread(target=wait_and_close, name="ccrl-retire", daemon=True)
        t.start()
        self._threads.append(t)

    # ------------------------------------------------------------------ the control folder
    def _report(self, rt: Runtime | None, detail: str = "") -> None:
        if self.control is None or rt is None:
            return
        state = WorkerState(
            os.getpid(), self.generation, rt.model_name, rt.model_version, not detail, detail
        )
        self.control.report(state)

    def _watch(self) -> None:
        assert self.control is not None
        seen: float | None = None
        while seen is None or not self._stop.wait(self.poll_s):
            stamp = self.control.stamp()
            if stamp == seen:
                continue
            seen = stamp
            request = self.control.request()
            if request.generation > self.generation:
                self.follow(request.bundle, request.generation)

    def _wait_workers(self, wait_s: float) -> list[WorkerState]:
        """The workers' states once every worker the master runs (one still starting included)
        has reached this generation, or when ``wait_s`` has passed."""
        if self.control is None:
            return []
        deadline = time.monotonic() + wait_s
        while True:
            states = {s.pid: s for s in self.control.workers()}
            want = self.control.expected() or list(states)
            done = all(p in states and states[p].generation >= self.generation for p in want)
            if done or time.monotonic() >= deadline:
                return [states[p] for p in sorted(states)]
            time.sleep(0.05)
