"""One event stream for long tasks, shared by the CLI (rich) and the server (SSE).

`interpret(..., on_event=cb)` calls `cb(Event)` as it works; `stream_events(fn, ...)`
turns any such function into an iterator of Events (the work runs in a thread) whose
last event is `result` (carrying the return value) or `error`. Closing the iterator early
cancels the work at the next event.

Event kinds: "stage" (a stage starts: name + fraction done), "token" (answer text as it is
generated, thinking already removed), "warning", "result", "error".
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["stage", "token", "warning", "result", "error"]
EventCallback = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    stage: str = ""
    text: str = ""
    progress: float | None = None  # 0..1 of the whole task, when known
    result: Any = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for SSE); a result is serialised via its to_json when present."""
        out: dict[str, Any] = {"kind": self.kind, "stage": self.stage, "text": self.text}
        if self.progress is not None:
            out["progress"] = round(self.progress, 4)
        if self.data:
            out["data"] = self.data
        if self.result is not None and hasattr(self.result, "model_dump"):
            out["result"] = self.result.model_dump(mode="json")
        return out


class Cancelled(Exception):
    """Raised inside the worker when the consumer stopped listening."""


def emit(on_event: EventCallback | None, event: Event) -> None:
    if on_event is not None:
        on_event(event)


def stream_events(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Event]:
    """Run `fn(*args, on_event=..., **kwargs)` in a thread; yield its events, then a
    `result` event. An exception in `fn` is yielded as an `error` event and re-raised."""
    q: queue.Queue[Event | None] = queue.Queue(maxsize=1024)
    cancel = threading.Event()
    box: dict[str, Any] = {}

    def on_event(ev: Event) -> None:
        if cancel.is_set():
            raise Cancelled("consumer stopped listening")
        q.put(ev)

    def work() -> None:
        try:
            box["result"] = fn(*args, on_event=on_event, **kwargs)
        except BaseException as exc:  # handed to the consumer thread below
            box["error"] = exc
        finally:
            q.put(None)

    thread = threading.Thread(target=work, name="medlens-task", daemon=True)
    thread.start()
    try:
        while True:
            ev = q.get()
            if ev is None:
                break
            yield ev
    finally:
        cancel.set()
        # Drain so a blocked producer can finish (it raises Cancelled at its next event).
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.1)
        thread.join()
    if "error" in box:
        exc = box["error"]
        if not isinstance(exc, Cancelled):
            yield Event("error", text=str(exc), data={"type": type(exc).__name__})
            raise exc
        return
    yield Event("result", progress=1.0, result=box.get("result"))
