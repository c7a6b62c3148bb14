"""Provenance of an interpretation: models, prompt, inputs, timings, version."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from medlens.errors import MedLensError
from medlens.shapes import from_attributes
from medlens.tasks.interpret.result import (
    GenerationSummary,
    InputImage,
    ModelProvenance,
    PromptRef,
    Provenance,
    SimilarCase,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from medlens.models.protocols import BackendInfo, Encoder, GenerationStats, Generator
    from medlens.tasks.interpret.study import Study
    from medlens.tasks.prompting import PromptTemplate


def model_provenance(info: BackendInfo) -> ModelProvenance:
    return from_attributes(ModelProvenance, info)


def prompt_ref(template: PromptTemplate, custom: str | None, prompt_format: str) -> PromptRef:
    if custom:
        # A user-typed prompt is recorded by content hash (it has no file version).
        digest = hashlib.sha256(custom.encode()).hexdigest()[:12]
        return PromptRef(
            name=f"custom (base {template.ref})", version=digest, prompt_format=prompt_format
        )
    name = template.name if not template.system_ref else f"{template.name}+{template.system_ref}"
    return PromptRef(name=name, version=template.version, prompt_format=prompt_format)


def build(
    study: Study,
    generator: Generator,
    encoder: Encoder | None,
    template: tuple[PromptTemplate, str | None] | None,
    timings: dict[str, float],
    stats: GenerationStats | None,
    test_model: bool,
    prompt_format: str = "",
    used: Sequence[int] = (),
) -> Provenance:
    import medlens

    inputs = [
        from_attributes(InputImage, img.ingested, image_index=n)
        for n, img in enumerate(study.images)
    ]
    gen = None
    if stats is not None:
        gen = from_attributes(GenerationSummary, stats)
        timings = {**timings, **{f"generator.{k}": round(v, 6) for k, v in stats.timings.items()}}
    timings = {**timings, "total": round(sum(v for k, v in timings.items() if "." not in k), 6)}
    return Provenance(
        medlens_version=medlens.__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        generator=model_provenance(generator.info),
        encoder=model_provenance(encoder.info) if encoder is not None else None,
        prompt=prompt_ref(template[0], template[1], prompt_format) if template else None,
        inputs=inputs,
        timings=timings,
        generation=gen,
        test_model=test_model,
    )


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return None


def similar_cases(
    library: Any, embedding: Any, k: int, warnings: list[str]
) -> list[SimilarCase] | None:
    """Nearest cases from a case library (H-retrieval's CaseLibrary.search_image)."""
    try:
        hits = library.search_image(embedding, k)
    except MedLensError as err:
        warnings.append(f"Similar cases unavailable: {err}")
        return None
    out = []
    for hit in hits:
        labels = _get(hit, "labels") or []
        if isinstance(labels, dict):
            labels = [k for k, v in labels.items() if v]
        out.append(
            SimilarCase(
                case_id=str(_get(hit, "case_id", "id")),
                score=float(_get(hit, "score", "similarity") or 0.0),
                labels=[str(x) for x in labels],
                summary=_get(hit, "summary", "report"),
                thumbnail=_get(hit, "thumbnail"),
                library=str(_get(hit, "library") or ""),
            )
        )
    return out
