"""What the lifespan builds and the routes use: settings, bundle, scorer, stores, metrics.

Routes take the runtime as a parameter typed :data:`RuntimeDep`: FastAPI hands them
``app.state.runtime``, or answers 503 ``not_ready`` while the model is not loaded. A request keeps
the runtime it started with to its end (its lease), so that a hot reload (:mod:`service.api.reload`)
can swap ``app.state.runtime`` at any moment and close the old one once its last request is done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated

from fastapi import Depends, Request

from service.api.errors import NotReady
from service.api.metrics import Metrics
from service.bundle import Bundle
from service.config import Settings
from service.localize import Localizer
from service.review import Reviewer
from service.scorer import Scorer
from service.stores.base import BankStore, IndexStore, StoreUnavailable
from service.stores.kept import kept_store_for

log = logging.getLogger("ccrl.api")


@dataclass
class Runtime:
    """The loaded service state (one per process), on ``app.state.runtime``."""

    settings: Settings
    bundle: Bundle
    scorer: Scorer
    bank: BankStore
    index: IndexStore
    metrics: Metrics
    slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(2))
    checks: dict[str, str] = field(default_factory=dict)
    """What the self-check proved (:func:`service.selfcheck.self_check`): part -> detail."""
    leases: int = 0
    """Requests using this runtime now (changed on the event loop only)."""

    @property
    def model_name(self) -> str:
        return self.bundle.manifest.name

    @property
    def model_version(self) -> str:
        return self.bundle.manifest.version

    @cached_property
    def localizer(self) -> Localizer:
        """Decode -> score -> index (-> keep for review) with this runtime's parts."""
        return Localizer(self.scorer, self.bank, self.index, self.settings, self.review.keep)

    @cached_property
    def review(self) -> Reviewer:
        """The review queue, labels by reference and re-scoring, on a review store beside the
        index (:func:`service.stores.kept.kept_store_for`)."""
        kept = kept_store_for(self.index, self.settings.review_keep_per_class)
        return Reviewer(self.scorer, self.bank, self.index, kept)

    def rescore_after_labels(self, class_id: int) -> int | None:
        """Re-score the class's kept segments after a label write or removal; None when the store
        failed (the bank change is stored all the same)."""
        try:
            return self.review.rescore(class_id)
        except StoreUnavailable as e:
            log.warning("labels stored, kept segments of class %d not re-scored: %s", class_id, e)
            return None

    def close(self) -> None:
        self.bank.close()
        self.index.close()


async def get_runtime(request: Request) -> AsyncIterator[Runtime]:
    """The app's runtime, leased to the request; :class:`NotReady` (503) until it is loaded.

    ``async`` so that FastAPI calls it on the event loop: a plain function dependency would be run
    in the thread pool, a thread hop per request (loadtests/README.md)."""
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise NotReady("the model is not loaded yet")
    rt.leases += 1
    try:
        yield rt
    finally:
        rt.leases -= 1


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
"""A route parameter of this type receives the loaded :class:`Runtime` (503 before)."""
