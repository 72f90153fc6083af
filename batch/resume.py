"""``--resume DIR``: what a corpus job has finished, recorded so that a rerun does only the rest.

Layout::

    DIR/job.json               what the job is (bundle, shards, options) and the shard counts
    DIR/{phase}/part-NNNNNN.npz   one finished task's partial result
    DIR/{phase}/state.npz         the merge of every task listed in its ``done`` array

Every file is written to a temporary name in the same folder and renamed into place
(``os.replace``), so a job killed at any moment leaves whole files only. Parts folded into a
``state.npz`` are deleted after it is written; a part that a state already covers is ignored. A
folder that holds another job is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


class ResumeMismatch(RuntimeError):
    """The resume folder records a different job."""


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_npz(path: Path, arrays: dict[str, Any]) -> None:
    """Write numeric / unicode arrays atomically (never pickled)."""
    _atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class ResumeDir:
    """The resume folder of one job (``root`` None: nothing is recorded)."""

    def __init__(self, root: str | Path | None, job: dict[str, Any]) -> None:
        self.root = Path(root) if root is not None else None
        self.job = job
        self.counts: list[int] | None = None
        if self.root is None:
            return
        path = self.root / "job.json"
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("job") != job:
                diff = sorted(k for k in job if saved.get("job", {}).get(k) != job[k])
                raise ResumeMismatch(
                    f"{self.root} holds another job (differs in {', '.join(diff) or 'format'}); "
                    "use another --resume folder or remove this one"
                )
            self.counts = saved.get("counts")
        else:
            self._write_job(None)

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def _write_job(self, counts: list[int] | None) -> None:
        assert self.root is not None
        body = json.dumps({"job": self.job, "counts": counts}, indent=1).encode()
        _atomic_write(self.root / "job.json", lambda f: f.write(body))

    def save_counts(self, counts: list[int]) -> None:
        self.counts = list(counts)
        if self.root is not None:
            self._write_job(self.counts)

    def _dir(self, phase: str) -> Path:
        assert self.root is not None
        return self.root / phase

    def save_part(self, phase: str, chunk: int, arrays: dict[str, Any]) -> None:
        if self.root is not None:
            save_npz(self._dir(phase) / f"part-{chunk:06d}.npz", arrays)

    def save_state(self, phase: str, arrays: dict[str, Any], done: list[int]) -> None:
        """Record the merged state of the ``done`` tasks, then drop their part files."""
        if self.root is None:
            return
        save_npz(self._dir(phase) / "state.npz", {**arrays, "done": np.asarray(done, np.int64)})
        for chunk in done:
            (self._dir(phase) / f"part-{chunk:06d}.npz").unlink(missing_ok=True)

    def load_state(self, phase: str) -> tuple[dict[str, np.ndarray] | None, set[int]]:
        """(the saved state or None, the tasks it covers)."""
        if self.root is None or not (self._dir(phase) / "state.npz").is_file():
            return None, set()
        state = load_npz(self._dir(phase) / "state.npz")
        return state, {int(c) for c in state.pop("done").tolist()}

    def parts(self, phase: str, skip: set[int]) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """The saved parts not covered by ``skip``, in task order."""
        if self.root is None or not self._dir(phase).is_dir():
            return
        for p in sorted(self._dir(phase).glob("part-*.npz")):
            chunk = int(p.stem.split("-")[1])
            if chunk not in skip:
                yield chunk, load_npz(p)
