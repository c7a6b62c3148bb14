"""Ingest: bytes, a path, a folder or several files → a validated, decoded IngestedImage.

Pixels are decoded here, at ingest: pydicom reads a file with truncated pixel data
without complaint and only decoding fails, so a file that passes ingest is usable.
The type comes from the bytes (signature), never from the name. Every failure is a
MedLensError (`InvalidImage` and subclasses); no other exception type escapes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medlens.errors import ImageTooLarge, InvalidImage, MedLensError
from medlens.imaging.types import ImageMetadata, IngestedImage

Source = bytes | str | Path


def ingest(
    source: Source | Sequence[Source],
    *,
    name: str | None = None,
    max_pixels: int | None = None,
    deid: Any | None = None,
    keep_values: bool = False,
) -> IngestedImage:
    """Decode and validate one image (or a CT/MR series given as a folder or a list).

    `deid`: a `medlens.imaging.deid.DeidPolicy`; when given, DICOM is de-identified
    before any metadata is taken, and `deidentified_bytes` holds what may be stored.
    `keep_values`: keep a greyscale DICOM's modality-LUT values (`IngestedImage.values`).
    """
    try:
        cap = max_pixels if max_pixels is not None else _default_max_pixels()
        if isinstance(source, (list, tuple)):
            return ingest_series(source, name=name, max_pixels=cap, deid=deid)
        if isinstance(source, (str, Path)) and Path(source).is_dir():
            return ingest_series(
                _folder_files(Path(source)),
                name=name or Path(source).name,
                max_pixels=cap,
                deid=deid,
            )
        data, label = _read(source, name)  # type: ignore[arg-type]
        return _ingest_bytes(data, label, name, cap, deid, keep_values)
    except MedLensError:
        raise
    except MemoryError as exc:
        raise ImageTooLarge(f"{name or 'input'}: not enough memory to decode the image.") from exc
    except RecursionError as exc:
        raise InvalidImage(f"{name or 'input'}: structure nested too deeply; refused.") from exc
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # incl. pyo3 PanicException from Rust decoders
        msg = " ".join(str(exc).split())[:160]
        kind = type(exc).__name__
        raise InvalidImage(f"{name or 'input'}: unreadable image ({kind}: {msg}).") from exc


def _default_max_pixels() -> int:
    # Settings are cheap to read but not free (~2 ms); cache per env + config file state.
    import os

    from medlens.config import config_file_path

    path = config_file_path()
    try:
        stamp = path.stat().st_mtime_ns if path is not None else 0
    except OSError:
        stamp = 0
    return _cached_max_pixels(os.environ.get("MEDLENS_MAX_IMAGE_PIXELS"), str(path), stamp)


@lru_cache(maxsize=8)
def _cached_max_pixels(env: str | None, path: str, stamp: int) -> int:
    from medlens.config import load_settings

    try:
        return int(load_settings().max_image_pixels)
    except Exception:  # a broken config must not disable the cap
        return 50_000_000


def _read(source: Source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "input"
    path = Path(source)
    try:
        return path.read_bytes(), name or path.name
    except OSError as exc:
        raise InvalidImage(f"Cannot read {path}: {exc.strerror or exc}") from exc


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _pixel_hash(image: Image.Image) -> str:
    h = hashlib.sha256()
    h.update(f"{image.mode}:{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def _ingest_bytes(
    data: bytes, label: str, name: str | None, cap: int, deid: Any, keep_values: bool = False
) -> IngestedImage:
    from medlens.imaging.formats import sniff

    kind = sniff(data, label)
    if kind == "dicom":
        return _ingest_dicom(data, label, name, cap, deid, keep_values)
    from medlens.imaging.raster import decode_raster

    decoded = decode_raster(data, max_pixels=cap, label=label)
    warnings = list(decoded.warnings)
    if decoded.had_exif or decoded.had_text:
        warnings.append("embedded metadata (EXIF/text chunks) dropped")
    image = decoded.image
    stored = None
    if deid is not None:
        from medlens.imaging.deid import strip_raster

        stored = strip_raster(image)
    return IngestedImage(
        image=image,
        format=kind,
        sha256=hashlib.sha256(data).hexdigest(),
        pixel_sha256=_pixel_hash(image),
        metadata=ImageMetadata(
            photometric="RGB" if image.mode == "RGB" else "MONOCHROME2",
            bits_stored=decoded.bits,
            rows=image.height,
            columns=image.width,
        ),
        warnings=tuple(warnings),
        source_name=name or (label if label != "input" else None),
        deidentified_bytes=stored,
        pixel_warnings=tuple(decoded.warnings),
    )


def _ingest_dicom(
    data: bytes, label: str, name: str | None, cap: int, deid: Any, keep_values: bool
) -> IngestedImage:
    from medlens.imaging import dicom_decode as dd
    from medlens.imaging.dicom_volume import VOLUME_MODALITIES, volume_from_multiframe

    ds = dd.read_dataset(data, label)
    warnings: list[str] = []
    summary: dict[str, int] = {}
    identity_removed = None
    burned = _text(ds.get("BurnedInAnnotation"))
    if deid is not None:
        from medlens.imaging.deid import deidentify

        result = deidentify(ds, deid)
        warnings.extend(result.warnings)
        summary = result.summary()
        identity_removed = result.identity_removed
    dd.validate_pixel_module(ds, label, cap)
    frames = dd.frame_count(ds)
    modality = (_text(ds.get("Modality")) or "").upper()
    volume = values = None
    pixel_notes: list[str] = []  # about the pixels (de-identification notes come before)
    if frames > 1 and modality in VOLUME_MODALITIES:
        volume = volume_from_multiframe(ds, label)
        image = Image.fromarray(volume[len(volume) // 2], "RGB")
    else:
        if frames > 1:
            pixel_notes.append(f"multi-frame image: frame 1 of {frames} used")
        arr = dd.decode_pixels(ds, label, 0)
        disp, values = dd.display_and_values(arr, ds)
        image = Image.fromarray(disp, "RGB" if disp.ndim == 3 else "L")
        if disp.max() == disp.min():
            pixel_notes.append("image is blank after windowing")
    warnings.extend(pixel_notes)
    meta = dicom_metadata(
        ds,
        transfer_syntax=dd.transfer_syntax(ds),
        burned=burned,
        identity_removed=identity_removed,
        frames=frames,
    )
    stored = None
    if deid is not None:
        from medlens.imaging.deid import dataset_bytes

        stored = dataset_bytes(ds)
    return IngestedImage(
        image=image,
        format="dicom",
        sha256=hashlib.sha256(data).hexdigest(),
        pixel_sha256=_pixel_hash(image)
        if volume is None
        else hashlib.sha256(volume.tobytes() + str(volume.shape).encode()).hexdigest(),
        metadata=meta,
        warnings=tuple(warnings),
        volume=volume,
        source_name=name or (label if label != "input" else None),
        deidentified_bytes=stored,
        deid_summary=summary,
        values=values if keep_values else None,
        pixel_warnings=tuple(pixel_notes),
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def dicom_metadata(
    ds: Any,
    *,
    transfer_syntax: Any = None,
    burned: str | None = None,
    identity_removed: bool | None = None,
    frames: int = 1,
) -> ImageMetadata:
    """What MedLens keeps about a DICOM image: technique, never patient identity."""
    sop = ds.get("SOPClassUID")
    window = None
    try:
        c, w = ds.get("WindowCenter"), ds.get("WindowWidth")
        if c is not None and w is not None:
            c = c[0] if ds["WindowCenter"].VM > 1 else c
            w = w[0] if ds["WindowWidth"].VM > 1 else w
            window = (float(c), float(w))
    except (TypeError, ValueError, KeyError, IndexError):
        window = None
    bits = ds.get("BitsStored")
    description = _text(ds.get("StudyDescription")) or _text(ds.get("SeriesDescription"))
    return ImageMetadata(
        modality=(_text(ds.get("Modality")) or "").upper() or None,
        body_part=(_text(ds.get("BodyPartExamined")) or "").upper() or None,
        view_position=(_text(ds.get("ViewPosition")) or "").upper() or None,
        photometric=_text(ds.get("PhotometricInterpretation")),
        bits_stored=int(bits) if bits not in (None, "") else None,
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        frames=frames,
        transfer_syntax=str(transfer_syntax) if transfer_syntax else None,
        study_uid=_text(ds.get("StudyInstanceUID")),
        series_uid=_text(ds.get("SeriesInstanceUID")),
        description=description[:512] if description else None,
        sop_class=getattr(sop, "name", None) if sop is not None else None,
        burned_in_annotation=burned.upper() if burned else None,
        patient_identity_removed=identity_removed,
        window=window,
    )


def ingest_series(
    sources: Sequence[Source], *, name: str | None = None, max_pixels: int, deid: Any = None
) -> IngestedImage:
    """Several DICOM files of one CT/MR series → an IngestedImage with `volume` set."""
    from medlens.imaging import dicom_decode as dd
    from medlens.imaging.dicom_volume import volume_from_series
    from medlens.imaging.formats import sniff

    label = name or "series"
    datasets, warnings, digest = [], [], hashlib.sha256()
    for src in sources:
        data, item = _read(src, None)
        digest.update(hashlib.sha256(data).digest())
        try:
            if sniff(data, item) != "dicom":
                warnings.append(f"{item}: not DICOM, skipped")
                continue
        except InvalidImage as exc:
            warnings.append(f"{item}: skipped ({exc})")
            continue
        ds = dd.read_dataset(data, item)
        if not dd.has_pixels(ds):
            warnings.append(f"{item}: no pixel data, skipped")
            continue
        if deid is not None:
            from medlens.imaging.deid import deidentify

            warnings.extend(deidentify(ds, deid).warnings)
        dd.validate_pixel_module(ds, item, max_pixels)
        datasets.append(ds)
    if not datasets:
        raise InvalidImage(f"{label}: no DICOM images found.")
    if len(datasets) == 1:
        only = datasets[0]
        if dd.frame_count(only) == 1:
            raise InvalidImage(f"{label}: a series needs more than one slice; send the file alone.")
    total = sum(int(d.Rows) * int(d.Columns) for d in datasets)
    if total > max_pixels * 8:
        raise ImageTooLarge(f"{label}: the series exceeds the pixel limit; refused.")
    volume = volume_from_series(datasets, label)
    first = datasets[0]
    meta = dicom_metadata(
        first,
        transfer_syntax=dd.transfer_syntax(first),
        frames=len(datasets),
        burned=_text(first.get("BurnedInAnnotation")),
    )
    image = Image.fromarray(np.ascontiguousarray(volume[len(volume) // 2]), "RGB")
    return IngestedImage(
        image=image,
        format="dicom",
        sha256=digest.hexdigest(),
        pixel_sha256=hashlib.sha256(volume.tobytes() + str(volume.shape).encode()).hexdigest(),
        metadata=meta,
        warnings=tuple(warnings),
        volume=volume,
        source_name=label,
    )


def probe(source: Source, *, name: str | None = None) -> ImageMetadata:
    """Header-only metadata (no pixel decoding): lets the gate explain a refusal even for
    a file whose pixels cannot be decoded. PNG/JPEG: size only."""
    try:
        data, label = _read(source, name)
        from medlens.imaging.formats import sniff

        kind = sniff(data, label)
        if kind != "dicom":
            import io

            with Image.open(io.BytesIO(data)) as img:
                return ImageMetadata(rows=img.height, columns=img.width)
        from medlens.imaging import dicom_decode as dd

        ds = dd.read_dataset(data, label)
        return dicom_metadata(
            ds,
            transfer_syntax=dd.transfer_syntax(ds),
            burned=_text(ds.get("BurnedInAnnotation")),
            frames=dd.frame_count(ds) if dd.has_pixels(ds) else 0,
        )
    except MedLensError:
        raise
    except Exception as exc:
        raise InvalidImage(f"{name or 'input'}: unreadable header ({type(exc).__name__}).") from exc
