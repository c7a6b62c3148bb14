"""The result objects of one interpretation, from its ORIGINAL source headers.

`result_objects` builds the findings SR (TID 1500, when there are scores or boxes), the narrative
SR (TID 2000) and, when asked, a GSPS or a Secondary Capture. Sources come either from a
local DICOM file's own header (read before any de-identification: `sources_from_files`,
for `medlens interpret --sr`) or from the protected identity table of an integrated
study (`sources_from_identity`). Either way every outgoing object carries the original
patient, study and instance identifiers, never the de-identified dummies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medlens.errors import InvalidImage
from medlens.integrations.narrative_sr import SrKind, narrative_sr
from medlens.integrations.sr import findings_sr
from medlens.tasks.interpret.result import Interpretation

Overlay = Literal["none", "gsps", "sc"]


@dataclass(frozen=True)
class ResultObject:
    kind: str  # findings | narrative | gsps | sc
    dataset: Any  # pydicom Dataset

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def modality(self) -> str:
        return str(self.dataset.Modality)


def sources_from_files(paths: list[Path]) -> list[Any]:
    """Each DICOM file's own header (no pixels), as read from disk: the original identity."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    out = []
    for path in paths:
        try:
            out.append(pydicom.dcmread(path, stop_before_pixels=True))
        except (InvalidDicomError, OSError) as exc:
            raise InvalidImage(
                f"{path.name}: not a readable DICOM file, so no SR ({exc})."
            ) from exc
    return out


def sources_from_identity(identity: dict[str, Any]) -> list[Any]:
    """Header-only datasets of the original instances, in MedLens image order."""
    from medlens.integrations.identity import identity_dataset

    positions = sorted(int(i.get("position", n + 1)) for n, i in enumerate(identity["instances"]))
    return [identity_dataset(identity, p) for p in positions]


def result_objects(
    interp: Interpretation,
    sources: list[Any],
    *,
    sr_kind: SrKind = "basic",
    overlay: Overlay = "none",
    pixels: Any = None,
) -> list[ResultObject]:
    """The objects to write or send; `pixels` (a DecodedImage-like array) feeds the SC."""
    out = []
    if interp.finding_scores or interp.regions:
        out.append(ResultObject("findings", findings_sr(interp, sources)))
    out.append(ResultObject("narrative", narrative_sr(interp, sources, sr_kind)))
    if overlay != "none":
        from medlens.integrations.overlay import gsps, secondary_capture

        if overlay == "gsps":
            out.append(ResultObject("gsps", gsps(interp, sources)))
        else:
            if pixels is None:
                raise InvalidImage("A Secondary Capture needs the decoded image pixels.")
            out.append(ResultObject("sc", secondary_capture(interp, sources, pixels)))
    return out


def write_objects(objects: list[ResultObject], out_dir: Path) -> list[Path]:
    """Write each object as a DICOM Part 10 file named by kind and SOP Instance UID."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for obj in objects:
        path = out_dir / f"{obj.kind}-{obj.sop_instance_uid}.dcm"
        obj.dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_local(
    interp: Interpretation,
    dicom_files: list[Path],
    out_dir: Path,
    *,
    sr_kind: SrKind = "basic",
    overlay: Overlay = "none",
) -> list[Path]:
    """`medlens interpret FILE.dcm --sr OUT_DIR`: the same objects, written, no PACS.
    Sources are the files' own headers (the current images, in order)."""
    if overlay not in ("none", "gsps", "sc"):
        from medlens.errors import ConfigError

        raise ConfigError(f"Unknown overlay {overlay!r}; use none, gsps or sc.")
    sources = sources_from_files(dicom_files)
    pixels = None
    if overlay == "sc":
        import pydicom

        pixels = pydicom.dcmread(dicom_files[0]).pixel_array
    objects = result_objects(interp, sources, sr_kind=sr_kind, overlay=overlay, pixels=pixels)
    return write_objects(objects, out_dir)
