"""The Dask client of a job: a ``LocalCluster`` of single-threaded worker processes, or any running
``distributed`` scheduler by address.

Workers run one task at a time (``threads_per_worker=1``) and each task uses one ONNX Runtime and
one XGBoost thread: scale with workers, not threads. Dask's nanny already starts worker processes
with ``OMP_NUM_THREADS=1`` (``distributed.nanny.pre-spawn-environ``). Workers of a remote cluster
must see the bundle and the shards at the same paths (a shared filesystem or the same mounts) and
be started with ``--nthreads 1`` (``dask worker ADDRESS --nthreads 1``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def dask_client(
    workers: int | None = None,
    scheduler: str | None = None,
    *,
    memory_limit: str | float = "auto",
    client: Any = None,
) -> Iterator[Any]:
    """A connected ``distributed.Client`` (closed afterwards; ``client`` given: used as is).

    Args:
        workers: LocalCluster worker processes (default 1); not with ``scheduler``.
        scheduler: the address of a running scheduler (``tcp://host:8786``).
        memory_limit: per LocalCluster worker (``"auto"``: the machine's memory / workers).
    """
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    if scheduler and workers:
        raise ValueError(
            "give --workers (a local cluster) or --scheduler (a running one), not both"
        )
    if scheduler:
        with Client(scheduler) as c:
            yield c
        return
    n = int(workers or 1)
    if n < 1:
        raise ValueError(f"--workers must be >= 1, got {n}")
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit=memory_limit,
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c
