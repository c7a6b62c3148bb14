"""Read a FHIR R4 bundle (JSON) into plain facts, without identifiers.

Only what a reader of a chest X-ray needs: sex, age at the study, conditions,
medications, allergies, lab and vital-sign observations, each with its date. Names,
identifiers, addresses, telecom, birth date and free-text narrative are never read out
of the Patient resource (the age is computed and only its band leaves ehr.py).
Plain JSON reading (no fhir.resources dependency) so a malformed optional field in a
real-world bundle degrades one fact, not the whole context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from medlens.errors import DataError

MAX_BUNDLE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Fact:
    kind: str  # condition | medication | allergy | lab | vital
    text: str  # display text (value included for observations)
    when: date | None = None
    status: str = ""  # active / resolved / stopped ...
    code: str = ""  # system|code, for de-duplication of observations


@dataclass
class BundleFacts:
    sex: str | None = None
    birth_date: date | None = None  # used only to compute an age band; never printed
    deceased: date | None = None
    facts: list[Fact] = field(default_factory=list)

    def latest_date(self) -> date | None:
        dates = [f.when for f in self.facts if f.when]
        return max(dates) if dates else None


def parse_date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        if len(value) == 4:
            return date(int(value), 1, 1)
        if len(value) == 7:
            return date(int(value[:4]), int(value[5:7]), 1)
        if len(value) == 10:
            return date.fromisoformat(value)
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (dt.astimezone(UTC) if dt.tzinfo else dt).date()
    except ValueError:
        return None


def _concept(cc: Any) -> str:
    if not isinstance(cc, dict):
        return ""
    if cc.get("text"):
        return str(cc["text"])
    for coding in cc.get("coding") or []:
        if isinstance(coding, dict) and coding.get("display"):
            return str(coding["display"])
    return ""


def _code_key(cc: Any) -> str:
    if isinstance(cc, dict):
        for coding in cc.get("coding") or []:
            if isinstance(coding, dict) and coding.get("code"):
                return f"{coding.get('system', '')}|{coding['code']}"
    return _concept(cc).lower()


def _status(cc: Any) -> str:
    if isinstance(cc, dict):
        for coding in cc.get("coding") or []:
            if isinstance(coding, dict) and coding.get("code"):
                return str(coding["code"])
    return str(cc or "")


def _number(v: Any) -> str:
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:.0f}"
        text = f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
        return text.rstrip("0").rstrip(".")
    return str(v)


def _quantity(q: Any) -> str:
    if not isinstance(q, dict) or q.get("value") is None:
        return ""
    unit = q.get("unit") or q.get("code") or ""
    return f"{_number(q['value'])} {unit}".strip()


def _obs_value(res: dict[str, Any]) -> str:
    if "valueQuantity" in res:
        return _quantity(res["valueQuantity"])
    if "valueCodeableConcept" in res:
        return _concept(res["valueCodeableConcept"])
    for key in ("valueString", "valueBoolean", "valueInteger"):
        if key in res:
            return str(res[key])
    parts = []
    for comp in res.get("component") or []:
        name, val = _concept(comp.get("code")), _quantity(comp.get("valueQuantity"))
        if name and val:
            parts.append(f"{_short(name)} {val}")
    return ", ".join(parts)


def _short(name: str) -> str:
    return name.replace("Systolic Blood Pressure", "systolic").replace(
        "Diastolic Blood Pressure", "diastolic"
    )


def _category(res: dict[str, Any]) -> str:
    for cat in res.get("category") or []:
        for coding in (cat or {}).get("coding") or []:
            if coding.get("code"):
                return str(coding["code"])
    return ""


def load_bundle(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise DataError(f"{path.name}: FHIR bundle over {MAX_BUNDLE_BYTES >> 20} MB.")
        data = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path.name}: not a JSON FHIR bundle ({exc}).") from exc
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise DataError(
            f"{path.name}: not a FHIR Bundle (resourceType "
            f"{data.get('resourceType') if isinstance(data, dict) else '?'})."
        )
    return data


def bundle_facts(bundle: dict[str, Any]) -> BundleFacts:
    """Facts from every supported resource of a bundle (unknown types are ignored)."""
    out = BundleFacts()
    for entry in bundle.get("entry") or []:
        res = (entry or {}).get("resource") or {}
        kind = res.get("resourceType")
        if kind == "Patient":
            out.sex = res.get("gender")
            out.birth_date = parse_date(res.get("birthDate"))
            out.deceased = parse_date(res.get("deceasedDateTime"))
        elif kind == "Condition":
            status = _status(res.get("clinicalStatus"))
            if res.get("abatementDateTime") and status == "active":
                status = "resolved"
            out.facts.append(
                Fact(
                    "condition",
                    _concept(res.get("code")),
                    parse_date(res.get("onsetDateTime") or res.get("recordedDate")),
                    status,
                    _code_key(res.get("code")),
                )
            )
        elif kind == "MedicationRequest":
            name = _concept(res.get("medicationCodeableConcept")) or (
                (res.get("medicationReference") or {}).get("display", "")
            )
            out.facts.append(
                Fact(
                    "medication",
                    name,
                    parse_date(res.get("authoredOn")),
                    str(res.get("status", "")),
                    name.lower(),
                )
            )
        elif kind == "AllergyIntolerance":
            crit = res.get("criticality")
            text = _concept(res.get("code")) + (f" (criticality {crit})" if crit else "")
            out.facts.append(
                Fact(
                    "allergy",
                    text,
                    parse_date(res.get("recordedDate")),
                    _status(res.get("clinicalStatus")) or "active",
                    _code_key(res.get("code")),
                )
            )
        elif kind == "Observation":
            cat = _category(res)
            if cat not in ("laboratory", "vital-signs"):
                continue
            value = _obs_value(res)
            if not value:
                continue
            name = _concept(res.get("code"))
            out.facts.append(
                Fact(
                    "lab" if cat == "laboratory" else "vital",
                    f"{_short(name)}: {value}",
                    parse_date(res.get("effectiveDateTime") or res.get("issued")),
                    str(res.get("status", "")),
                    _code_key(res.get("code")),
                )
            )
    return out
