"""Structural repairs de-identification needs so that what it writes stays valid DICOM.

* Overlay planes (groups 60xx): PS3.15 Table E.1-1 removes Overlay Data and Overlay
  Comments, but a plane without its data is invalid (dciodvfy: missing Type 1 attribute),
  so a plane that loses one attribute loses its whole group.
* File meta (group 0002): files read without a preamble, or with an empty meta group,
  cannot be written as a Part 10 file until the meta names the SOP class and instance and
  the transfer syntax; those are rebuilt from the data set, or the file is refused with
  the reason.
"""

from __future__ import annotations

from typing import Any

from medlens.errors import UnsupportedDicom

_ENCAPSULATED_HINT = "encapsulated (compressed) pixel data"


def is_overlay_group(group: int) -> bool:
    return 0x6000 <= group <= 0x601E and group % 2 == 0


def overlay_groups_to_remove(ds: Any, removed_elements: set[int]) -> set[int]:
    """Overlay groups that hold any element of `removed_elements` (element numbers)."""
    groups: set[int] = set()
    for elem in ds:
        tag = int(elem.tag)
        if is_overlay_group(tag >> 16) and (tag & 0xFFFF) in removed_elements:
            groups.add(tag >> 16)
    return groups


def remove_groups(ds: Any, groups: set[int]) -> list[int]:
    """Delete every element of the given groups; returns the deleted tags."""
    gone = [int(e.tag) for e in ds if int(e.tag) >> 16 in groups]
    for tag in gone:
        del ds[tag]
    return gone


def ensure_file_meta(ds: Any, label: str = "input") -> None:
    """Fill missing/empty required file meta from the data set, or refuse with a reason."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import (
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
    )

    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    for meta_kw, ds_kw in (
        ("MediaStorageSOPClassUID", "SOPClassUID"),
        ("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
    ):
        if str(meta.get(meta_kw, "") or "").strip():
            continue
        value = str(ds.get(ds_kw, "") or "").strip()
        if not value:
            raise UnsupportedDicom(
                f"{label}: the data set has no {ds_kw} and the file meta no {meta_kw}, "
                "so it cannot be written as a valid DICOM file; refused."
            )
        setattr(meta, meta_kw, value)
    if not str(meta.get("TransferSyntaxUID", "") or "").strip():
        if "PixelData" in ds and ds["PixelData"].is_undefined_length:
            raise UnsupportedDicom(
                f"{label}: {_ENCAPSULATED_HINT} but no Transfer Syntax UID in the file meta, "
                "so its compression is unknown; refused."
            )
        implicit, little = _encoding(ds)
        if implicit:
            meta.TransferSyntaxUID = ImplicitVRLittleEndian
        else:
            meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    if "FileMetaInformationVersion" not in meta:
        meta.FileMetaInformationVersion = b"\x00\x01"


def _encoding(ds: Any) -> tuple[bool, bool]:
    original = getattr(ds, "original_encoding", None)
    if original and original[0] is not None and original[1] is not None:
        return bool(original[0]), bool(original[1])
    return True, True  # the DICOM default transfer syntax
