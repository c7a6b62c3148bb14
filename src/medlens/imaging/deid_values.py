"""Values de-identification writes: dummies by VR, shifted dates, the age band."""

from __future__ import annotations

import datetime as dt
from typing import Any

_AGE_BAND_YEARS = 5
_AGE_TOP = 90  # ages from 90 up are one band (HIPAA Safe Harbor)
_DUMMY_DATE = "19000101"

__all__ = ["age_band", "dummy_value", "shift_dates"]


def age_band(ds: Any) -> str | None:
    """The patient's age as a 5-year band ("065Y" = 65-69; "090Y" = 90 or more), from
    the birth date and the study (else series/acquisition/content) date, else from
    PatientAge; None when neither gives one."""
    years = _age_from_dates(ds)
    if years is None or not 0 <= years <= 150:  # absent or absurd (e.g. 11111111)
        years = None
        text = str(ds.get("PatientAge", "") or "").strip().upper()
        if len(text) == 4 and text[:3].isdigit():
            years = int(text[:3]) if text[3] == "Y" else 0 if text[3] in "DWM" else None
    if years is None or not 0 <= years <= 150:
        return None
    years = min(_AGE_TOP, years - years % _AGE_BAND_YEARS)
    return f"{years:03d}Y"


def _age_from_dates(ds: Any) -> int | None:
    born = _parse_day(ds.get("PatientBirthDate"))
    if born is None:
        return None
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        seen = _parse_day(ds.get(keyword))
        if seen is not None:
            return seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    return None


def _parse_day(value: Any) -> dt.date | None:
    try:
        return dt.datetime.strptime(str(value or "")[:8], "%Y%m%d").date()
    except ValueError:
        return None


def dummy_value(vr: str) -> Any:
    dummies: dict[str, Any] = {
        "DA": _DUMMY_DATE,
        "TM": "000000",
        "DT": _DUMMY_DATE + "000000",
        "AS": "000Y",
        "DS": "0",
        "IS": "0",
        "CS": "ANONYMIZED",
        "US": 0,
        "SS": 0,
        "UL": 0,
        "SL": 0,
        "FL": 0.0,
        "FD": 0.0,
    }
    return dummies.get(vr, "ANONYMIZED")


def shift_dates(value: Any, vr: str, days: int) -> Any:
    from pydicom.multival import MultiValue

    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    out = []
    for v in values:
        text = str(v)
        try:
            day = dt.datetime.strptime(text[:8], "%Y%m%d").date() - dt.timedelta(days=days)
            out.append(day.strftime("%Y%m%d") + (text[8:] if vr == "DT" else ""))
        except ValueError:
            out.append(_DUMMY_DATE)  # unparseable date: never keep the original
    return out if len(out) > 1 else out[0]
