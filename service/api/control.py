"""The control folder the workers of one ``ccrl serve`` share: reload requests and worker states.

``ccrl serve`` creates it and names it in ``CCRL_CONTROL_DIR`` (as it does the Prometheus
multiprocess folder) before any worker starts. It holds:

- ``reload.json``: ``{"generation": N, "bundle": PATH | null}``, the latest reload request. A
  SIGHUP (to the master or to any worker) or an accepted ``POST /admin/reload`` writes generation
  N + 1 (``bundle`` null = the configured bundle); every worker polls the file and reloads when the
  generation moves past its own. A worker that starts later (a respawn) loads this bundle.
- ``worker-{pid}.json``: what each worker serves: ``{pid, generation, model, model_version, ok,
  detail}``, written at start-up and after every reload, removed at exit.
- ``workers.json``: ``{"pids": [...]}``, the workers the master runs now (written by
  :mod:`service.api.supervisor` whenever it starts one), so that a reload can wait for a worker
  that is still starting.

Every write is a whole file renamed into place (readers never see half a file); ``reload.json`` is
updated under an exclusive ``flock`` so that two requests at once get two generations.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ENV = "CCRL_CONTROL_DIR"


def control_dir() -> Path | None:
    """The control folder of this ``ccrl serve``, or None (an app built by a test, say)."""
    raw = os.environ.get(ENV)
    return Path(raw) if raw else None


@dataclass(frozen=True)
class ReloadRequest:
    """A reload request: its generation and bundle (None = the configured one)."""

    generation: int = 0
    bundle: str | None = None


@dataclass(frozen=True)
class WorkerState:
    """What one worker serves, after its latest reload (or its start)."""

    pid: int
    generation: int
    model: str
    model_version: str
    ok: bool = True
    detail: str = ""


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ControlFolder:
    """Reads and writes the files of one control folder (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.request_file = path / "reload.json"
        self._lock_file = path / ".reload.lock"

    def request(self) -> ReloadRequest:
        """The latest reload request (generation 0 when there was none)."""
        try:
            data = json.loads(self.request_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return ReloadRequest()
        bundle = data.get("bundle")
        return ReloadRequest(int(data.get("generation", 0)), str(bundle) if bundle else None)

    def stamp(self) -> float:
        """The request file's modification time (0 when absent): cheap to poll."""
        try:
            return self.request_file.stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            return 0.0

    def publish(self, bundle: str | None) -> int:
        """Write the next reload request for ``bundle``; returns its generation."""
        with self._lock_file.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                generation = self.request().generation + 1
                _write_json(self.request_file, {"generation": generation, "bundle": bundle})
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return generation

    def report(self, state: WorkerState) -> None:
        """Record what this worker serves now."""
        _write_json(self.path / f"worker-{state.pid}.json", asdict(state))

    def forget(self, pid: int) -> None:
        """Remove a worker's state (it is exiting)."""
        (self.path / f"worker-{pid}.json").unlink(missing_ok=True)

    def expect(self, pids: list[int]) -> None:
        """Record the workers the master runs now."""
        _write_json(self.path / "workers.json", {"pids": [int(p) for p in pids]})

    def expected(self) -> list[int]:
        """The workers the master runs (empty without a master: one in-process server)."""
        try:
            data = json.loads((self.path / "workers.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return []
        return [int(p) for p in data.get("pids", []) if _pid_alive(int(p))]

    def workers(self) -> list[WorkerState]:
        """The states of the live workers, by pid."""
        out = []
        for f in sorted(self.path.glob("worker-*.json")):
            try:
                state = WorkerState(**json.loads(f.read_text(encoding="utf-8")))
            except (FileNotFoundError, ValueError, TypeError):
                continue
            if _pid_alive(state.pid):
                out.append(state)
        return out
