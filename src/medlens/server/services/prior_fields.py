"""Upload fields for grounding and prior comparison (POST /v1/studies, multipart):

- `ground`: "true" / "false" — also ask for boxes of the report's findings.
- `prior_study_id`: an earlier MedLens study the uploader may see; its images become the
  prior images and its report the prior report (another user's study: 404, as elsewhere).
- `prior_date`: the prior's date (YYYY-MM-DD or "N days earlier").
- `prior_report`: the prior report's text (untrusted; when there is no prior study).

They are kept with the study's context (so a re-run sees them); the interpret job reads
them back (`task_prior`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medlens.errors import MedLensError

if TYPE_CHECKING:
    from medlens.server.security import Actor
    from medlens.server.state import ServerState

FIELD_LIMITS = {"ground": 8, "prior_study_id": 64, "prior_date": 40, "prior_report": 8000}


def clean_prior_fields(
    state: ServerState, raw: dict[str, Any], actor: Actor, error: type[MedLensError]
) -> dict[str, Any]:
    from medlens.server.services import access
    from medlens.tasks.interpret.comparison import check_prior_date

    out: dict[str, Any] = {}
    for key, limit in FIELD_LIMITS.items():
        value = raw.get(key)
        text = str(value).strip() if isinstance(value, str) else ""
        if len(text) > limit:
            raise error(f"'{key}' is too long (at most {limit} characters).")
        if text:
            out[key] = text
    ground = out.pop("ground", "false").lower()
    if ground not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise error("'ground' must be true or false.")
    if ground in ("true", "1", "yes", "on"):
        out["ground"] = True
    if "prior_date" in out:
        try:
            out["prior_date"] = check_prior_date(out["prior_date"])
        except MedLensError as exc:
            raise error(str(exc).replace("--prior-date", "'prior_date'")) from None
    if "prior_study_id" in out:
        access.visible_study(state, out["prior_study_id"], actor)  # NotFound for others
    return out
