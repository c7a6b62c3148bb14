"""Errors of the integration layer: one line each, saying what to check."""

from __future__ import annotations

from medlens.errors import ConfigError, MedLensError


class IntegrationError(MedLensError, code="integration_error", http_status=502):
    """A remote system (PACS, FHIR server) answered, but not as needed."""


class PacsUnavailable(IntegrationError, code="pacs_unavailable", http_status=503):
    """The remote system could not be reached (down, wrong host/port, refused)."""


class NotConfigured(ConfigError, code="not_configured"):
    """The destination asked for is not configured, so it is never contacted."""
