"""Locust scenarios for the ccrl service. Bounded, and against 127.0.0.1 only.

Run headless against a service on this machine, with a user count (-u), a spawn rate (-r) and a
run time (-t), e.g.:

    .venv/bin/ccrl serve --bundle models/demo --port 8000 &
    .venv/bin/locust -f loadtests/locustfile.py --headless -u 8 -r 2 -t 60s \
        --host http://127.0.0.1:8000

The host must be a loopback address (127.0.0.1, ::1, localhost); anything else stops the run unless
LOADTEST_ALLOW_REMOTE=1 is set on purpose. A headless run also needs -t and at most
LOADTEST_MAX_USERS users (default 64).

What a user does (weights): POST /localize with a base64-uint8 body (6) or a JSON-float body (2),
60..300 frames per video, and when CCRL_API_TOKEN is set (the service's token, which indexing
needs) a fraction LOADTEST_INDEX_FRACTION (default 0.3) of them with a fresh video_id so their
scores enter the corpus index; GET /classes/{class_id}/top-segments (3); and, only with the token,
POST /classes/{class_id}/labels (1).

Environment:
    LOADTEST_DATA            TFRecord files/folders/globs (comma-separated) to take videos from;
                             default: random frames.
    LOADTEST_VIDEOS          videos in the payload pool (default 16).
    LOADTEST_SEED            seed of the random videos and choices (default 0).
    LOADTEST_INDEX_FRACTION  fraction of /localize requests that carry a video_id (default 0.3).
    LOADTEST_MAX_CLASSES     max_classes of /localize (default: the service's).
    CCRL_API_TOKEN           enables indexing and the label-posting task.
    LOADTEST_ALLOW_REMOTE    1 = allow a non-loopback --host.
    LOADTEST_MAX_USERS       the most users a headless run may start (default 64).
"""

from __future__ import annotations

import os
import random
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from locust import HttpUser, between, events, task
from locust.exception import StopUser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtests.payloads import (
    PayloadPool,
    VideoFrames,
    labels_body,
    random_videos,
    tfrecord_videos,
    with_video_id,
)
from service.yt8m import segment_starts

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TOKEN = os.environ.get("CCRL_API_TOKEN") or None
INDEX_FRACTION = float(os.environ.get("LOADTEST_INDEX_FRACTION", "0.3"))
SEED = int(os.environ.get("LOADTEST_SEED", "0"))
JSON_HEADERS = {"Content-Type": "application/json"}

_pool: PayloadPool | None = None


def check_host(host: str | None) -> None:
    """Refuse a non-loopback target (unless LOADTEST_ALLOW_REMOTE=1)."""
    if os.environ.get("LOADTEST_ALLOW_REMOTE") == "1":
        return
    hostname = urlparse(host or "").hostname
    if hostname not in LOOPBACK:
        raise ValueError(
            f"--host {host!r} is not a loopback address; these load tests run against "
            "http://127.0.0.1:PORT only (set LOADTEST_ALLOW_REMOTE=1 to override on purpose)"
        )


def check_bounds(options: Any) -> None:
    """Headless runs need a run time (-t) and at most LOADTEST_MAX_USERS users (default 64)."""
    if options is None or not getattr(options, "headless", False):
        return
    if not getattr(options, "run_time", None):
        raise ValueError("a headless run needs a run time: pass -t/--run-time, e.g. -t 60s")
    cap = int(os.environ.get("LOADTEST_MAX_USERS", "64"))
    users = getattr(options, "num_users", None) or 1
    if users > cap:
        raise ValueError(
            f"-u {users} is more than LOADTEST_MAX_USERS={cap} (raise it on purpose if needed)"
        )


def load_pool() -> PayloadPool:
    """The shared payload pool, built once per process (TFRecord videos or random frames)."""
    global _pool
    if _pool is None:
        count = int(os.environ.get("LOADTEST_VIDEOS", "16"))
        data = os.environ.get("LOADTEST_DATA")
        if data:
            videos = tfrecord_videos([p for p in data.split(",") if p], limit=count, min_frames=60)
        else:
            videos = random_videos(count, min_frames=60, max_frames=300, seed=SEED)
        max_classes = os.environ.get("LOADTEST_MAX_CLASSES")
        _pool = PayloadPool.build(
            videos, ("b64", "json"), max_classes=int(max_classes) if max_classes else None
        )
    return _pool


@events.init.add_listener  # type: ignore[untyped-decorator]
def _on_init(environment: Any, **_: Any) -> None:
    """Refuse a remote host or an unbounded headless run before any user starts."""
    try:
        check_host(environment.host)
        check_bounds(environment.parsed_options)
    except ValueError as e:
        print(f"locustfile: refusing to run: {e}", file=sys.stderr)
        raise SystemExit(2) from None


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _on_test_start(environment: Any, **_: Any) -> None:
    pool = load_pool()
    sizes = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in pool.sizes().items())
    print(f"locustfile: {len(pool.videos)} videos in the pool; mean body {sizes}", file=sys.stderr)


class CcrlUser(HttpUser):
    """A client of the service: localizes videos, browses the corpus index, sometimes labels."""

    wait_time = between(0.1, 1.0)

    def on_start(self) -> None:
        try:
            check_host(self.host)
        except ValueError as e:
            raise StopUser() from e
        self.rnd = random.Random(SEED + id(self))
        self.pool = load_pool()
        self.class_ids = self._fetch_class_ids()

    def _fetch_class_ids(self) -> list[int]:
        with self.client.get("/classes", name="/classes", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"GET /classes: {resp.status_code}")
                return [0]
            ids = [int(c["class_id"]) for c in resp.json().get("classes", [])]
            if not ids:
                resp.failure("GET /classes returned no class")
                return [0]
            return ids

    def _localize(self, encoding: str) -> None:
        _, body = self.pool.pick(encoding, self.rnd)  # type: ignore[arg-type]
        headers = JSON_HEADERS
        if TOKEN is not None and self.rnd.random() < INDEX_FRACTION:  # indexing needs the token
            body = with_video_id(body, f"lt-{uuid.uuid4().hex[:12]}")
            headers = {**JSON_HEADERS, "Authorization": f"Bearer {TOKEN}"}
        self.client.post("/localize", data=body, headers=headers, name=f"/localize [{encoding}]")

    @task(6)
    def localize_b64(self) -> None:
        self._localize("b64")

    @task(2)
    def localize_json(self) -> None:
        self._localize("json")

    @task(3)
    def top_segments(self) -> None:
        class_id = self.rnd.choice(self.class_ids)
        offset = self.rnd.choice([0, 0, 0, 20, 100])
        self.client.get(
            f"/classes/{class_id}/top-segments",
            params={"limit": 20, "offset": offset},
            name="/classes/{class_id}/top-segments",
        )

    @task(1 if TOKEN else 0)
    def post_labels(self) -> None:
        if TOKEN is None:
            return  # writes need the token; without it this task sends nothing
        video: VideoFrames = self.rnd.choice(self.pool.videos)
        all_starts = segment_starts(video.num_frames).tolist()
        starts = self.rnd.sample(all_starts, k=min(3, len(all_starts)))
        segments = [(s, self.rnd.randint(0, 1)) for s in starts]
        class_id = self.rnd.choice(self.class_ids)
        # A per-request id keeps the bank growing with distinct "videos".
        body = labels_body(video, segments)
        body["video_id"] = f"lt-label-{uuid.uuid4().hex[:12]}"
        self.client.post(
            f"/classes/{class_id}/labels",
            json=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
            name="/classes/{class_id}/labels",
        )
