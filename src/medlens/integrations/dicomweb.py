"""DICOMweb client (PyPI `dicomweb-client`): QIDO-RS search, WADO-RS retrieve, STOW-RS.

Instances are asked for in their stored transfer syntax (`application/dicom;
transfer-syntax=*`) and decoded locally (medlens.imaging, pylibjpeg): MedLens never relies
on the PACS to transcode or render. Auth comes from the settings (bearer, else basic).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from medlens.integrations.errors import IntegrationError, PacsUnavailable
from medlens.integrations.query import RETURN_KEYS, StudyMatch, StudyQuery
from medlens.integrations.settings import dicomweb_url, http_session

if TYPE_CHECKING:
    from dicomweb_client import DICOMwebClient
    from pydicom import Dataset

    from medlens.config import Settings

STORED_SYNTAX = (("application/dicom", "*"),)  # whatever the PACS holds, no transcoding
TIMEOUT_S = 30.0


def client(settings: Settings) -> DICOMwebClient:
    """A client for the configured server (NotConfigured when MEDLENS_DICOMWEB_URL is unset)."""
    from dicomweb_client import DICOMwebClient

    url = dicomweb_url(settings)
    return DICOMwebClient(url, session=http_session(settings), timeout=TIMEOUT_S)


@contextlib.contextmanager
def _errors(what: str, url: str) -> Iterator[None]:
    """requests' exceptions → one-line MedLens errors (no traceback for a PACS that is down)."""
    import requests

    try:
        yield
    except requests.ConnectionError as exc:
        msg = f"{what}: cannot reach the DICOMweb server at {url} ({_why(exc)})."
        raise PacsUnavailable(msg) from None
    except requests.Timeout:
        raise PacsUnavailable(
            f"{what}: the DICOMweb server at {url} did not answer in time."
        ) from None
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        hint = " (check MEDLENS_DICOMWEB_TOKEN / _USER / _PASSWORD)" if status in (401, 403) else ""
        raise IntegrationError(
            f"{what}: the DICOMweb server answered HTTP {status}{hint}."
        ) from None
    except requests.RequestException as exc:
        raise IntegrationError(f"{what}: DICOMweb request failed ({_why(exc)}).") from None


def _why(exc: BaseException) -> str:
    text = str(exc.__cause__ or exc)
    return "connection refused" if "refused" in text.lower() else text.splitlines()[0][:160]


def search_studies(settings: Settings, query: StudyQuery, *, limit: int = 100) -> list[StudyMatch]:
    """QIDO-RS /studies with the query's terms."""
    from pydicom import Dataset

    url = dicomweb_url(settings)
    filters = query.filters()
    # Orthanc 1.10's DICOMweb plugin does not percent-decode query values, so a value
    # with a space ("exam Number") or an encoded wildcard never matches. Send the
    # wildcard characters raw, stand in `?` (any one character) for anything else
    # that would need encoding, and keep only exact matches of such terms afterwards.
    sent = {k: _qido_value(v) for k, v in filters.items()}
    inexact = {k for k in filters if sent[k] != filters[k]}
    params = [*sent.items(), ("limit", str(limit))] + [("includefield", k) for k in RETURN_KEYS]
    qs = "&".join(f"{k}={quote(v, safe='*?')}" for k, v in params)
    session = http_session(settings)
    with _errors("QIDO-RS study search", url):
        response = session.get(
            f"{url}/studies?{qs}",
            headers={"Accept": "application/dicom+json"},
            timeout=TIMEOUT_S,
        )
        response.raise_for_status()
        found = response.json() if response.content.strip() else []
    matches = [Dataset.from_json(item) for item in found]
    matches = [ds for ds in matches if all(str(ds.get(k, "")) == filters[k] for k in inexact)]
    return [StudyMatch.from_dataset(ds) for ds in matches]


def _qido_value(value: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "*?.-_^,/:" else "?" for ch in value)


def search_instances(settings: Settings, study_uid: str) -> list[Dataset]:
    """QIDO-RS /studies/{uid}/instances: one header dataset per instance of the study."""
    from pydicom import Dataset

    c = client(settings)
    with _errors("QIDO-RS instance search", c.base_url):
        found = c.search_for_instances(study_instance_uid=study_uid, get_remaining=True)
    return [Dataset.from_json(item) for item in found]


def search_series(settings: Settings, study_uid: str) -> list[Dataset]:
    """QIDO-RS /studies/{uid}/series (Modality, SeriesInstanceUID, ...)."""
    from pydicom import Dataset

    c = client(settings)
    with _errors("QIDO-RS series search", c.base_url):
        found = c.search_for_series(study_instance_uid=study_uid, get_remaining=True)
    return [Dataset.from_json(item) for item in found]


def retrieve_instance(settings: Settings, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
    """WADO-RS one instance, as Part 10 bytes in its stored transfer syntax."""
    c = client(settings)
    with _errors("WADO-RS retrieve", c.base_url):
        ds = c.retrieve_instance(study_uid, series_uid, sop_uid, media_types=STORED_SYNTAX)
    return part10_bytes(ds)


def retrieve_study(settings: Settings, study_uid: str) -> list[bytes]:
    """WADO-RS every instance of a study, as Part 10 bytes in their stored syntaxes."""
    c = client(settings)
    with _errors("WADO-RS retrieve", c.base_url):
        datasets = c.retrieve_study(study_uid, media_types=STORED_SYNTAX)
    if not datasets:
        raise IntegrationError(f"WADO-RS: the PACS has no instances for study {study_uid}.")
    return [part10_bytes(ds) for ds in datasets]


def part10_bytes(ds: Dataset) -> bytes:
    """A retrieved dataset as a DICOM file (pixel data bytes kept as they came)."""
    from pydicom.dataset import FileMetaDataset

    if not getattr(ds, "file_meta", None):
        ds.file_meta = FileMetaDataset()
    meta = ds.file_meta
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "TransferSyntaxUID" not in meta:
        raise IntegrationError("WADO-RS: the PACS sent an instance without a transfer syntax.")
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@dataclass(frozen=True)
class StowResult:
    stored: int
    failed: int
    retrieve_url: str | None


def store_instances(settings: Settings, datasets: Sequence[Dataset]) -> StowResult:
    """STOW-RS the datasets (one study); IntegrationError if any instance was refused."""
    if not datasets:
        raise IntegrationError("STOW-RS: nothing to store.")
    study_uid = str(datasets[0].StudyInstanceUID)
    c = client(settings)
    with _errors("STOW-RS store", c.base_url):
        response = c.store_instances(list(datasets), study_instance_uid=study_uid)
    return _stow_result(response, len(datasets))


def _stow_result(response: Any, sent: int) -> StowResult:
    failed = len(response.get("FailedSOPSequence", []) or [])
    stored = len(response.get("ReferencedSOPSequence", []) or [])
    if failed:
        raise IntegrationError(f"STOW-RS: the PACS refused {failed} of {sent} instance(s).")
    return StowResult(stored=stored, failed=0, retrieve_url=response.get("RetrieveURL"))
