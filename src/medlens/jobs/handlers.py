"""Job handlers: what an `interpret` or `followup` job does.

No FastAPI here: `medlens serve` runs these in its worker threads and `medlens worker`
processes run the very same functions. Results are written through the runner's
deferred writes (`ctx.save_interpretation`, `ctx.add_message`), which commit in the same
transaction that marks the job done, so a crash never leaves a half-written result.
Models are loaded once per process, lazily, by the first job that needs them.
"""

from __future__ import annotations

import itertools
from typing import Any

from medlens.config import Settings
from medlens.jobs.deliver import handle_deliver, queue_delivery
from medlens.models.session import default_session
from medlens.store.base import Job


def _options(settings: Settings, language: str) -> Any:
    from medlens.models.registry import load_registry
    from medlens.models.session import configured_ids
    from medlens.tasks.interpret.pipeline import InterpretOptions

    registry = load_registry(settings)
    gen_id, enc_id = configured_ids(settings)
    gen_rec = registry.resolve(gen_id) if gen_id in registry else None
    enc_rec = registry.resolve(enc_id) if enc_id in registry else None
    if gen_rec is None:
        return InterpretOptions(language=language, max_new_tokens=settings.max_new_tokens)
    return InterpretOptions.from_records(gen_rec, enc_rec, settings, language=language)


class _EventBridge:
    """medlens.tasks.streaming.Event → runner progress / live events; stops on cancel."""

    def __init__(self, ctx: Any, start: float, end: float) -> None:
        self.ctx, self.start, self.end = ctx, start, end
        self.fraction = start

    def __call__(self, ev: Any) -> None:
        if getattr(self.ctx, "cancelled", False):
            from medlens.jobs.runner import JobCancelled

            raise JobCancelled(getattr(self.ctx, "cancel_reason", None) or "cancelled")
        if ev.kind == "stage":
            if ev.progress is not None:
                self.fraction = self.start + (self.end - self.start) * float(ev.progress)
            self.ctx.progress(self.fraction, ev.stage or "working")
        elif ev.kind == "token" and ev.text:
            self.ctx.emit("token", {"text": ev.text})
        elif ev.kind == "warning":
            self.ctx.emit("warning", {"text": ev.text, "stage": ev.stage})


def _study_for_task(job: Job, ctx: Any) -> Any:
    """Rebuild the task-level Study from the pixels decoded at upload (no decode here)."""
    from dataclasses import replace

    from medlens.imaging.gate import GateDecision
    from medlens.jobs.intake import task_image
    from medlens.jobs.prior import declared_at, declared_views
    from medlens.tasks.interpret.study import Study, StudyContext, declared_view

    study = ctx.store.get_study(job.study_id)
    if study is None:
        return None
    ingested = [task_image(ctx.store.blobs, img) for img in study.images]
    c = study.context
    context = StudyContext(indication=c.get("indication"), age=c.get("age"), sex=c.get("sex"))
    task_study = Study.from_ingested(ingested, context=context, study_id=study.id)
    views = declared_views(c)  # the uploader's frontal/lateral, else ViewPosition's guess
    # Intake's model-free gate decision, so the gate stage runs only its encoder half.
    gated = [
        replace(
            item,
            view=declared_view(declared_at(views, img.position), item.ingested),
            pixel_gate=GateDecision.from_dict(img.metadata["pixel_gate"])
            if isinstance(img.metadata.get("pixel_gate"), dict)
            else item.pixel_gate,
        )
        for item, img in zip(task_study.images, study.images, strict=True)
    ]
    return replace(task_study, images=tuple(gated))


def study_language(job: Job, ctx: Any) -> str:
    study = ctx.store.get_study(job.study_id)
    lang = job.payload.get("language") or (study.context.get("language") if study else None)
    return str(lang or ctx.settings.language)


def _library(settings: Settings) -> Any:
    """The case library for similar cases, when one has been built (else None)."""
    try:
        from medlens.models.session import configured_id
        from medlens.tasks.retrieval.library import CaseLibrary

        lib = CaseLibrary.open(settings, encoder_id=configured_id(settings, "encoder"))
    except Exception:
        return None
    try:
        if lib.size() == 0:
            lib.close()
            return None
    except Exception:
        return None
    return lib


def handle_interpret(job: Job, ctx: Any) -> dict[str, Any]:
    from medlens.tasks.interpret.pipeline import interpret

    ctx.progress(0.02, "Reading images")
    study = _study_for_task(job, ctx)
    if study is None:
        return {"skipped": "study deleted"}
    from dataclasses import replace

    from medlens.jobs.prior import with_task_prior

    study, ground = with_task_prior(ctx.store, study)  # prior images/report, ground flag
    ctx.progress(0.06, "Loading models (the first run takes longer)")
    session = default_session()
    generator = session.generator(settings=ctx.settings)
    encoder = session.encoder(settings=ctx.settings)
    options = replace(
        _options(ctx.settings, study_language(job, ctx)),
        ground=ground,
        compare=study.prior is not None,  # a prior study, report or date was named
    )
    library = _library(ctx.settings)
    try:
        interpretation = interpret(
            study,
            options,
            generator=generator,
            encoder=encoder,
            library=library,
            on_event=_EventBridge(ctx, 0.1, 0.98),
        )
    finally:
        if library is not None:
            library.close()
    ctx.save_interpretation(interpretation)
    queue_delivery(ctx.store, ctx.settings, interpretation.study_id)  # integrated studies only
    ctx.progress(1.0, "Done")
    urgency = interpretation.urgency
    return {"status": interpretation.status, "urgency": urgency.level if urgency else None}


def handle_followup(job: Job, ctx: Any) -> dict[str, Any]:
    from medlens.tasks.interpret.conversation import Conversation, Turn

    ctx.progress(0.05, "Reading the study")
    study = _study_for_task(job, ctx)
    interp = ctx.store.get_interpretation(job.study_id) if study is not None else None
    if study is None or interp is None:
        return {"skipped": "study deleted"}
    messages = ctx.store.list_messages(study.study_id)
    seq = int(job.payload.get("question_seq", -1))
    question = next((m.content for m in messages if m.seq == seq and m.role == "user"), None)
    if question is None:
        return {"skipped": "question not found"}
    ctx.progress(0.15, "Loading models")
    generator = default_session().generator(settings=ctx.settings)
    conv = Conversation.start(study, interp, _options(ctx.settings, study_language(job, ctx)))
    # Earlier answered turns, in order (an unanswered question is skipped).
    earlier = [m for m in messages if m.seq < seq]
    for q, a in itertools.pairwise(earlier):
        if q.role == "user" and a.role == "assistant":
            conv.turns.append(Turn(q.content, a.content))
    ctx.progress(0.3, "Answering")
    turn = conv.ask(generator, question, on_event=_EventBridge(ctx, 0.3, 0.98))
    ctx.add_message("assistant", turn.answer)
    ctx.progress(1.0, "Done")
    return {"answer": turn.answer, "question_seq": seq}


HANDLERS = {"interpret": handle_interpret, "followup": handle_followup, "deliver": handle_deliver}
