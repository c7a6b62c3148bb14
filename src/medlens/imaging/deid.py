"""De-identification: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile.

The attribute actions of Table E.1-1 live in `data/deid_basic_profile.tsv`. They are
applied at every level of the data set (inside sequences too). Compound actions are
resolved conservatively without IOD type information:

* ``X/Z`` → zero-length (the attribute stays present, empty);
* ``X/D`` → dummy value; ``X/Z/D``, ``Z/D`` → dummy when there is a value (a dummy keeps
  a Type 1 attribute valid in any IOD and says nothing), else left empty; dates and times
  with these actions are shifted (or emptied under the "remove" date policy);
* ``X/Z/U*`` (reference sequences) → kept, UIDs inside remapped.

Changes that keep the output a valid IOD (dciodvfy finds no error the original did not
have): a removed overlay attribute takes its whole 60xx plane with it; Acquisition Context
Sequence (X, but Type 2 where it is used) stays as an empty sequence; a person sequence
with action D (Verifying Observer, Person Identification Code) keeps its items with every
value in them dummied or date-shifted; a DICOMDIR is refused (its references would not
survive the renaming of the files it lists).

UIDs are remapped deterministically under the site secret (HMAC-SHA256 → ``2.25.<int>``),
so two instances of one study keep one (new) Study Instance UID, and re-running gives the
same result. Dates are removed or shifted by a per-patient offset derived from the same
secret (Retain Longitudinal Temporal Information with Modified Dates option), except
the birth date, which is always emptied: shifted by the same offset as the study date it
would still give the exact age. An age band can be kept as PatientAge on request
(`age_band`). Every other person-name (PN) attribute is emptied as well, beyond the table,
because names in unlisted or vendor attributes are the commonest leak.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import secrets
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from medlens.errors import (
    DeidentificationBlocked,
    InvalidImage,
    UnsupportedDicom,
    UnsupportedImageType,
)
from medlens.imaging.deid_fixups import ensure_file_meta, overlay_groups_to_remove, remove_groups
from medlens.imaging.deid_values import age_band, dummy_value, shift_dates

DatePolicy = Literal["remove", "shift"]
BurnedInPolicy = Literal["warn", "block"]

_MAX_SHIFT_DAYS = 3650
# Never shifted, whatever the date policy: the modified-dates option does not cover them
# (PS3.15 Table E.1-1), and a shifted birth date beside a shifted study date is the age.
_NEVER_SHIFTED = {0x00100030}  # PatientBirthDate
_TEXT_VRS = {"PN", "LO", "SH", "CS", "DA", "TM", "DT", "LT", "ST", "UT", "AE", "AS", "UC", "UR"}
# X attributes that are Type 2 where they occur: an empty sequence says as little.
_KEEP_EMPTY = {0x00400555}  # AcquisitionContextSequence
# D sequences whose items are kept with every value replaced (Type 1 items inside).
_DUMMY_ITEM_SEQUENCES = {0x0040A073, 0x00401101}
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_SAFE_PRIVATE_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "DS", "IS"}
# (code value, meaning) for (0012,0064), CID 7050.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
MODIFIED_DATES_CODE = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
SAFE_PRIVATE_CODE = ("113111", "Retain Safe Private Option")


@dataclass(frozen=True)
class DeidPolicy:
    secret: bytes
    dates: DatePolicy = "shift"
    burned_in: BurnedInPolicy = "warn"
    retain_safe_private: bool = False
    age_band: bool = False  # keep a 5-year age band as PatientAge (opt-in)

    @classmethod
    def from_settings(cls, settings: Any = None) -> DeidPolicy:
        if settings is None:
            from medlens.config import load_settings

            settings = load_settings()
        return cls(
            secret=site_secret(settings),
            dates=settings.deid_dates,
            burned_in=settings.deid_burned_in,
            retain_safe_private=settings.deid_retain_safe_private,
            age_band=bool(getattr(settings, "deid_age_band", False)),
        )


@dataclass(frozen=True)
class DeidAction:
    path: str  # e.g. "ReferencedImageSequence[0].ReferencedSOPInstanceUID"
    tag: str  # "(0010,0010)"
    action: str  # removed | emptied | dummy | uid-remapped | date-shifted | private-removed


@dataclass
class DeidResult:
    dataset: Any  # pydicom Dataset, modified in place
    actions: list[DeidAction] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    identity_removed: bool = True

    def summary(self) -> dict[str, int]:
        return dict(Counter(a.action for a in self.actions))


@lru_cache(maxsize=1)
def profile_table() -> dict[int, tuple[str, str]]:
    """tag → (keyword, action) from the transcribed Table E.1-1."""
    text = resources.files("medlens.imaging").joinpath("data/deid_basic_profile.tsv").read_text()
    table: dict[int, tuple[str, str]] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "tag\t")):
            continue
        tag, keyword, action = line.split("\t")
        table[int(tag, 16)] = (keyword, action)
    return table


def _lookup(tag: int) -> str | None:
    table = profile_table()
    if tag in table:
        return table[tag][1]
    group = tag >> 16
    if 0x6000 <= group <= 0x601E and group % 2 == 0:  # overlays 60xx
        return table.get(0x60000000 | (tag & 0xFFFF), (None, None))[1]
    if 0x5000 <= group <= 0x501E and group % 2 == 0:  # retired curves 50xx: all removed
        return "X"
    return None


@lru_cache(maxsize=1)
def _overlay_removed() -> frozenset[int]:
    """Element numbers the profile removes (X) from an overlay group 60xx."""
    table = profile_table()
    return frozenset(t & 0xFFFF for t, (_, a) in table.items() if t >> 16 == 0x6000 and a == "X")


def site_secret(settings: Any) -> bytes:
    """settings.site_secret, else <data_dir>/site_secret (created once, mode 0600)."""
    if settings.site_secret is not None:
        return settings.site_secret.get_secret_value().encode()
    path = Path(settings.data_path) / "site_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def remap_uid(uid: str, secret: bytes) -> str:
    """Deterministic 2.25.<int> UID (PS3.5 B.2): HMAC of the original under the secret."""
    digest = hmac.new(secret, b"uid:" + uid.strip().encode(), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def date_offset_days(patient_key: str, secret: bytes) -> int:
    digest = hmac.new(secret, b"date-shift:" + patient_key.encode(), hashlib.sha256).digest()
    return 1 + int.from_bytes(digest[:4], "big") % _MAX_SHIFT_DAYS


def deidentify(ds: Any, policy: DeidPolicy) -> DeidResult:
    """Apply the Basic Profile (and chosen options) to a pydicom Dataset, in place."""
    result = DeidResult(dataset=ds)
    has_pixels = any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))
    burned = str(ds.get("BurnedInAnnotation", "") or "").upper()
    if has_pixels and burned != "NO":
        state = "YES" if burned == "YES" else "absent"
        if policy.burned_in == "block":
            raise DeidentificationBlocked(
                f"BurnedInAnnotation is {state}: the pixels may show patient identity, and the "
                "policy is 'block' (MEDLENS_DEID_BURNED_IN). Remove burned-in text and retry."
            )
        result.warnings.append(
            f"BurnedInAnnotation is {state}: pixels may carry identifying text; "
            "PatientIdentityRemoved is set to NO."
        )
        result.identity_removed = False
    patient_key = str(ds.get("PatientID", "") or "") + "|" + str(ds.get("PatientName", "") or "")
    shift = date_offset_days(patient_key, policy.secret) if policy.dates == "shift" else 0
    band = age_band(ds) if policy.age_band else None  # read before the walk empties it
    try:
        _walk(ds, policy, shift, "", result)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            _walk(meta, policy, shift, "file_meta.", result)
            for tag in (0x00020016,):  # SourceApplicationEntityTitle names a device/site
                if tag in meta:
                    del meta[tag]
    except RecursionError as exc:
        raise InvalidImage("DICOM sequences are nested too deeply to de-identify.") from exc
    if band is not None:
        ds.PatientAge = band
        result.actions.append(DeidAction("PatientAge", "(0010,1010)", "age-banded"))
    _mark(ds, policy, result)
    return result


def _walk(
    ds: Any, policy: DeidPolicy, shift: int, prefix: str, result: DeidResult, dummy: bool = False
) -> None:
    """`dummy`: inside a D sequence, every value is replaced (dummy or shifted), not removed."""
    # An overlay plane that loses its data loses its whole group (no partial plane).
    for tag in remove_groups(ds, overlay_groups_to_remove(ds, _overlay_removed())):
        ref = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        result.actions.append(DeidAction(prefix + ref, ref, "removed"))
    for elem in list(ds):
        tag = int(elem.tag)
        name = elem.keyword or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        path = prefix + name
        ref = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        if elem.tag.is_private:
            if policy.retain_safe_private and (
                elem.VR in _SAFE_PRIVATE_VRS or elem.tag.is_private_creator
            ):
                continue
            del ds[elem.tag]
            result.actions.append(DeidAction(path, ref, "private-removed"))
            continue
        action = _lookup(tag)
        filled = elem.VR != "SQ" and elem.value not in (None, "", b"", [])
        replaceable = action not in ("U", "X/Z/U*") and elem.VR != "UI"
        if dummy and filled and replaceable and (action or elem.VR in ("DA", "DT", "TM", "PN")):
            action = "D"
        if action is None:
            if elem.VR == "PN" and elem.value:
                elem.value = ""
                result.actions.append(DeidAction(path, ref, "emptied"))
            elif elem.VR == "SQ":
                for i, item in enumerate(elem.value):
                    _walk(item, policy, shift, f"{path}[{i}].", result)
            continue
        _apply(ds, elem, action, policy, shift, path, ref, result)


def _apply(
    ds: Any,
    elem: Any,
    action: str,
    policy: DeidPolicy,
    shift: int,
    path: str,
    ref: str,
    result: DeidResult,
) -> None:
    vr = elem.VR
    if action == "X" and int(elem.tag) in _KEEP_EMPTY:
        if elem.value:
            elem.value = []
            result.actions.append(DeidAction(path, ref, "emptied"))
        return
    if action == "X":
        del ds[elem.tag]
        result.actions.append(DeidAction(path, ref, "removed"))
        return
    if action == "U" or (action.endswith("U*") and vr == "UI"):
        if vr == "UI" and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [remap_uid(str(v), policy.secret) for v in values]
            elem.value = new if elem.VM > 1 else new[0]
            result.actions.append(DeidAction(path, ref, "uid-remapped"))
        return
    if vr == "SQ":
        if action.endswith("U*") or (action == "D" and int(elem.tag) in _DUMMY_ITEM_SEQUENCES):
            for i, item in enumerate(elem.value):
                _walk(item, policy, shift, f"{path}[{i}].", result, dummy=action == "D")
            return
        if elem.value:
            elem.value = []  # Z and D on a sequence: present but without items
            result.actions.append(DeidAction(path, ref, "emptied"))
        return
    shiftable = int(elem.tag) not in _NEVER_SHIFTED
    if vr in ("DA", "DT") and policy.dates == "shift" and shiftable and elem.value:
        elem.value = shift_dates(elem.value, vr, shift)
        result.actions.append(DeidAction(path, ref, "date-shifted"))
        return
    if vr == "TM" and policy.dates == "shift" and action != "X":
        return  # times are kept with modified dates (longitudinal option)
    # X/Z/D, Z/D → dummy when filled (Type 1 somewhere); dates chosen "remove" stay empty.
    dummied = action in ("X/Z/D", "Z/D") and vr not in ("DA", "DT", "TM")
    if action in ("D", "X/D") or (dummied and elem.value not in (None, "", b"", [])):
        elem.value = dummy_value(vr)
        result.actions.append(DeidAction(path, ref, "dummy"))
        return
    # Z, X/Z, X/Z/D, Z/D: keep the attribute, zero length.
    if elem.value not in (None, "", b"", []):
        elem.value = "" if vr in _TEXT_VRS else None
        result.actions.append(DeidAction(path, ref, "emptied"))


def _mark(ds: Any, policy: DeidPolicy, result: DeidResult) -> None:
    from pydicom.dataset import Dataset

    ds.PatientIdentityRemoved = "YES" if result.identity_removed else "NO"
    codes = [BASIC_PROFILE_CODE]
    if policy.dates == "shift":
        codes.append(MODIFIED_DATES_CODE)
    if policy.retain_safe_private:
        codes.append(SAFE_PRIVATE_CODE)
    # LO holds 64 characters: name the profile and option codes, (0012,0064) has meanings.
    ds.DeidentificationMethod = "MedLens PS3.15 E.1 DCM " + " ".join(v for v, _ in codes)
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = items
    ds.LongitudinalTemporalInformationModified = (
        "MODIFIED" if policy.dates == "shift" else "REMOVED"
    )


def deidentify_bytes(
    data: bytes, policy: DeidPolicy, *, name: str | None = None
) -> tuple[bytes, DeidResult]:
    """De-identify DICOM bytes; returns the new file's bytes and what was done."""
    from medlens.imaging.dicom_decode import read_dataset
    from medlens.imaging.formats import sniff

    if sniff(data, name) != "dicom":
        raise UnsupportedImageType(f"{name or 'input'}: not DICOM; nothing to de-identify.")
    ds = read_dataset(data, name or "input")
    meta_class = str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", "") or "")
    if meta_class == _DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        raise UnsupportedDicom(
            f"{name or 'input'}: a DICOMDIR (file-set index) holds no image; de-identify the "
            "files it lists instead (their new names would not match its references)."
        )
    result = deidentify(ds, policy)
    return dataset_bytes(ds, name or "input"), result


def dataset_bytes(ds: Any, label: str = "input") -> bytes:
    """A Part 10 file; missing file meta is rebuilt from the data set (or refused)."""
    from pydicom import dcmwrite

    ensure_file_meta(ds, label)
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def strip_raster(image: Any) -> bytes:
    """PNG bytes of decoded pixels only: no EXIF, text chunks, ICC or XMP."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
