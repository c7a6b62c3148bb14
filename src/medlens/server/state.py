"""What the app holds for its lifetime (on `app.state.medlens`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medlens.config import Settings
from medlens.server.metrics import Metrics
from medlens.server.ratelimit import RateLimiter
from medlens.server.security import Sessions


@dataclass
class ServerState:
    settings: Settings
    store: Any  # medlens.store.base.Store (+ .blobs)
    sessions: Sessions
    limiter: RateLimiter
    metrics: Metrics
    bus: Any = None  # medlens.jobs.events.EventBus
    runner: Any = None  # medlens.jobs.JobRunner
    extra: dict[str, Any] = field(default_factory=dict)

    def wake_runner(self) -> None:
        if self.runner is not None and hasattr(self.runner, "wake"):
            self.runner.wake()
