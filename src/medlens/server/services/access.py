"""Who may see a study (issue 18's shared design; see docs/server.md).

- admins, and the single-user modes (loopback without auth, bootstrap API tokens): all;
- anyone: the studies they uploaded;
- clinicians and radiologists: the studies shared with one of their groups.
A study the caller may not see answers 404, exactly like one that does not exist, so a
probe cannot learn which ids exist. Listings filter in SQL (`list_visible_studies`).
Studies made by a demo-mode server (context `"demo": true`) exist for no one but a
demo-mode server, even when both share one data folder (issue 23).
"""

from __future__ import annotations

from typing import Any

from medlens.errors import MedLensError, NotFound
from medlens.server.security import Actor
from medlens.server.state import ServerState
from medlens.store.base import Job, Study

_GROUP_READERS = ("clinician", "radiologist")


class BadGroup(MedLensError):
    http_status = 400
    code = "bad_request"


def sees_all(actor: Actor) -> bool:
    return actor.user_id is None or actor.role == "admin"


def mark_demo(state: ServerState, context: dict[str, Any]) -> dict[str, Any]:
    """The upload's context, marked as a demo study when this server runs in demo mode."""
    return {**context, "demo": True} if state.settings.demo else context


def shown_here(state: ServerState, study: Study) -> bool:
    """Demo studies are test-model output: a real-mode server never shows them."""
    return state.settings.demo or study.context.get("demo") is not True


def can_see(actor: Actor, study: Study) -> bool:
    if sees_all(actor) or study.owner_id == actor.user_id:
        return True
    return actor.role in _GROUP_READERS and study.group is not None and study.group in actor.groups


def not_found(study_id: str) -> NotFound:
    return NotFound(f"No study {study_id!r} (it may have been deleted).")


def visible_study(state: ServerState, study_id: str, actor: Actor) -> Study:
    """The study, or NotFound when it does not exist or `actor` may not see it."""
    study = state.store.get_study(study_id)
    if study is None or not can_see(actor, study) or not shown_here(state, study):
        raise not_found(study_id)
    return study


def visible_job(state: ServerState, job_id: str, actor: Actor) -> Job:
    """A job, or NotFound unless `actor` may see its study (a job without one: admins)."""
    job = state.store.get_job(job_id)
    if job is not None and job.study_id is not None:
        study = state.store.get_study(job.study_id)
        if study is not None and can_see(actor, study) and shown_here(state, study):
            return job
    elif job is not None and sees_all(actor):
        return job
    raise NotFound(f"No job {job_id!r}.")


def list_visible(state: ServerState, actor: Actor, *, limit: int, offset: int = 0) -> list[Study]:
    if state.settings.demo:
        return _list_allowed(state, actor, limit=limit, offset=offset)
    # Skip demo studies page by page so `limit` and `offset` count only the shown ones.
    shown: list[Study] = []
    raw = 0
    while len(shown) < offset + limit:
        page = _list_allowed(state, actor, limit=limit + offset, offset=raw)
        shown += [s for s in page if shown_here(state, s)]
        raw += len(page)
        if len(page) < limit + offset:
            break
    return shown[offset : offset + limit]


def _list_allowed(state: ServerState, actor: Actor, *, limit: int, offset: int) -> list[Study]:
    if sees_all(actor):
        return list(state.store.list_studies(limit=limit, offset=offset))
    assert actor.user_id is not None
    groups = actor.groups if actor.role in _GROUP_READERS else ()
    return list(
        state.store.list_visible_studies(
            user_id=actor.user_id, groups=groups, limit=limit, offset=offset
        )
    )


def upload_owner(actor: Actor, group: str | None) -> tuple[str | None, str | None, str | None]:
    """(idempotency owner key, owner user id, sharing group) for an upload by `actor`.

    The group is the `group` field when it names one of the uploader's groups, else
    their first group; a user's uploads dedupe only against their own studies.
    """
    if group is not None and group.strip():
        group = group.strip()
        if actor.user_id is None or group not in actor.groups:
            raise BadGroup(f"You are not in the group {group!r}.")
    if actor.user_id is None:
        return (actor.name if actor.kind == "token" else None), None, None
    chosen = group or (actor.groups[0] if actor.groups else None)
    return f"user:{actor.user_id}", actor.user_id, chosen
