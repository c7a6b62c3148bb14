"""Radiologist review: the AI draft as structured content, versions, sign-off, addenda,
the diff of AI draft vs final, and the worklist. Synchronous (called in a threadpool).

Only role "radiologist" may write; everyone who can see a study can read its review.
The store keeps everything append-only (store/review_sql.py); this layer shapes it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from medlens.errors import MedLensError
from medlens.server.schemas_review import (
    AddendumOut,
    AiFinding,
    DiffOp,
    DiffOut,
    FindingReviewIn,
    ReportContent,
    ReportIn,
    ReportVersionOut,
    ReviewOut,
    SectionDiff,
    SignatureOut,
)
from medlens.server.security import Actor
from medlens.server.state import ServerState
from medlens.shapes import from_attributes
from medlens.store.base import Study
from medlens.store.review import ReportVersion
from medlens.tasks.interpret.result import Interpretation
from medlens.tasks.interpret.signoff import AddendumText, FindingReview, SignedReport

REVIEWER_ROLE = "radiologist"
MAX_AI_FINDINGS = 24
URGENCY_RANK = {"urgent": 0, "priority": 1, "routine": 2}
_SECTIONS = ("findings", "impression")


class ReviewForbidden(MedLensError, code="forbidden", http_status=403):
    """The caller may see the study but not edit or sign its report."""


class NoReport(MedLensError, code="not_ready", http_status=409):
    """No AI draft to review (not ready yet, or the images were refused)."""


def can_review(actor: Actor) -> bool:
    return actor.role == REVIEWER_ROLE


def require_reviewer(actor: Actor) -> None:
    if not can_review(actor):
        raise ReviewForbidden("Only a radiologist may edit, sign or amend a report.")


def reviewable(state: ServerState, study: Study) -> Interpretation:
    interp = state.store.get_interpretation(study.id)
    if interp is None:
        raise NoReport("The AI draft is not ready yet; review it when it has finished.")
    if interp.status != "complete" or interp.report is None:
        raise NoReport("This study has no draft report (its images were refused).")
    return interp


def ai_findings(interp: Interpretation) -> list[AiFinding]:
    """What the AI asserted, for per-finding agree/disagree: the labels its report states
    (positive or uncertain), then the scored labels, most likely first."""
    found: dict[str, list[str]] = {}
    if interp.cross_check is not None:
        for a in interp.cross_check.assertions:
            if a.status != "negative":
                found.setdefault(a.label, []).append(f"report: {a.status}")
    scores: dict[str, float] = {}
    for block in interp.finding_scores:
        for s in block.scores:
            scores[s.label] = max(scores.get(s.label, 0.0), s.probability)
    for label, p in sorted(scores.items(), key=lambda kv: -kv[1]):
        found.setdefault(label, []).append(f"score {p:.2f}")
    return [AiFinding(label=k, source=", ".join(v)) for k, v in found.items()][:MAX_AI_FINDINGS]


def draft_content(interp: Interpretation) -> ReportContent:
    report = interp.report
    findings = (report.findings or "") if report else ""
    if report is not None and not report.findings and not report.impression:
        findings = report.raw_text  # unstructured: the whole text is the findings
    return ReportContent(
        findings=findings,
        impression=(report.impression or "") if report else "",
        finding_reviews=[FindingReviewIn(label=f.label, comment="") for f in ai_findings(interp)],
    )


def _status(versions: list[Any], signature: Any, addenda: list[Any]) -> str:
    if signature is None:
        return "in_review" if versions else "draft"
    return "amended" if addenda else "signed"


def review_out(state: ServerState, study: Study, actor: Actor) -> ReviewOut:
    interp = reviewable(state, study)
    versions = state.store.list_report_versions(study.id)
    signature = state.store.get_report_signature(study.id)
    addenda = state.store.list_report_addenda(study.id)
    draft = draft_content(interp)
    outs = [from_attributes(ReportVersionOut, v) for v in versions]
    return ReviewOut(
        study_id=study.id,
        status=_status(versions, signature, addenda),  # type: ignore[arg-type]
        ai_draft=draft,
        ai_findings=ai_findings(interp),
        versions=outs,
        current=outs[-1].content if outs else draft,
        signature=from_attributes(SignatureOut, signature) if signature else None,
        addenda=[from_attributes(AddendumOut, a) for a in addenda],
        can_edit=can_review(actor),
    )


def save_version(state: ServerState, study: Study, actor: Actor, body: ReportIn) -> Any:
    require_reviewer(actor)
    reviewable(state, study)
    content = ReportContent(
        findings=body.findings.strip(),
        impression=body.impression.strip(),
        finding_reviews=body.finding_reviews,
    ).model_dump(mode="json")
    return state.store.add_report_version(
        study.id,
        content,
        author_id=actor.user_id,
        author_name=actor.name,
        base_version=body.base_version,
    )


def sign(state: ServerState, study: Study, actor: Actor, version: int | None) -> Any:
    require_reviewer(actor)
    reviewable(state, study)
    return state.store.sign_report(
        study.id, signer_id=actor.user_id, signer_name=actor.name, version=version
    )


def add_addendum(state: ServerState, study: Study, actor: Actor, text: str) -> Any:
    require_reviewer(actor)
    return state.store.add_report_addendum(
        study.id, text.strip(), author_id=actor.user_id, author_name=actor.name
    )


def signed_report(state: ServerState, study_id: str) -> SignedReport | None:
    """The signed report for the exports (FHIR final/appended, PDF), or None if unsigned."""
    signature = state.store.get_report_signature(study_id)
    if signature is None:
        return None
    version = next(
        v for v in state.store.list_report_versions(study_id) if v.version == signature.version
    )
    content = ReportContent.model_validate(version.content)
    addenda = tuple(
        AddendumText(a.seq, a.text, a.author_name, a.created_at, a.sha256)
        for a in state.store.list_report_addenda(study_id)
    )
    return SignedReport(
        findings=content.findings,
        impression=content.impression,
        version=signature.version,
        signer_id=signature.signer_id,
        signer_name=signature.signer_name,
        signed_at=signature.signed_at,
        sha256=signature.sha256,
        finding_reviews=tuple(
            FindingReview(r.label, r.verdict, r.comment) for r in content.finding_reviews
        ),
        addenda=addenda,
    )


# A word with its trailing whitespace: spaces never match on their own, so a replaced
# phrase reads as one deletion and one insertion, not interleaved fragments.
_TOKEN = re.compile(r"\S+\s*|\s+")


def word_diff(before: str, after: str) -> list[DiffOp]:
    """Word-level diff; the ops re-join exactly to `before` (equal + delete) and `after`."""
    a, b = _TOKEN.findall(before), _TOKEN.findall(after)
    ops: list[DiffOp] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("delete", "replace"):
            ops.append(DiffOp(op="delete", text="".join(a[i1:i2])))
        if tag in ("insert", "replace"):
            ops.append(DiffOp(op="insert", text="".join(b[j1:j2])))
        if tag == "equal":
            ops.append(DiffOp(op="equal", text="".join(a[i1:i2])))
    return ops


def _as_text(content: ReportContent) -> list[str]:
    return [f"Findings: {content.findings}", f"Impression: {content.impression}"]


def diff_out(state: ServerState, study: Study) -> DiffOut:
    """AI draft vs the latest version (the signed one once signed)."""
    interp = reviewable(state, study)
    draft = draft_content(interp)
    versions = state.store.list_report_versions(study.id)
    final = ReportContent.model_validate(versions[-1].content) if versions else draft
    sections = []
    for name in _SECTIONS:
        ops = word_diff(getattr(draft, name), getattr(final, name))
        sections.append(
            SectionDiff(section=name, changed=any(o.op != "equal" for o in ops), ops=ops)
        )
    unified = "\n".join(
        difflib.unified_diff(
            _as_text(draft), _as_text(final), "ai-draft", "final", lineterm="", n=1
        )
    )
    return DiffOut(
        study_id=study.id,
        version=versions[-1].version if versions else None,
        sections=sections,
        unified=unified,
    )


@dataclass(frozen=True)
class WorklistRow:
    study: Study
    urgency: str | None
    status: str  # draft | in_review
    last: ReportVersion | None


def worklist(state: ServerState, candidates: list[Study]) -> list[WorklistRow]:
    """Unsigned studies with a draft to review: most urgent first, then the oldest."""
    signed = state.store.signed_study_ids([s.id for s in candidates])
    rows = []
    for study in candidates:
        if study.id in signed:
            continue
        interp = state.store.get_interpretation(study.id)
        if interp is None or interp.status != "complete" or interp.report is None:
            continue
        level = interp.urgency.level if interp.urgency is not None else None
        versions = state.store.list_report_versions(study.id)
        status = "in_review" if versions else "draft"
        rows.append(WorklistRow(study, level, status, versions[-1] if versions else None))
    rows.sort(key=lambda r: (URGENCY_RANK.get(r.urgency or "", 3), r.study.created_at))
    return rows


def page_context(
    state: ServerState, actor: Actor, study: Study, interp: Interpretation | None
) -> dict[str, Any] | None:
    """What the study page's review panel shows (None: no draft to review)."""
    if interp is None or interp.status != "complete" or interp.report is None:
        return None
    out = review_out(state, study, actor)
    return {
        "state": out,
        "diff": diff_out(state, study) if out.versions else None,
        "findings": {f.label: f.source for f in out.ai_findings},
        "reviews": {r.label: r for r in out.current.finding_reviews},
        "base_version": out.versions[-1].version if out.versions else 0,
    }
