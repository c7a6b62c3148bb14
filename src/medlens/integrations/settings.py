"""The configured integration endpoints, looked up with a clear error when missing.

Everything here reads `medlens.config.Settings`; nothing is contacted unless configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medlens.integrations.errors import NotConfigured

if TYPE_CHECKING:
    import requests

    from medlens.config import DicomNode, Settings


def dicom_node(settings: Settings, name: str | None = None) -> DicomNode:
    """The named DICOM node, else the first one configured (NotConfigured when none)."""
    nodes = settings.dicom_nodes
    if not nodes:
        raise NotConfigured(
            "No DICOM node is configured; add one to MEDLENS_DICOM_NODES (JSON list of "
            '{"name", "ae_title", "host", "port"}) or [[dicom_nodes]] in the config file.'
        )
    if name is None:
        return nodes[0]
    for node in nodes:
        if node.name == name or node.ae_title == name:
            return node
    known = ", ".join(n.name for n in nodes)
    raise NotConfigured(f"No DICOM node named {name!r} is configured (known: {known}).")


def node_for_ae(settings: Settings, ae_title: str) -> DicomNode | None:
    """The configured node with this AE title (calling AE of an association), if any."""
    wanted = ae_title.strip()
    return next((n for n in settings.dicom_nodes if n.ae_title.strip() == wanted), None)


def dicomweb_url(settings: Settings) -> str:
    if not settings.dicomweb_url:
        raise NotConfigured(
            "No DICOMweb server is configured; set MEDLENS_DICOMWEB_URL "
            "(e.g. http://127.0.0.1:8042/dicom-web)."
        )
    return settings.dicomweb_url.rstrip("/")


def http_session(settings: Settings, *, token_field: str = "dicomweb") -> requests.Session:
    """A requests session carrying the configured auth (bearer token, else basic)."""
    import requests

    session = requests.Session()
    session.trust_env = False  # never route a PACS request through an env proxy
    if token_field == "fhir":
        if settings.fhir_token is not None:
            session.headers["Authorization"] = f"Bearer {settings.fhir_token.get_secret_value()}"
        return session
    if settings.dicomweb_token is not None:
        session.headers["Authorization"] = f"Bearer {settings.dicomweb_token.get_secret_value()}"
    elif settings.dicomweb_user and settings.dicomweb_password is not None:
        session.auth = (settings.dicomweb_user, settings.dicomweb_password.get_secret_value())
    return session
