"""One small error hierarchy; every message tells the user what to do next.

`http_status` lets the server map errors to responses in one place; the CLI prints
`str(err)` as a one-line message and exits with `exit_code`.
"""

from __future__ import annotations


class MedLensError(Exception):
    """Base class: a problem the user can act on (never a bug)."""

    http_status: int = 400
    exit_code: int = 2
    code: str = "medlens_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- input images -----------------------------------------------------------
class InvalidImage(MedLensError):
    """The bytes are not a usable image (corrupt, truncated, absurd)."""

    http_status = 422
    code = "invalid_image"


class UnsupportedImageType(InvalidImage):
    """Not PNG, JPEG or DICOM (checked by signature, never by extension)."""

    http_status = 415
    code = "unsupported_media_type"


class TruncatedImage(InvalidImage):
    code = "truncated_image"


class ImageTooLarge(InvalidImage):
    """Decompression bomb or a file over the size cap."""

    http_status = 413
    code = "image_too_large"


class UnsupportedDicom(InvalidImage):
    """Valid DICOM that MedLens cannot decode or use (names the package that would)."""

    code = "unsupported_dicom"


class NoPixelData(UnsupportedDicom):
    code = "no_pixel_data"


class ImageRefused(MedLensError):
    """The image gate refused an image for this task (wrong modality, body part...)."""

    http_status = 422
    code = "image_refused"


class DeidentificationBlocked(MedLensError):
    """Policy says block (e.g. burned-in annotation) so the image is not stored."""

    http_status = 422
    code = "deidentification_blocked"


# --- models -------------------------------------------------------------------
class UnknownModel(MedLensError):
    code = "unknown_model"


class ModelNotAvailable(MedLensError):
    """Weights are missing locally or gated; the message says how to get them."""

    http_status = 503
    code = "model_not_available"


class BackendUnavailable(MedLensError):
    """The backend's optional dependencies are not installed (names the extra)."""

    http_status = 503
    code = "backend_unavailable"


class SourceNotImplemented(MedLensError):
    http_status = 501
    code = "source_not_implemented"


class RemoteModelError(MedLensError):
    """A remote (OpenAI-compatible) server failed or could not be reached."""

    http_status = 502
    code = "remote_model_error"


class GenerationError(MedLensError):
    http_status = 500
    code = "generation_error"


# --- configuration / data ----------------------------------------------------
class ConfigError(MedLensError):
    code = "config_error"


class DataError(MedLensError):
    """A data file (JSONL, CSV, FHIR bundle) cannot be read as expected."""

    code = "data_error"


class NotFound(MedLensError):
    http_status = 404
    code = "not_found"


class Conflict(MedLensError):
    """The request clashes with stored state (e.g. an Idempotency-Key reused for other data)."""

    http_status = 409
    code = "conflict"


class StoreError(MedLensError):
    """The database cannot be opened or used (bad URL, unreachable server, locked file)."""

    http_status = 503
    code = "store_error"
