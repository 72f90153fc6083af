"""What the lifespan builds and the routes use: settings, bundle, scorer, stores, metrics.

Routes take the runtime as a parameter typed :data:`RuntimeDep`: FastAPI hands them
``app.state.runtime``, or answers 503 ``not_ready`` while the model is not loaded.
"""

from __future__ import annotations

import logging
import threading
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


async def get_runtime(request: Request) -> Runtime:
    """The app's runtime; :class:`NotReady` (503) until the lifespan has loaded it.

    ``async`` so that FastAPI calls it on the event loop: a plain function dependency would be run
    in the thread pool, a thread hop per request (loadtests/README.md)."""
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise NotReady("the model is not loaded yet")
    return rt


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
"""A route parameter of this type receives the loaded :class:`Runtime` (503 before)."""
