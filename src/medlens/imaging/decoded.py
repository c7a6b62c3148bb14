"""Decoded pixels kept beside a stored image, so it is decoded once, at upload.

A `DecodedImage` holds what the job and the image views need from a stored image: the
display-ready 8-bit pixels, a greyscale DICOM's modality-LUT values (for window/level
at the full stored bit depth), the metadata and the pixel hash. It round-trips
losslessly through `to_bytes`/`from_bytes` (a deflated .npz, read without pickle), and
`DecodedCache` keeps recent ones in memory, keyed by the stored file's content hash.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PIL import Image

from medlens.errors import InvalidImage
from medlens.imaging.types import ImageFormat, ImageMetadata, IngestedImage

FORMAT_VERSION = 1


@dataclass(frozen=True)
class DecodedImage:
    display: np.ndarray  # uint8, (H, W) or (H, W, 3): the default rendering
    format: ImageFormat
    pixel_sha256: str
    metadata: ImageMetadata
    warnings: tuple[str, ...] = ()  # about the pixels (IngestedImage.pixel_warnings)
    values: np.ndarray | None = None  # greyscale DICOM: modality-LUT values
    volume: np.ndarray | None = None  # CT/MR: (slices, H, W, 3) uint8

    @classmethod
    def from_ingested(cls, img: IngestedImage) -> DecodedImage:
        return cls(
            display=_frozen(np.asarray(img.image)),
            format=img.format,
            pixel_sha256=img.pixel_sha256,
            metadata=img.metadata,
            warnings=tuple(img.pixel_warnings),
            values=None if img.values is None else _frozen(compact(img.values)),
            volume=None if img.volume is None else _frozen(img.volume),
        )

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.display, self.values, self.volume) if a is not None)

    def to_ingested(self, *, sha256: str, source_name: str | None) -> IngestedImage:
        """The task-level image, as ingesting the stored file would give it."""
        mode = "RGB" if self.display.ndim == 3 else "L"
        return IngestedImage(
            image=Image.fromarray(np.array(self.display), mode),
            format=self.format,
            sha256=sha256,
            pixel_sha256=self.pixel_sha256,
            metadata=self.metadata,
            warnings=self.warnings,
            volume=self.volume,
            source_name=source_name,
            pixel_warnings=self.warnings,
        )

    def window_defaults(self) -> dict[str, float] | None:
        """Value range and default window of a greyscale DICOM (None otherwise)."""
        if self.values is None:
            return None
        lo, hi = float(self.values.min()), float(self.values.max())
        center, width = (lo + hi) / 2, max(hi - lo, 1.0)
        if self.metadata.window is not None:
            center, width = self.metadata.window
        return {"min": lo, "max": hi, "center": center, "width": width}

    def rendered(self, center: float | None = None, width: float | None = None) -> np.ndarray:
        """uint8 pixels for the page: the default rendering, or the given window."""
        if center is None or width is None or self.values is None:
            return self.display
        from medlens.imaging.dicom_decode import window_display

        return window_display(self.values, center, width, self.metadata.photometric)

    def to_bytes(self) -> bytes:
        header = {
            "version": FORMAT_VERSION,
            "format": self.format,
            "pixel_sha256": self.pixel_sha256,
            "metadata": dataclasses.asdict(self.metadata),
            "warnings": list(self.warnings),
        }
        arrays = {"display": self.display, "header": np.array(json.dumps(header, default=str))}
        if self.values is not None:
            arrays["values"] = self.values
        if self.volume is not None:
            arrays["volume"] = self.volume
        buf = io.BytesIO()
        # An .npz written by hand for a fast deflate level: clinical pixels are noisy, so
        # harder compression costs several times the time for a few percent.
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, arr in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asarray(arr), allow_pickle=False)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> DecodedImage:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                header = json.loads(str(npz["header"]))
                arrays = {k: _frozen(npz[k]) for k in ("display", "values", "volume") if k in npz}
            if header.get("version") != FORMAT_VERSION:
                raise ValueError(f"version {header.get('version')!r}")
            meta = dict(header["metadata"])
            if meta.get("window") is not None:
                meta["window"] = tuple(meta["window"])
            return cls(
                format=header["format"],
                pixel_sha256=header["pixel_sha256"],
                metadata=ImageMetadata(**meta),
                warnings=tuple(header.get("warnings", ())),
                **arrays,
            )
        except Exception as exc:  # a damaged or foreign copy: callers decode the original
            raise InvalidImage(f"stored decoded copy unreadable ({type(exc).__name__})") from exc


def compact(values: np.ndarray) -> np.ndarray:
    """The smallest dtype that holds `values` exactly (whole numbers → int16/uint16/int32)."""
    arr = np.asarray(values)
    whole = arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr))
    if whole and np.all(arr == np.rint(arr)):
        lo, hi = float(arr.min()), float(arr.max())
        for dtype in (np.uint8, np.int16, np.uint16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return arr.astype(dtype)
    return arr


def _frozen(arr: np.ndarray) -> np.ndarray:
    # Cached arrays are shared between threads and requests: nobody may write to them.
    out = np.ascontiguousarray(arr)
    out.flags.writeable = False
    return out


class DecodedCache:
    """A small thread-safe LRU of DecodedImage by content hash, bounded in items and bytes."""

    def __init__(self, max_items: int = 32, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: OrderedDict[str, DecodedImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> DecodedImage | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: str, item: DecodedImage) -> None:
        size = item.nbytes
        if size > self.max_bytes:
            return  # one huge image must not evict everything else
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = item
            self._bytes += size
            while len(self._items) > self.max_items or self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def discard(self, key: str) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes
