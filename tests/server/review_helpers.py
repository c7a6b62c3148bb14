"""Shared set-up for the review tests: real users with tokens, a study with an AI draft
(stored directly: no model runs), and bearer headers per user."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from medlens.store.base import NewImage
from medlens.store.users import hash_password, new_token
from medlens.tasks.interpret.result import (
    Assertion,
    CrossCheck,
    FindingScore,
    ImageFindingScores,
    Interpretation,
    ModelProvenance,
    Provenance,
    ReportSections,
    Urgency,
)

PASSWORD = "correct horse battery staple"


@dataclass
class User:
    id: str
    name: str
    headers: dict[str, str]


def make_user(store: Any, name: str, role: str, groups: tuple[str, ...]) -> User:
    user = store.create_user(name, role, list(groups), hash_password(PASSWORD))
    token, sha, prefix = new_token()
    store.add_token(user.id, sha, prefix)
    return User(user.id, name, {"Authorization": f"Bearer {token}"})


def interpretation(study_id: str, urgency: str = "priority", findings: str | None = None
                   ) -> Interpretation:
    gen = ModelProvenance(model_id="google/medgemma-4b-it", backend="transformers",
                          source="hf", revision="rev42", weights_hash="w", dtype="bf16",
                          device="cpu")
    return Interpretation(
        study_id=study_id, status="complete",
        report=ReportSections(
            findings=findings or "Small right pleural effusion. Heart size normal.",
            impression="Right pleural effusion.", raw_text="...", parse_quality="structured"),
        finding_scores=[ImageFindingScores(image_index=0, label_set="cxr", scores=[
            FindingScore(label="Pleural Effusion", probability=0.81),
            FindingScore(label="Cardiomegaly", probability=0.12)])],
        cross_check=CrossCheck(checked=True, assertions=[
            Assertion(label="Pleural Effusion", status="positive", laterality="right")]),
        urgency=Urgency(level=urgency),
        provenance=Provenance(medlens_version="0.9.0", created_at="2026-11-28T05:00:00+00:00",
                              generator=gen))


def make_study(store: Any, payload: bytes, owner: User | None, group: str | None,
               urgency: str = "priority", *, with_draft: bool = True) -> str:
    sha = hashlib.sha256(payload).hexdigest()
    image = NewImage(sha256=sha, pixel_sha256=f"px{sha[:8]}", format="png",
                     filename="image 1", data=payload)
    study, _ = store.create_study([image], {"indication": "cough"})
    if owner is not None:
        store.set_study_owner(study.id, owner.id, group)
    if with_draft:
        store.save_interpretation(study.id, "job", interpretation(study.id, urgency))
    return study.id
