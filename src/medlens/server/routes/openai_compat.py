"""OpenAI-compatible `POST /v1/chat/completions` (text + image_url data URLs, streaming)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from medlens.errors import MedLensError
from medlens.models.session import configured_id, default_session
from medlens.server.deps import api_actor, audit, get_state
from medlens.server.openai_shapes import (
    ChatCompletion,
    ChatCompletionRequest,
    ModelCard,
    ModelList,
    error_body,
)
from medlens.server.security import Actor
from medlens.server.services import chat
from medlens.server.state import ServerState

router = APIRouter(prefix="/v1", tags=["openai"])


def _semaphore(state: ServerState) -> threading.BoundedSemaphore:
    sem = state.extra.get("chat_semaphore")
    if sem is None:
        sem = state.extra["chat_semaphore"] = threading.BoundedSemaphore(state.settings.workers)
    return sem


@router.get("/models")
async def list_models(
    actor: Annotated[Actor, Depends(api_actor)], state: Annotated[ServerState, Depends(get_state)]
) -> ModelList:
    """OpenAI-compatible model list: the generator this server answers with."""
    generator = await run_in_threadpool(configured_id, state.settings, "generator")
    return ModelList(data=[ModelCard(id=generator)])


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def chat_completions(
    req: ChatCompletionRequest,
    actor: Annotated[Actor, Depends(api_actor)],
    state: Annotated[ServerState, Depends(get_state)],
) -> Any:
    """Chat with the configured generator (MedGemma). The response carries MedLens's
    `disclaimer` field; every answer is an AI draft that a clinician must review."""
    settings = state.settings
    sem = _semaphore(state)
    await run_in_threadpool(audit, state, actor, "chat", detail={"stream": req.stream})
    if not req.stream:

        def work() -> ChatCompletion:
            with sem:
                gen = default_session().generator(settings=settings)
                return chat.run(chat.prepare(req, gen, settings), gen)

        body = await run_in_threadpool(work)
        return JSONResponse(body.model_dump(mode="json"))

    # Validate, decode and load before the 200 goes out, so errors still get a proper
    # status; the stream then runs from these very inputs.
    def prepare() -> tuple[Any, chat.PreparedChat]:
        gen = default_session().generator(settings=settings)
        return gen, chat.prepare(req, gen, settings)

    generator, prepared = await run_in_threadpool(prepare)
    return StreamingResponse(
        _sse(prepared, generator, sem),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(
    prepared: chat.PreparedChat, generator: Any, sem: threading.BoundedSemaphore
) -> AsyncIterator[bytes]:
    """Run the blocking generator in a thread; hand chunks to the event loop via a queue."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=256)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            with sem:
                for item in chat.stream_chunks(prepared, generator):
                    if stop.is_set():
                        return
                    asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
        except MedLensError as err:
            asyncio.run_coroutine_threadsafe(queue.put(err), loop).result()
        except Exception as err:
            asyncio.run_coroutine_threadsafe(queue.put(err), loop).result()
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(end), loop).result()

    thread = threading.Thread(target=produce, name="medlens-chat", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is end:
                break
            if isinstance(item, Exception):
                message = item.message if isinstance(item, MedLensError) else "generation failed"
                err = error_body(message, getattr(item, "code", "internal_error"))
                yield f"data: {json.dumps(err)}\n\n".encode()
                break
            yield f"data: {item.model_dump_json()}\n\n".encode()
        yield b"data: [DONE]\n\n"
    finally:
        stop.set()
        while not queue.empty():  # unblock a producer waiting on a full queue
            queue.get_nowait()
