"""OpenAI-compatible `POST /v1/chat/completions` (text + image_url data URLs, streaming)."""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from medlens.errors import MedLensError
from medlens.models.session import configured_id, default_session
from medlens.server.deps import api_actor, audit, get_state
from medlens.server.inference import InferenceQueue, Ticket, inference_queue
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
    queue = inference_queue(state)
    ticket = queue.admit()  # a full queue answers 429 now, before any work
    try:
        await run_in_threadpool(audit, state, actor, "chat", detail={"stream": req.stream})
    except BaseException:
        ticket.release()
        raise
    if not req.stream:

        def work() -> ChatCompletion:
            gen = default_session().generator(settings=settings)
            return chat.run(chat.prepare(req, gen, settings), gen)

        # Waits on the inference threads as a future, holding no thread of the shared pool;
        # the place is given back when the work ends (or is cancelled before it starts).
        future = queue.submit(work)
        future.add_done_callback(ticket.release)
        body = await asyncio.wrap_future(future)
        return JSONResponse(body.model_dump(mode="json"))

    # Validate, decode and load before the 200 goes out, so errors still get a proper
    # status; the stream then runs from these very inputs.
    def prepare() -> tuple[Any, chat.PreparedChat]:
        gen = default_session().generator(settings=settings)
        return gen, chat.prepare(req, gen, settings)

    try:
        generator, prepared = await queue.run(prepare)
    except BaseException:
        ticket.release()
        raise
    body_iter = _sse(prepared, generator, queue, ticket)
    weakref.finalize(body_iter, ticket.release)  # a stream never started gives it back too
    return StreamingResponse(
        body_iter,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(
    prepared: chat.PreparedChat, generator: Any, queue: InferenceQueue, ticket: Ticket
) -> AsyncIterator[bytes]:
    """Run the blocking generator on an inference thread; hand chunks to the event loop
    via a queue."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[Any] = asyncio.Queue(maxsize=256)
    stop = threading.Event()
    end = object()

    def put(item: Any) -> None:
        asyncio.run_coroutine_threadsafe(chunks.put(item), loop).result()

    def produce() -> None:
        try:
            for item in chat.stream_chunks(prepared, generator):
                if stop.is_set():
                    return
                put(item)
        except Exception as err:
            put(err)
        finally:
            put(end)

    try:
        future = queue.submit(produce)
    except BaseException:
        ticket.release()
        raise
    future.add_done_callback(ticket.release)
    try:
        while True:
            item = await chunks.get()
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
        if future.cancel():  # never started (client gone while it waited): nothing to drain
            ticket.release()
        while not chunks.empty():  # unblock a producer waiting on a full queue
            chunks.get_nowait()
