"""HTTP to an OpenAI-compatible server: timeouts, bounded retries, errors naming the URL.

Retries (exponential backoff with full jitter, honouring Retry-After) cover what is
worth retrying: connection failures, timeouts, 408/429 and 5xx. Other 4xx are the
caller's mistake and fail at once with the server's message. The API key lives in a
`SecretStr` until the moment a request is built; it is never logged or put in errors.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from medlens.errors import RemoteModelError
from medlens.models.backends.openai_wire import error_text, redact_url

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRY_EXCEPTIONS = (httpx.TransportError,)  # connect/read/write/pool errors and timeouts


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before retry number `attempt` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.backoff_max_s)
        cap = min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt - 1)))
        # Full jitter: many clients retrying a restarted server do not stampede together.
        return random.uniform(0.0, cap)


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host unreachable"
    return type(exc).__name__


class RemoteClient:
    """A thin httpx client for one server base URL (e.g. http://host:8000/v1)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: SecretStr | None = None,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.shown_url = redact_url(self.base_url)
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self._api_key = api_key
        self._sleep = sleep
        # Read timeout = the longest silence allowed between bytes (a stream keeps it alive).
        timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"RemoteClient({self.shown_url!r}, api_key={key})"

    def close(self) -> None:
        self._client.close()

    @property
    def root_url(self) -> str:
        """Server root (tokenize endpoints live beside /v1, not under it)."""
        base = self.base_url
        return base[: -len("/v1")] if base.endswith("/v1") else base

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._api_key is not None and self._api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        return headers

    def url(self, path: str, *, root: bool = False) -> str:
        return f"{self.root_url if root else self.base_url}/{path.lstrip('/')}"

    # --- errors -------------------------------------------------------------------
    def status_error(self, resp: httpx.Response, what: str) -> RemoteModelError:
        try:
            detail = error_text(resp.json())
        except ValueError:
            detail = resp.text[:300]
        hint = ""
        if resp.status_code in (401, 403):
            hint = " Check the API key (MEDLENS_REMOTE_API_KEY)."
        elif resp.status_code == 404:
            hint = " Check the URL (it usually ends in /v1) and the model name."
        return RemoteModelError(
            f"Remote model server {self.shown_url} refused {what}: HTTP {resp.status_code}"
            f" {detail}.{hint}".replace("..", ".")
        )

    def transport_error(self, exc: Exception, what: str, attempts: int) -> RemoteModelError:
        return RemoteModelError(
            f"Cannot reach the remote model server at {self.shown_url} for {what}: "
            f"{_describe(exc)} after {attempts} attempt(s). Is the server running and the "
            "URL right?"
        )

    def wait_before_retry(self, attempt: int, why: str, retry_after: float | None = None) -> None:
        delay = self.retry.delay(attempt, retry_after)
        log.warning(
            "remote %s: %s; retry %d/%d in %.1f s",
            self.shown_url,
            why,
            attempt,
            self.retry.max_retries,
            delay,
        )
        self._sleep(delay)

    # --- requests -----------------------------------------------------------------
    def request_json(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        what: str,
        root: bool = False,
    ) -> tuple[int, Any]:
        """(status, parsed JSON) with retries; raises RemoteModelError on failure.

        404 is returned rather than raised so callers can probe optional endpoints.
        """
        url = self.url(path, root=root)
        attempt = 0
        while True:
            try:
                resp = self._client.request(method, url, json=body, headers=self._headers())
            except RETRY_EXCEPTIONS as exc:
                attempt += 1
                if attempt > self.retry.max_retries:
                    raise self.transport_error(exc, what, attempt) from None
                self.wait_before_retry(attempt, _describe(exc))
                continue
            if resp.status_code in RETRY_STATUS and attempt < self.retry.max_retries:
                attempt += 1
                self.wait_before_retry(attempt, f"HTTP {resp.status_code}", _retry_after(resp))
                continue
            if resp.status_code == 404:
                return 404, None
            if resp.status_code >= 400:
                raise self.status_error(resp, what)
            try:
                return resp.status_code, resp.json()
            except ValueError:
                raise RemoteModelError(
                    f"Remote model server {self.shown_url} sent a non-JSON answer to {what}."
                ) from None

    @contextmanager
    def open_stream(
        self, path: str, body: dict[str, Any], *, what: str
    ) -> Iterator[httpx.Response]:
        """A streaming POST whose status is 2xx (retrying until then)."""
        url = self.url(path)
        attempt = 0
        while True:
            try:
                ctx = self._client.stream("POST", url, json=body, headers=self._headers())
                resp = ctx.__enter__()
            except RETRY_EXCEPTIONS as exc:
                attempt += 1
                if attempt > self.retry.max_retries:
                    raise self.transport_error(exc, what, attempt) from None
                self.wait_before_retry(attempt, _describe(exc))
                continue
            if resp.status_code >= 400:
                resp.read()
                ctx.__exit__(None, None, None)
                if resp.status_code in RETRY_STATUS and attempt < self.retry.max_retries:
                    attempt += 1
                    self.wait_before_retry(attempt, f"HTTP {resp.status_code}", _retry_after(resp))
                    continue
                raise self.status_error(resp, what)
            try:
                yield resp
            finally:
                ctx.__exit__(None, None, None)
            return
