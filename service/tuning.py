"""Process tuning for serving: the native thread pools (BLAS, ONNX Runtime) and the heap.

Under concurrent requests on a few cores, every pool that keeps more than one thread (and spins
while it waits for work) takes CPU from the requests that have work to do. The measurements are in
loadtests/README.md: OpenBLAS's default of one thread per core made the pair features' small
matrix products cost ~8x the CPU of the whole request on 2 shared cores. So a serving process runs
numpy's BLAS on ``blas_threads`` (default 1), and ONNX Runtime sessions without spinning, one
operator at a time; parallelism comes from worker processes.

:func:`freeze_heap` moves what start-up allocated (modules, the bundle's Python objects) out of the
garbage collector's reach: a full collection of the ~80K start-up objects took ~100 ms in the
middle of a request on a loaded machine, the worst of the tail.
"""

from __future__ import annotations

import gc
from typing import Any


def limit_blas_threads(threads: int) -> dict[str, int]:
    """Set the threads of every BLAS library numpy has loaded; returns library -> threads before.

    Process-wide and lasting (not a context manager): call it once at start-up.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    before = {
        str(p.get("internal_api", p.get("prefix", "?"))): int(p.get("num_threads", 0))
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    }
    threadpool_limits(limits=int(threads), user_api="blas")
    return before


def session_options(intra_threads: int, inter_threads: int, *, spinning: bool) -> Any:
    """ONNX Runtime session options for serving: thread counts, sequential execution, and
    ``spinning`` (False: pool threads sleep instead of busy-waiting between operators)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(intra_threads)
    opts.inter_op_num_threads = int(inter_threads)
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    flag = "1" if spinning else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", flag)
    opts.add_session_config_entry("session.inter_op.allow_spinning", flag)
    return opts


def freeze_heap() -> int:
    """Collect once, then freeze every object alive (``gc.freeze``): later collections skip them.
    Returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
