"""Study search terms and matches shared by the DICOMweb (QIDO-RS) and DIMSE (C-FIND) paths."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medlens.errors import ConfigError

if TYPE_CHECKING:
    from pydicom import Dataset

_DATE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")


@dataclass(frozen=True)
class StudyQuery:
    """What to look for; empty fields match anything. `date` is YYYYMMDD or a range
    YYYYMMDD-YYYYMMDD (either end open), as DICOM matching has it."""

    patient_id: str | None = None
    accession: str | None = None
    date: str | None = None
    modality: str | None = None
    study_uid: str | None = None

    def __post_init__(self) -> None:
        if self.date and not (_DATE.match(self.date) and self.date.strip("-")):
            raise ConfigError(f"--date {self.date!r}: use YYYYMMDD or YYYYMMDD-YYYYMMDD.")

    def filters(self) -> dict[str, str]:
        """DICOM keyword → value, for the terms that are set."""
        pairs = {
            "PatientID": self.patient_id,
            "AccessionNumber": self.accession,
            "StudyDate": self.date,
            "ModalitiesInStudy": self.modality,
            "StudyInstanceUID": self.study_uid,
        }
        return {k: v for k, v in pairs.items() if v}


# What a match reports: enough to choose a study, no patient name or birth date.
RETURN_KEYS = (
    "StudyInstanceUID",
    "StudyDate",
    "AccessionNumber",
    "ModalitiesInStudy",
    "StudyDescription",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)


@dataclass(frozen=True)
class StudyMatch:
    study_uid: str
    date: str | None = None
    accession: str | None = None
    modalities: tuple[str, ...] = ()
    description: str | None = None
    series: int | None = None
    instances: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dataset(cls, ds: Dataset) -> StudyMatch:
        def text(keyword: str) -> str | None:
            value = ds.get(keyword)
            return str(value) if value not in (None, "") else None

        def number(keyword: str) -> int | None:
            value = ds.get(keyword)
            return int(value) if value not in (None, "") else None

        mods = ds.get("ModalitiesInStudy") or ()
        mods = (mods,) if isinstance(mods, str) else tuple(str(m) for m in mods)
        return cls(
            study_uid=str(ds.get("StudyInstanceUID", "")),
            date=text("StudyDate"),
            accession=text("AccessionNumber"),
            modalities=mods,
            description=text("StudyDescription"),
            series=number("NumberOfStudyRelatedSeries"),
            instances=number("NumberOfStudyRelatedInstances"),
        )
