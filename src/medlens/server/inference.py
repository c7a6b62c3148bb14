"""Chat inference on its own bounded queue, off the shared thread pool.

The probe found `/v1/chat/completions` waiting on a semaphore *inside* the shared thread
pool with no cap on the line: 50 waiting chats held 50 of its threads, and a plain
`GET /v1/studies` took 17.6 s. Chats now run in a dedicated executor (`workers` threads)
and wait for it as plain asyncio futures, which hold no thread; at most
`workers + inference_queue_depth` chats are admitted at once and the next one is refused
at once with 429 (OpenAI's error shape: `rate_limit_error`). Jobs have their own runner
threads (jobs/runner.py) and never enter this queue.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from medlens.errors import MedLensError

T = TypeVar("T")


class InferenceBusy(MedLensError):
    http_status = 429
    code = "inference_queue_full"


class Ticket:
    """One admitted request's place in the queue; released exactly once."""

    def __init__(self, queue: InferenceQueue) -> None:
        self._queue = queue
        self._released = False
        self._lock = threading.Lock()

    def release(self, *_: Any) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._queue._leave()


class InferenceQueue:
    def __init__(self, workers: int, depth: int) -> None:
        self.workers = max(1, workers)
        self.depth = max(0, depth)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="medlens-infer")
        self._lock = threading.Lock()
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Requests running or waiting now."""
        with self._lock:
            return self._admitted

    def admit(self) -> Ticket:
        """A place in the queue, or InferenceBusy (429) at once when it is full."""
        with self._lock:
            if self._admitted >= self.workers + self.depth:
                raise InferenceBusy(
                    f"The model is busy: {self._admitted} chat requests are running or "
                    "waiting, the most this server queues. Retry in a moment."
                )
            self._admitted += 1
        return Ticket(self)

    def _leave(self) -> None:
        with self._lock:
            self._admitted -= 1

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        return self._executor.submit(fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on an inference thread; the caller waits without holding a thread."""
        return await asyncio.wrap_future(self._executor.submit(fn, *args))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def inference_queue(state: Any) -> InferenceQueue:
    """The app's one queue (made on first use, from the settings)."""
    queue = state.extra.get("inference_queue")
    if queue is None:
        with _make_lock:
            queue = state.extra.get("inference_queue")
            if queue is None:
                settings = state.settings
                queue = InferenceQueue(settings.workers, settings.inference_queue_depth)
                state.extra["inference_queue"] = queue
    return queue


_make_lock = threading.Lock()
