"""What a job handler receives besides the job: progress, events, deferred writes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from medlens.jobs import estimates
from medlens.jobs.events import EventBus
from medlens.store.base import Job

if TYPE_CHECKING:
    from medlens.tasks.interpret.result import Interpretation

log = logging.getLogger(__name__)


class JobContext:
    """Handed to a handler with its job.

    - `progress(fraction, stage)` (alias `report_progress`): persisted and published.
    - `emit(event, data)`: live-only events (e.g. "token" {"text": ...}) for SSE.
    - `cancelled`: True when the lease was lost, the job/study was deleted, or the
      runner is stopping; long handlers should check it between steps and return.
    - `save_interpretation(interp)` / `add_message(role, content)`: deferred writes that
      the runner commits in the SAME transaction that marks the job done.
    """

    def __init__(
        self,
        job: Job,
        *,
        store: Any,
        worker_id: str,
        events: EventBus | None = None,
        settings: Any = None,
    ) -> None:
        self.job = job
        self.store = store
        self.settings = settings
        self.worker_id = worker_id
        self.events = events
        self._cancel = threading.Event()
        self.cancel_reason: str | None = None
        self.interpretation: Interpretation | None = None
        self.messages: list[tuple[str, str]] = []
        self.timer = estimates.StageTimer()  # stage durations, for later jobs' estimates

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self, reason: str) -> None:
        if not self._cancel.is_set():
            self.cancel_reason = reason
            self._cancel.set()

    def wait_cancelled(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, waking early (True) when cancelled."""
        return self._cancel.wait(timeout)

    def report_progress(self, progress: float, stage: str) -> None:
        ok = self.store.update_job(
            self.job.id, progress=progress, stage=stage, worker_id=self.worker_id
        )
        if not ok:
            self.cancel("lease lost or job deleted")
        self.timer.mark(stage)
        data_path = getattr(self.settings, "data_path", None)
        if progress >= 1.0 and ok and data_path is not None:  # finished: its timings count
            estimates.record(data_path, self.timer.finish())
        data = {"progress": max(0.0, min(1.0, float(progress))), "stage": stage}
        self.emit("progress", {**data, **estimates.progress_fields(self.settings, stage)})

    progress = report_progress

    def emit(self, event: str, data: dict[str, Any] | None = None) -> None:
        if self.events is not None:
            self.events.publish(self.job.id, event, data)

    def save_interpretation(self, interp: Interpretation) -> None:
        self.interpretation = interp

    def add_message(self, role: str, content: str) -> None:
        self.messages.append((role, content))


Handler = Callable[[Job, JobContext], "dict[str, Any] | None"]
