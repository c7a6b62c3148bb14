"""One small error hierarchy; every message tells the user what to do next.

`http_status` lets the server map errors to responses in one place; the CLI prints
`str(err)` as a one-line message and exits with `exit_code`. Subclasses name their
`code` (and `http_status` where it is not the parent's) in the class line.
"""

from __future__ import annotations

from typing import Any


class MedLensError(Exception):
    """Base class: a problem the user can act on (never a bug)."""

    http_status: int = 400
    exit_code: int = 2
    code: str = "medlens_error"

    def __init_subclass__(
        cls, *, code: str | None = None, http_status: int | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if http_status is not None:
            cls.http_status = http_status

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- input images -----------------------------------------------------------
class InvalidImage(MedLensError, code="invalid_image", http_status=422):
    """The bytes are not a usable image (corrupt, truncated, absurd)."""


class UnsupportedImageType(InvalidImage, code="unsupported_media_type", http_status=415):
    """Not PNG, JPEG or DICOM (checked by signature, never by extension)."""


class TruncatedImage(InvalidImage, code="truncated_image"):
    """The file ends before its image data does."""


class ImageTooLarge(InvalidImage, code="image_too_large", http_status=413):
    """Decompression bomb or a file over the size cap."""


class UnsupportedDicom(InvalidImage, code="unsupported_dicom"):
    """Valid DICOM that MedLens cannot decode or use (names the package that would)."""


class NoPixelData(UnsupportedDicom, code="no_pixel_data"):
    """A DICOM object without an image in it (a report, a presentation state)."""


class ImageRefused(MedLensError, code="image_refused", http_status=422):
    """The image gate refused an image for this task (wrong modality, body part...)."""


class DeidentificationBlocked(MedLensError, code="deidentification_blocked", http_status=422):
    """Policy says block (e.g. burned-in annotation) so the image is not stored."""


# --- models -------------------------------------------------------------------
class UnknownModel(MedLensError, code="unknown_model"):
    """No model of that id in the registry."""


class ModelNotAvailable(MedLensError, code="model_not_available", http_status=503):
    """Weights are missing locally or gated; the message says how to get them."""


class BackendUnavailable(MedLensError, code="backend_unavailable", http_status=503):
    """The backend's optional dependencies are not installed (names the extra)."""


class SourceNotImplemented(MedLensError, code="source_not_implemented", http_status=501):
    """A model source scheme this build cannot load from."""


class RemoteModelError(MedLensError, code="remote_model_error", http_status=502):
    """A remote (OpenAI-compatible) server failed or could not be reached."""


class GenerationError(MedLensError, code="generation_error", http_status=500):
    """The model failed while generating (numerical failure, prompt too long...)."""


# --- configuration / data ----------------------------------------------------
class ConfigError(MedLensError, code="config_error"):
    """A setting, option or argument is wrong; the message names it."""


class DataError(MedLensError, code="data_error"):
    """A data file (JSONL, CSV, FHIR bundle) cannot be read as expected."""


class NotFound(MedLensError, code="not_found", http_status=404):
    """No such study, job, image or file."""


class Conflict(MedLensError, code="conflict", http_status=409):
    """The request clashes with stored state (e.g. an Idempotency-Key reused for other data)."""


class StoreError(MedLensError, code="store_error", http_status=503):
    """The database cannot be opened or used (bad URL, unreachable server, locked file)."""
