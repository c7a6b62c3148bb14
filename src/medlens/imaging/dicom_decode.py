"""DICOM parsing and pixel decoding (pydicom 3 + pylibjpeg plugins), defensively.

pydicom reads a header whose elements run past the end of the file without complaint
(the value is just short) and parses sequences recursively, so this module checks
declared lengths and nesting depth itself, validates the image pixel module before
decoding, and decodes at ingest so truncated pixel data is caught here, not later.

Display pipeline for greyscale (what Google's CXR serving code does): modality LUT →
VOI LUT or window (pydicom's `apply_voi_lut`, the standard's exact function) → rescale
to the full 8-bit range → invert MONOCHROME1.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from medlens.errors import (
    ImageTooLarge,
    InvalidImage,
    NoPixelData,
    TruncatedImage,
    UnsupportedDicom,
)
from medlens.imaging.raster import check_dimensions

MAX_SEQUENCE_DEPTH = 64
VOLUME_FACTOR = 8  # a volume may hold this many times the single-image pixel cap
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel, Float, Double Float Pixel Data
_UNDEFINED = 0xFFFFFFFF


def read_dataset(data: bytes, label: str, *, force: bool | None = None) -> Any:
    """Parse DICOM bytes into a pydicom Dataset, refusing hostile structure.

    `force` defaults to "only when there is no 128-byte preamble + DICM" (a raw data set,
    which `formats.sniff` has already checked really parses as DICOM)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if force is None:
        force = data[128:132] != b"DICM"

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=force)
            _check_lengths(ds, len(data), label)
            _check_depth(ds, label)
            _check_pixel_tag_parsed(ds, data, label)
    except RecursionError as exc:
        raise InvalidImage(
            f"{label}: excessively nested DICOM sequences (deeper than Python can parse); refused."
        ) from exc
    except InvalidDicomError as exc:
        raise UnsupportedDicom(f"{label}: not a valid DICOM file ({_short(exc)}).") from exc
    except (InvalidImage, MemoryError):
        raise
    except Exception as exc:
        raise InvalidImage(f"{label}: malformed DICOM ({_short(exc)}).") from exc
    return ds


def _check_lengths(ds: Any, size: int, label: str) -> None:
    """An element whose declared length runs past the end of the file is an error."""
    for container in (getattr(ds, "file_meta", None), ds):
        if container is None:
            continue
        for tag in list(container.keys()):
            raw = container.get_item(tag)
            length = getattr(raw, "length", 0) or 0
            tell = getattr(raw, "value_tell", None)
            if tell is None or length == _UNDEFINED:
                continue
            if tell + length > size:
                short = tell + length - size
                if int(tag) in _PIXEL_TAGS:
                    raise TruncatedImage(
                        f"{label}: truncated pixel data ({short:,} bytes missing); "
                        "the file was cut short - send the complete file."
                    )
                raise InvalidImage(
                    f"{label}: element ({int(tag) >> 16:04X},{int(tag) & 0xFFFF:04X}) declares "
                    f"{length:,} bytes, beyond the end of the file ({size:,} bytes)."
                )


def _check_pixel_tag_parsed(ds: Any, data: bytes, label: str) -> None:
    # pydicom silently stops at an encapsulated Pixel Data element that runs past the end
    # of the file, so the element vanishes; its tag still in the bytes means truncation,
    # not an object without pixels.
    if not has_pixels(ds) and b"\xe0\x7f\x10\x00" in data:
        raise TruncatedImage(
            f"{label}: truncated pixel data (the file ends inside the image data); "
            "the file was cut short - send the complete file."
        )


def _check_depth(ds: Any, label: str) -> None:
    # Iterative walk: converting a sequence parses one more level, never the whole tree
    # at once, so the depth is bounded before any recursion can run away.
    stack: list[tuple[Any, int]] = [(ds, 0)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_SEQUENCE_DEPTH:
            raise InvalidImage(
                f"{label}: DICOM sequences nested more than {MAX_SEQUENCE_DEPTH} deep; refused."
            )
        for tag in list(current.keys()):
            if int(tag) in _PIXEL_TAGS:
                continue
            raw = current.get_item(tag)
            vr = getattr(raw, "VR", None) or getattr(raw, "vr", None)
            if vr is None or vr == "SQ" or (vr in ("UN", None) and _dict_vr(tag) == "SQ"):
                elem = current[tag]
                if elem.VR == "SQ":
                    stack.extend((item, depth + 1) for item in elem.value)


def _dict_vr(tag: Any) -> str | None:
    from pydicom.datadict import dictionary_VR

    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def has_pixels(ds: Any) -> bool:
    return any(t in ds for t in _PIXEL_TAGS)


def frame_count(ds: Any) -> int:
    try:
        value = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise InvalidImage(f"bad NumberOfFrames {ds.get('NumberOfFrames')!r}") from exc
    return value


def validate_pixel_module(ds: Any, label: str, max_pixels: int) -> None:
    """Check the Image Pixel module before decoding anything."""
    if not has_pixels(ds):
        kind = _sop_name(ds)
        raise NoPixelData(f"{label}: this DICOM object has no pixel data ({kind}); send an image.")
    for key in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if ds.get(key) in (None, ""):
            raise InvalidImage(f"{label}: DICOM image is missing {key}.")
    rows, cols = int(ds.Rows), int(ds.Columns)
    if rows < 1 or cols < 1:
        raise InvalidImage(f"{label}: absurd DICOM dimensions Rows={rows}, Columns={cols}.")
    check_dimensions(cols, rows, max_pixels, label)
    bits = int(ds.BitsAllocated)
    if bits not in (1, 8, 16, 32, 64):
        raise InvalidImage(f"{label}: unsupported BitsAllocated={bits}.")
    stored = int(ds.get("BitsStored", bits) or bits)
    if not 1 <= stored <= bits:
        raise InvalidImage(f"{label}: BitsStored={stored} does not fit BitsAllocated={bits}.")
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if spp not in (1, 3):
        raise InvalidImage(f"{label}: unsupported SamplesPerPixel={spp}.")
    frames = frame_count(ds)
    if frames < 1 or frames * rows * cols > max_pixels * VOLUME_FACTOR:
        raise ImageTooLarge(
            f"{label}: {frames} frames of {cols}x{rows} exceed the pixel limit; refused."
        )
    check_codestream(ds, label, max_pixels)
    ts = transfer_syntax(ds)
    if ts is not None and not ts.is_compressed and 0x7FE00010 in ds:
        from pydicom.pixels.utils import get_expected_length

        expected = get_expected_length(ds, "bytes")
        have = len(ds.PixelData or b"")
        if have < expected:
            raise TruncatedImage(
                f"{label}: truncated pixel data ({expected - have:,} of {expected:,} bytes "
                "missing); the file was cut short - send the complete file."
            )


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}


def check_codestream(ds: Any, label: str, max_pixels: int) -> None:
    """Compare the size a JPEG/JPEG 2000 frame declares with Rows × Columns *before*
    decoding: the codec allocates what its own header says (a 200-byte JPEG 2000 stream
    can declare 60000×60000), and pydicom only notices the mismatch afterwards."""
    ts = transfer_syntax(ds)
    if ts is None or not ts.is_encapsulated or 0x7FE00010 not in ds:
        return
    head = _first_fragment(ds.PixelData or b"")
    dims = _j2k_size(head) or _jpeg_size(head)
    if dims is None:
        return
    width, height = dims
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{label}: the compressed frame declares {width}x{height} pixels, over the limit "
            f"of {max_pixels:,}; refused before decoding."
        )
    if (height, width) != (int(ds.Rows), int(ds.Columns)):
        raise InvalidImage(
            f"{label}: the compressed frame is {width}x{height} but Rows/Columns say "
            f"{int(ds.Columns)}x{int(ds.Rows)}; the file is inconsistent."
        )


def _first_fragment(data: bytes, limit: int = 65_536) -> bytes:
    # Encapsulated: item (FFFE,E000) = Basic Offset Table, then the first fragment item.
    item = b"\xfe\xff\x00\xe0"
    if len(data) < 8 or data[:4] != item:
        return b""
    pos = 8 + int.from_bytes(data[4:8], "little")
    if len(data) < pos + 8 or data[pos : pos + 4] != item:
        return b""
    length = int.from_bytes(data[pos + 4 : pos + 8], "little")
    return data[pos + 8 : pos + 8 + min(length, limit)]


def _j2k_size(head: bytes) -> tuple[int, int] | None:
    i = head.find(b"\xff\x4f\xff\x51", 0, 256)
    if i < 0 or len(head) < i + 24:
        return None
    x, y, xo, yo = (int.from_bytes(head[i + 8 + 4 * k : i + 12 + 4 * k], "big") for k in range(4))
    return max(0, x - xo), max(0, y - yo)


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    if not head.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(head[pos + 2 : pos + 4], "big")
        if marker in _SOF and pos + 9 <= len(head):
            height = int.from_bytes(head[pos + 5 : pos + 7], "big")
            width = int.from_bytes(head[pos + 7 : pos + 9], "big")
            return width, height
        if marker == 0xDA or length < 2:  # start of scan without a frame header
            return None
        pos += 2 + length
    return None


def transfer_syntax(ds: Any) -> Any:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid is None:
        from pydicom.uid import ImplicitVRLittleEndian

        return ImplicitVRLittleEndian if getattr(ds, "is_implicit_VR", True) else None
    return uid


def decode_pixels(ds: Any, label: str, index: int | None = 0) -> np.ndarray:
    """Decoded stored values: (rows, cols[, 3]) for one frame, (frames, ...) for index=None."""
    from pydicom.pixels.decoders.base import get_decoder

    ts = transfer_syntax(ds)
    ts_name = getattr(ts, "name", str(ts))
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise UnsupportedDicom(
            f"{label}: transfer syntax {ts_name} ({ts}) has no Python decoder; convert the "
            "file to Explicit VR Little Endian first (dcmtk `dcmconv +te`, `gdcmconv --raw`)."
        ) from exc
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise UnsupportedDicom(f"{label}: cannot decode {ts_name}: install {needs}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            options: Any = {"as_rgb": True}  # YBR_FULL/422 → RGB
            arr, _meta = decoder.as_array(ds, index=index, **options)
    except MemoryError as exc:
        raise ImageTooLarge(f"{label}: not enough memory to decode the pixel data.") from exc
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # Rust plugins raise pyo3 PanicException (BaseException)
        msg = str(exc)
        if "all available plugins" in msg or "does not support" in msg:
            # e.g. 12-bit JPEG Extended: neither pylibjpeg-libjpeg, Pillow nor GDCM's
            # Python plugin decode it; dcmtk's dcmdjpeg does.
            raise UnsupportedDicom(
                f"{label}: the installed decoders (pylibjpeg-libjpeg, Pillow) cannot decode "
                f"this {ts_name} pixel data. Decompress it with dcmtk "
                "(`apt install dcmtk`, then `dcmdjpeg in.dcm out.dcm`) and retry."
            ) from exc
        if "truncat" in msg.lower() or "length" in msg.lower() or "end of" in msg.lower():
            raise TruncatedImage(f"{label}: truncated pixel data ({_short(msg)}).") from exc
        raise InvalidImage(f"{label}: pixel data could not be decoded ({_short(msg)}).") from exc
    return arr


def to_display(arr: np.ndarray, ds: Any) -> np.ndarray:
    """Stored values of one frame → display-ready uint8 ("L": 2-D, RGB: H×W×3)."""
    return display_and_values(arr, ds)[0]


def display_and_values(arr: np.ndarray, ds: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """`to_display`, plus the modality-LUT values of a greyscale frame (None for colour):
    what a later window/level works from, at the full stored bit depth."""
    if arr.ndim == 3:
        return _colour_to_uint8(arr, ds), None
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = np.asarray(apply_color_lut(arr, ds))
        if rgb.dtype != np.uint8:  # 16-bit LUT entries span 0..65535
            rgb = np.clip(np.rint(rgb / 257.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(rgb), None
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        modality = np.asarray(apply_modality_lut(arr, ds))
        values = modality.astype(np.float64)
        if ("VOILUTSequence" in ds and ds.VOILUTSequence) or _has_window(ds):
            values = np.asarray(apply_voi_lut(values, ds, index=0), dtype=np.float64)
    # Full range: the windowed values' own extent, as Google's CXR serving code does
    # (a window wider than the data would otherwise leave a washed-out film).
    lo, hi = float(values.min()), float(values.max())
    return _for_photometric(_rescale(values, lo, hi), photometric), modality


def window_display(
    values: np.ndarray, center: float, width: float, photometric: str | None
) -> np.ndarray:
    """Modality-LUT values → uint8 through a linear window (the page's window/level)."""
    width = max(float(width), 1.0)
    low = float(center) - width / 2
    scaled = _rescale(np.asarray(values, dtype=np.float64), low, low + width)
    return _for_photometric(scaled, str(photometric or "").upper())


def _for_photometric(scaled: np.ndarray, photometric: str) -> np.ndarray:
    return 255 - scaled if photometric == "MONOCHROME1" else scaled  # low values are white


def _has_window(ds: Any) -> bool:
    try:
        center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
        if center is None or width is None:
            return False
        w = width[0] if getattr(ds["WindowWidth"], "VM", 1) > 1 else width
        return float(w) >= 1
    except (TypeError, ValueError, IndexError, KeyError):
        return False


def _rescale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(values.shape, np.uint8)
    out = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _colour_to_uint8(arr: np.ndarray, ds: Any) -> np.ndarray:
    # decode(as_rgb=True) has already turned YBR_FULL/YBR_FULL_422 into RGB.
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    bits = int(ds.get("BitsStored", 16) or 16)
    return _rescale(arr.astype(np.float64), 0.0, float(2**bits - 1))


def _sop_name(ds: Any) -> str:
    uid = ds.get("SOPClassUID")
    name = getattr(uid, "name", None) if uid is not None else None
    modality = ds.get("Modality")
    if name and name != str(uid):
        return name
    return f"Modality {modality}" if modality else "unknown object type"


def _short(exc: object, limit: int = 160) -> str:
    msg = " ".join(str(exc).split())
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"
