"""The service's settings: one pydantic-settings object, built at start-up (never at import).

Environment variables (all optional except the bundle, which ``--bundle`` may give instead):

- ``CCRL_BUNDLE``: the model bundle folder.
- ``REDIS_URL``: share the bank and the corpus index through Redis; without it the service runs
  on the embedded in-process store.
- ``CCRL_API_TOKEN``: the bearer token that write endpoints require; unset = writes refused.
- ``CCRL_*``: every other field below, e.g. ``CCRL_MAX_CLASSES=20``, ``CCRL_ORT_INTRA_THREADS=2``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.yt8m import MAX_FRAMES, SEGMENT_FRAMES


class Settings(BaseSettings):
    """Every tunable of the online service, read once from the environment at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="CCRL_", extra="ignore", frozen=True, populate_by_name=True
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
        default=1.0, ge=0, description="How often a replica checks the shared bank version."
    )
    store_retry_interval_s: float = Field(
        default=1.0, ge=0, description="While Redis is down, how often to try it again."
    )
    api_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CCRL_API_TOKEN"),
        description="Bearer token for writes; unset = writes refused.",
    )

    ort_intra_threads: int = Field(default=2, ge=1, le=256)
    ort_inter_threads: int = Field(default=1, ge=1, le=256)
    ort_providers: str = Field(
        default="auto", description="'auto' (CUDA when available, else CPU) or 'cpu'."
    )
    xgb_nthread: int = Field(default=2, ge=1, le=256)
    max_concurrent_scoring: int = Field(
        default=2, ge=1, le=64, description="Requests scored at once per process."
    )

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

    @field_validator("ort_providers")
    @classmethod
    def _providers(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in {"auto", "cpu", "cuda"}:
            raise ValueError(f"ort_providers must be auto, cpu or cuda, got {v!r}")
        return v

    def token(self) -> str | None:
        """The configured write token, or None when writes are disabled."""
        if self.api_token is None:
            return None
        value = self.api_token.get_secret_value()
        return value or None
