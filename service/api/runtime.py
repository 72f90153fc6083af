"""What the lifespan builds and the routes use: settings, bundle, scorer, stores, metrics."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from service.api.metrics import Metrics
from service.bundle import Bundle
from service.config import Settings
from service.scorer import Scorer
from service.stores.base import BankStore, IndexStore


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

    def close(self) -> None:
        self.bank.close()
        self.index.close()
