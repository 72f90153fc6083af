"""``ccrl index`` on a real 2-worker LocalCluster: the same answers as ``ccrl submit`` and the
service, one bundle load per worker, no torch, exact after a dead worker and after a resume."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from batch.index_job import IndexResult, run_index
from service.tfrecord import read_videos

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Any:
    """One LocalCluster (2 single-threaded worker processes) for the tests of this module."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as lc,
        Client(lc) as c,
    ):
        yield c


INDEX_TOKEN = "batch-test-index-token-0123"


def _submit(bundle: Path, data: list[Path], out: Path, *, cg: bool, top: int = 100_000) -> bytes:
    from training.submit import run_submit

    return run_submit(bundle, data, out, cg=cg, top=top, threads=1, progress=False).read_bytes()


def _zsets(url: str, prefix: str, bundle: Path, classes: list[int]) -> dict[int, list[Any]]:
    from service.api.app import bundle_namespace
    from service.bundle import load_bundle

    ns = bundle_namespace(load_bundle(bundle, verify=False))
    r = redis.Redis.from_url(url)
    try:
        return {
            c: r.zrange(f"{prefix}:{ns}:index:class:{c}", 0, -1, withscores=True) for c in classes
        }
    finally:
        r.close()


def _service_index(bundle: Path, data: list[Path], url: str, cap: int, cg: bool) -> Any:
    """Index every video through the service (``POST /localize`` with ``index``), each with the
    classes ``ccrl submit`` ranks it for; returns the app's TestClient factory arguments."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.bundle import load_bundle
    from service.config import Settings
    from service.decode import encode_frames
    from training.submit import score_corpus

    videos = list(read_videos(data))
    b = load_bundle(bundle)
    cs = score_corpus(b, videos, cg_modes=[cg], threads=1, progress=False)
    settings = Settings(
        bundle=bundle,
        redis_url=url,
        redis_prefix="svc",
        index_cap=cap,
        ort_intra_threads=1,
        xgb_nthread=1,
        index_token=INDEX_TOKEN,  # indexing through the service needs a token
    )
    auth = {"Authorization": f"Bearer {INDEX_TOKEN}"}
    with TestClient(create_app(settings)) as client:
        for i, v in enumerate(videos):
            classes = cs.classes[cs.cg_mask[i]] if cg else cs.classes
            if v.num_segments == 0 or not len(classes):
                continue
            body = {
                "rgb": encode_frames(v.rgb),
                "audio": encode_frames(v.audio),
                "video_id": v.id,
                "classes": classes.tolist(),
                "index": True,
            }
            assert client.post("/localize", json=body, headers=auth).status_code == 200


def _tasks(data: list[Path], chunk: int) -> int:
    from batch.plan import corpus_files, count_records, make_plan

    files = corpus_files(data)
    return len(make_plan(files, [count_records(f) for f in files], chunk).chunks)


def _check_loads(res: IndexResult) -> None:
    pids = {s["pid"] for s in res.task_stats}
    assert len(pids) == 2, "both workers ran tasks"
    assert {s["loads"] for s in res.task_stats} == {1}, "one bundle load per worker process"
    assert not any(s["torch_imported"] for s in res.task_stats)


@pytest.mark.redis
@pytest.mark.parametrize("cg", [True, False], ids=["cg", "no-cg"])
def test_index_equals_submit_and_the_service_index(
    cluster: Any,
    index_bundle: Path,
    index_data: list[Path],
    redis_url: str,
    tmp_path: Path,
    cg: bool,
) -> None:
    top = 40  # below the corpus's list lengths: the cap and its ties matter
    res = run_index(
        index_bundle,
        index_data,
        client=cluster,
        out=tmp_path / "index.csv",
        redis_url=redis_url,
        redis_prefix="idx",
        top=top,
        cg=cg,
        chunk_size=5,
        progress=False,
    )
    _check_loads(res)
    n = _tasks(index_data, 5)
    assert res.tasks["rank"] == {"total": n, "resumed": 0, "run": n}
    want = _submit(index_bundle, index_data, tmp_path / "submit.csv", cg=cg, top=top)
    assert res.out is not None and res.out.read_bytes() == want
    # the service indexing each video with the same classes, capped at the same size
    _service_index(index_bundle, index_data, redis_url, top, cg)
    from service.bundle import load_bundle

    classes = load_bundle(index_bundle).rated_classes.tolist()
    ours = _zsets(redis_url, "idx", index_bundle, classes)
    theirs = _zsets(redis_url, "svc", index_bundle, classes)
    assert ours == theirs
    assert sum(len(v) for v in ours.values()) == res.redis["members"] > 0  # type: ignore[index]
    # GET /classes/{c}/top-segments on what ccrl index wrote: the CSV's scores in the CSV's order
    # (a Redis set orders equal scores by member, the CSV by video then segment)
    from training.submission import read_submission

    sub = read_submission(res.out)
    for c in classes:
        scores = {m.decode(): s for m, s in ours[c]}
        csv_scores = [scores[t] for t in sub[c]]
        assert csv_scores == sorted(csv_scores, reverse=True)
        assert set(sub[c]) == set(scores)


def test_interrupted_run_resumes_to_the_same_result(
    cluster: Any, index_bundle: Path, index_data: list[Path], tmp_path: Path
) -> None:
    class Crash(Exception):
        pass

    seen: list[str] = []

    def crash_after_three(phase: str, part: dict[str, Any]) -> None:
        seen.append(phase)
        if seen.count("rank") == 3:
            raise Crash

    kw: dict[str, Any] = {"client": cluster, "chunk_size": 4, "progress": False}
    with pytest.raises(Crash):
        run_index(
            index_bundle,
            index_data,
            out=tmp_path / "a.csv",
            resume=tmp_path / "run",
            checkpoint_s=0.0,  # fold into state.npz after every task
            on_task=crash_after_three,
            **kw,
        )
    res = run_index(index_bundle, index_data, out=tmp_path / "a.csv", resume=tmp_path / "run", **kw)
    n = _tasks(index_data, 4)
    assert res.tasks["cg"] == {"total": n, "resumed": n, "run": 0}
    assert res.tasks["rank"] == {"total": n, "resumed": 3, "run": n - 3}
    fresh = run_index(index_bundle, index_data, out=tmp_path / "b.csv", **kw)
    assert res.out is not None and fresh.out is not None
    assert res.out.read_bytes() == fresh.out.read_bytes()
    from batch.resume import ResumeMismatch

    with pytest.raises(ResumeMismatch, match="top"):
        run_index(
            index_bundle, index_data, out=tmp_path / "c.csv", resume=tmp_path / "run", top=9, **kw
        )


def test_a_killed_worker_is_retried_and_the_result_is_exact(
    cluster: Any, index_bundle: Path, index_data: list[Path], tmp_path: Path
) -> None:
    killed: list[int] = []

    def kill_a_busy_worker(phase: str, part: dict[str, Any]) -> None:
        if killed or phase != "rank" or os.environ.get("NOKILL"):
            return
        busy = [w for w, keys in cluster.processing().items() if keys]
        pid = cluster.run(os.getpid, workers=busy[:1])[busy[0]]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    kw: dict[str, Any] = {"client": cluster, "chunk_size": 2, "cg": False, "progress": False}
    res = run_index(
        index_bundle, index_data, out=tmp_path / "k.csv", on_task=kill_a_busy_worker, **kw
    )
    assert killed and killed[0] not in cluster.run(os.getpid).values()
    assert res.tasks["rank"]["run"] == _tasks(index_data, 2)
    assert res.out is not None
    assert res.out.read_bytes() == _submit(index_bundle, index_data, tmp_path / "s.csv", cg=False)
    cluster.wait_for_workers(2)


def test_plan_chunks_number_videos_in_reading_order(index_data: list[Path]) -> None:
    from batch.plan import corpus_files, count_records, make_plan, read_chunk

    files = corpus_files(index_data)
    plan = make_plan(files, [count_records(f) for f in files], 5)
    ids = [v.id for c in plan.chunks for v in read_chunk(c)]
    assert ids == [v.id for v in read_videos(index_data)]
    assert [c.ordinal for c in plan.chunks] == np.cumsum([0] + [c.size for c in plan.chunks])[
        :-1
    ].tolist()
    assert all(0 < c.size <= 5 for c in plan.chunks)


def test_a_killed_ccrl_index_resumes_to_the_same_csv(
    index_bundle: Path, index_data: list[Path], tmp_path: Path
) -> None:
    """The real command, killed (SIGKILL to its process group: driver and workers) once a task
    is recorded, then run again with the same ``--resume``: only the rest runs, same CSV."""
    import subprocess
    import sys
    import time

    resume = tmp_path / "resume"
    data = [a for d in index_data for a in ("--data", str(d))]
    cmd = [
        sys.executable,
        "-m",
        "ccrl",
        "index",
        str(index_bundle),
        *data,
        "--workers",
        "1",
        "--chunk",
        "1",
        "--out",
        str(tmp_path / "r.csv"),
        "--resume",
        str(resume),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not list(resume.glob("cg/part-*.npz")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert not (tmp_path / "r.csv").exists()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    total = _tasks(index_data, 1)
    resumed = int(again.stdout.split("tasks: cg ")[1].split(" run + ")[1].split(" resumed")[0])
    assert 0 < resumed < total, again.stdout
    want = _submit(index_bundle, index_data, tmp_path / "s.csv", cg=True)
    assert (tmp_path / "r.csv").read_bytes() == want
