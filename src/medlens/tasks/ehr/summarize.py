"""Summarise long clinical records with the text model, hierarchically.

A record that fits the model's context is summarised in one call. A longer one is cut
into chunks on line boundaries (each within `chunk_tokens` by the model's own
tokenizer), each chunk is summarised, and the partial summaries are merged, again in
chunks, until one summary remains (map-reduce; depth-capped). The record text is
untrusted: it sits only in the prompt's data section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from medlens.errors import DataError
from medlens.tasks.streaming import Event, EventCallback, emit

if TYPE_CHECKING:
    from medlens.models.protocols import Generator

MAX_DEPTH = 6
PROMPT_OVERHEAD = 300  # tokens of instructions and chat markup around a chunk


@dataclass
class SummaryResult:
    summary: str
    calls: int = 0
    levels: int = 0
    chunks_per_level: list[int] = field(default_factory=list)
    input_tokens: int = 0
    prompts: list[str] = field(default_factory=list)  # prompt name@version used


def chunk_text(text: str, chunk_tokens: int, count) -> list[str]:
    """Lines grouped into chunks of at most chunk_tokens (a longer line is split on words)."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines():
        pieces = [line]
        if count(line) > chunk_tokens:
            words, pieces, buf = line.split(), [], []
            for w in words:
                buf.append(w)
                if count(" ".join(buf)) > chunk_tokens and len(buf) > 1:
                    buf.pop()
                    pieces.append(" ".join(buf))
                    buf = [w]
            if buf:
                pieces.append(" ".join(buf))
        for piece in pieces:
            n = count(piece) + 1
            if current and size + n > chunk_tokens:
                chunks.append("\n".join(current))
                current, size = [], 0
            current.append(piece)
            size += n
    if current:
        chunks.append("\n".join(current))
    return [c for c in chunks if c.strip()]


def _ask(
    generator: Generator, prompt_name: str, text: str, prompt_format: str, max_new_tokens: int
) -> str:
    from medlens.models.protocols import GenerationConfig
    from medlens.models.thinking import strip_thinking
    from medlens.tasks.prompting import TEXT_FORMATS, build_messages, load_prompt

    template = load_prompt(prompt_name)
    # Text-only requests: a system turn is fine for every supported format except 1.5's.
    fmt = prompt_format if prompt_format in ("medgemma-v1", *TEXT_FORMATS) else "medgemma-v1"
    messages = build_messages(template, prompt_format=fmt, data={"record": text})
    out = "".join(generator.stream(messages, GenerationConfig(max_new_tokens=max_new_tokens)))
    return strip_thinking(out).strip()


def summarize_text(
    generator: Generator,
    text: str,
    *,
    context_length: int = 8192,
    max_new_tokens: int = 400,
    prompt_format: str = "medgemma-text",
    chunk_tokens: int | None = None,
    on_event: EventCallback | None = None,
) -> SummaryResult:
    """One summary of `text`, however long (see module docstring)."""
    if not text or not text.strip():
        raise DataError("Nothing to summarise: the record is empty.")
    count = generator.count_tokens
    limit = chunk_tokens or max(128, context_length - max_new_tokens - PROMPT_OVERHEAD)
    result = SummaryResult(summary="", input_tokens=count(text))
    prompt = "summarize-chunk"
    current = text
    for level in range(MAX_DEPTH):
        chunks = chunk_text(current, limit, count)
        result.levels = level + 1
        result.chunks_per_level.append(len(chunks))
        emit(
            on_event,
            Event("stage", stage=f"summarise level {level + 1}", data={"chunks": len(chunks)}),
        )
        outs = []
        for chunk in chunks:
            outs.append(_ask(generator, prompt, chunk, prompt_format, max_new_tokens))
            result.calls += 1
        result.prompts.append(prompt)
        if len(outs) == 1:
            result.summary = outs[0]
            return result
        merged = "\n\n".join(outs)
        if count(merged) >= count(current):
            # The summaries are not shrinking (a weak model): stop, keep what we have.
            result.summary = merged
            return result
        current, prompt = merged, "summarize-merge"
    result.summary = current
    return result


def read_record(path: str | Path) -> tuple[str, str]:
    """(kind, text) of a FHIR bundle (→ its full patient context) or a notes text file."""
    from medlens.tasks.ehr.fhir_facts import load_bundle
    from medlens.tasks.ehr.patient_context import patient_context

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file.")
    head = p.read_bytes()[:2048].lstrip()
    if head.startswith(b"{"):
        bundle = load_bundle(p)
        ctx = patient_context(bundle, budget_tokens=100_000)
        notes = bundle_notes(bundle)
        return "fhir", ctx.text + ("\n\nNotes:\n" + "\n".join(notes) if notes else "")
    try:
        return "notes", p.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{p.name}: not UTF-8 text or a FHIR JSON bundle.") from exc


def bundle_notes(bundle: dict) -> list[str]:
    """Free-text notes carried in a bundle (DocumentReference / DiagnosticReport text)."""
    import base64
    import binascii

    notes = []
    for entry in bundle.get("entry") or []:
        res = (entry or {}).get("resource") or {}
        attachments = []
        if res.get("resourceType") == "DocumentReference":
            attachments = [c.get("attachment") or {} for c in res.get("content") or []]
        elif res.get("resourceType") == "DiagnosticReport":
            attachments = res.get("presentedForm") or []
        for att in attachments:
            if str(att.get("contentType", "")).startswith("text/") and att.get("data"):
                try:
                    notes.append(base64.b64decode(att["data"]).decode("utf-8", "replace"))
                except (binascii.Error, ValueError):
                    continue
    return notes
