"""The service's settings: one pydantic-settings object, built at start-up (never at import).

Environment variables (all optional except the bundle, which ``--bundle`` may give instead):

- ``CCRL_BUNDLE``: the model bundle folder.
- ``REDIS_URL``: share the bank and the corpus index through Redis; without it the service runs
  on the embedded in-process store.
- ``CCRL_API_TOKEN``: the bearer token that write endpoints require; unset = writes refused.
  Surrounding whitespace (a trailing newline of a token file) is stripped once, here; a token
  shorter than 16 characters is refused at start-up.
- ``CCRL_INDEX_TOKEN``: a second token that may only index videos (``/localize`` with a
  ``video_id``); the write token may index too.
- ``CCRL_*``: every other field below, e.g. ``CCRL_MAX_CLASSES=20``, ``CCRL_WORKERS=2``.

Connection limits (``ccrl serve``, enforced by :mod:`service.api.protocol` and uvicorn):
``CCRL_MAX_HEADER_BYTES`` (a request head larger than this is a 400), ``CCRL_MAX_HEADERS`` (more
header lines are a 431), ``CCRL_HEADER_TIMEOUT_S`` (the whole request head must arrive within it,
else 408 and the connection is closed), ``CCRL_BODY_TIMEOUT_S`` (likewise for the whole body,
counted from the end of the head), ``CCRL_KEEP_ALIVE_S`` (idle keep-alive connections are closed
after it), ``CCRL_MAX_CONNECTIONS`` (requests on connections beyond it are answered 503).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.yt8m import MAX_FRAMES, SEGMENT_FRAMES

MIN_TOKEN_LENGTH = 16

# The serving settings of a 2-CPU replica with Redis, as measured in loadtests/README.md: the
# deploy files (compose, Kubernetes, the Dockerfile) set exactly these, and a test checks that
# they do. Every value but the worker count is also the default below (one worker is the default
# because the embedded store is per process: several workers need REDIS_URL).
DEPLOY_ENV: dict[str, str] = {
    "CCRL_WORKERS": "2",
    "CCRL_ORT_INTRA_THREADS": "1",
    "CCRL_ORT_INTER_THREADS": "1",
    "CCRL_ORT_SPINNING": "false",
    "CCRL_XGB_NTHREAD": "1",
    "CCRL_BLAS_THREADS": "1",
    "CCRL_MAX_CONCURRENT_SCORING": "2",
    "CCRL_SCORE_ON_LOOP": "true",
    "CCRL_EVENT_LOOP": "uvloop",
    "CCRL_ACCESS_LOG": "false",
}


class Settings(BaseSettings):
    """Every tunable of the online service, read once from the environment at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="CCRL_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        hide_input_in_errors=True,  # never print a (short) token in a start-up error
    )

    bundle: Path | None = Field(default=None, description="Model bundle folder (CCRL_BUNDLE).")
    verify_bundle: bool = Field(default=True, description="Check every sha256 of the manifest.")
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "CCRL_REDIS_URL"),
        description="Redis for the shared bank and index; unset = embedded in-process store.",
    )
    redis_timeout_s: float = Field(default=0.25, gt=0, le=10, description="Socket timeouts.")
    redis_prefix: str = Field(default="ccrl", min_length=1, description="Key prefix in Redis.")
    bank_poll_interval_s: float = Field(
        default=1.0,
        ge=0,
        description="The longest a replica's bank thread waits on the change stream before it "
        "checks the bank's seed again (writes arrive at once, not on this clock).",
    )
    store_retry_interval_s: float = Field(
        default=1.0, ge=0, description="While Redis is down, how often to try it again."
    )
    api_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CCRL_API_TOKEN"),
        description="Bearer token for writes (>= 16 characters); unset = writes refused.",
    )
    index_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CCRL_INDEX_TOKEN"),
        description="Bearer token that may only index videos (>= 16 characters); optional.",
    )

    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, le=1024 * 1024, description="Largest request head (bytes)."
    )
    max_headers: int = Field(default=64, ge=8, le=1000, description="Most header lines.")
    header_timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="The request head must arrive within this."
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="The body must arrive within this after the head."
    )
    keep_alive_s: float = Field(default=5.0, gt=0, le=600, description="Idle keep-alive timeout.")
    keep_alive_requests: int = Field(
        default=100,
        ge=0,
        le=1_000_000,
        description=(
            "Requests per connection before the answer says Connection: close (0: no limit); the "
            "client reconnects, to whichever worker is free first, which balances the workers."
        ),
    )
    balance_connections: bool = Field(
        default=True,
        description=(
            "With several workers, keep their open-connection counts level: a request on a "
            "worker holding two connections more than another is answered with Connection: close."
        ),
    )
    max_connections: int = Field(
        default=1000, ge=1, le=100_000, description="Concurrent connections; 503 beyond them."
    )

    # Serving speed (loadtests/README.md): one thread per native pool and no spinning, /localize
    # scored on the event loop, uvloop, no access log; worker processes for parallelism.
    ort_intra_threads: int = Field(default=1, ge=1, le=256)
    ort_inter_threads: int = Field(default=1, ge=1, le=256)
    ort_spinning: bool = Field(
        default=False, description="Let ONNX Runtime's pool threads busy-wait between operators."
    )
    ort_providers: str = Field(
        default="auto", description="'auto' (CUDA when available, else CPU) or 'cpu'."
    )
    xgb_nthread: int = Field(default=1, ge=1, le=256)
    blas_threads: int = Field(default=1, ge=1, le=256, description="numpy's BLAS threads.")
    max_concurrent_scoring: int = Field(
        default=2, ge=1, le=64, description="Requests scored at once per process."
    )
    score_on_loop: bool = Field(
        default=True,
        description="Score /localize on the event loop (no thread hop); else in the thread pool.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="`ccrl serve` worker processes (more than 1 needs REDIS_URL to share state).",
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        default="uvloop", description="uvicorn's event loop."
    )
    access_log: bool = Field(default=False, description="uvicorn's access log line per request.")

    max_classes: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Candidate classes per video (unset: the bundle's choice, else 20).",
    )
    min_video_score: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Candidate classes need this video score (unset: the bundle's choice).",
    )
    max_segments: int = Field(default=60, ge=1, description="Segments returned per class.")
    max_frames: int = Field(default=MAX_FRAMES, ge=SEGMENT_FRAMES, le=100_000)
    min_frames: int = Field(default=SEGMENT_FRAMES, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    index_cap: int = Field(default=100_000, ge=1, description="Segments kept per class index.")
    max_page: int = Field(default=1000, ge=1, description="Largest `limit` of top-segments.")
    review_keep_per_class: int = Field(
        default=100,
        ge=0,
        le=100_000,
        description="Segments kept per class and list (top, uncertain) for labels by reference "
        "and re-scoring (service/stores/kept.py); 0 = none kept.",
    )
    shutdown_grace_s: float = Field(
        default=20.0,
        gt=0,
        le=3600,
        description="SIGTERM: in-flight requests get this long (keep under the pod's grace).",
    )
    shutdown_drain_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="SIGTERM: connections stay open this long, answering with Connection: close.",
    )

    @field_validator("api_token", "index_token", mode="before")
    @classmethod
    def _strip_token(cls, v: object) -> object:
        """Strip a token once (a token file's newline); empty = unset; under 16 characters fails."""
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise ValueError("the token must be a string")
        raw = raw.strip()
        if not raw:
            return None
        if len(raw) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"the token has {len(raw)} characters; use at least {MIN_TOKEN_LENGTH} "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        if any(ch.isspace() or not ch.isprintable() for ch in raw):
            raise ValueError("the token must not contain whitespace or control characters")
        return raw

    @field_validator("ort_providers")
    @classmethod
    def _providers(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in {"auto", "cpu", "cuda"}:
            raise ValueError(f"ort_providers must be auto, cpu or cuda, got {v!r}")
        return v

    def token(self) -> str | None:
        """The configured write token (stripped at start-up), or None when writes are disabled."""
        return self.api_token.get_secret_value() if self.api_token is not None else None

    def index_tokens(self) -> tuple[str, ...]:
        """The tokens that may index videos: the write token and the index token, when set."""
        toks = (self.api_token, self.index_token)
        return tuple(t.get_secret_value() for t in toks if t is not None)
