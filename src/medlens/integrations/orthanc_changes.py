"""The second trigger for Orthanc-style archives: a poller on Orthanc's `/changes` feed.

Orthanc numbers every change (`Seq`); a `StableStudy` change says a study has had no new
instance for its `StableAge`. The poller reads `/changes?since=<seq>&limit=<n>`, takes in
each stable study (header check on Orthanc's series listing, then a DICOMweb pull of the
study and the same rules/identity/intake as `medlens listen`), and persists the last
handled `Seq` in the store after each change. So a study stored while MedLens was down is
found at the next start, and a crash repeats at most one change, which the idempotent
intake absorbs (the same study is the same MedLens study with its one job).

On the very first run (no `Seq` persisted) the poller starts at Orthanc's current last
change: connecting MedLens to an archive does not interpret its whole history.

`POST /v1/hooks/orthanc` (an Orthanc Lua `OnStableStudy` → `HttpPost`) only records a
wake-up (`orthanc.changes.wake`), which makes a running poller look now rather than at
its next interval; the feed stays the one source of truth.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medlens.config import Settings
from medlens.errors import MedLensError
from medlens.integrations.autoingest import IngestOutcome, Status, ingest_study, record_outcome
from medlens.integrations.errors import IntegrationError, NotConfigured, PacsUnavailable
from medlens.integrations.rules import AutoRule

log = logging.getLogger("medlens.listen")

SEQ_KEY = "orthanc.changes.seq"
WAKE_KEY = "orthanc.changes.wake"
ACTOR = "orthanc-changes"
TIMEOUT_S = 30.0

Fetch = Callable[[Settings, str], list[bytes]]  # (settings, Study Instance UID) → instances


def request_wake(store: Any) -> None:
    """Ask a running poller (this process or another) to look at the feed now."""
    store.set_integration_state(WAKE_KEY, f"{time.time():.6f}")


@dataclass
class PollReport:
    seq: int  # the last Seq handled (persisted)
    changes: int = 0  # changes read in this poll
    outcomes: list[IngestOutcome] = field(default_factory=list)


def _pull_by_dicomweb(settings: Settings, study_uid: str) -> list[bytes]:
    from medlens.integrations.dicomweb import retrieve_study

    return retrieve_study(settings, study_uid)


class ChangesPoller:
    def __init__(
        self,
        store: Any,
        settings: Settings,
        *,
        fetch: Fetch = _pull_by_dicomweb,
        interval: float | None = None,
        limit: int = 100,
        tick: float = 0.5,
        on_outcome: Callable[[IngestOutcome], None] | None = None,
    ) -> None:
        if not settings.orthanc_url:
            raise NotConfigured(
                "No Orthanc is configured to poll; set MEDLENS_ORTHANC_URL "
                "(e.g. http://127.0.0.1:8042)."
            )
        self.store, self.settings, self.fetch = store, settings, fetch
        self.base = settings.orthanc_url.rstrip("/")
        self.interval = settings.orthanc_poll_seconds if interval is None else interval
        self.limit, self.tick, self.on_outcome = limit, tick, on_outcome
        self.rule = AutoRule.from_settings(settings)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._session: Any = None

    # --- Orthanc REST -------------------------------------------------------------------
    def _get(self, path: str, **params: Any) -> Any:
        import requests

        from medlens.integrations.settings import http_session

        if self._session is None:
            self._session = http_session(self.settings)
        url = f"{self.base}{path}"
        try:
            response = self._session.get(url, params=params or None, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            msg = f"cannot reach Orthanc at {self.base} ({type(exc).__name__})"
            raise PacsUnavailable(msg) from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise IntegrationError(f"Orthanc {path} answered HTTP {response.status_code}.")
        return response.json()

    def last_seq(self) -> int:
        found = self._get("/changes", last="")
        return int((found or {}).get("Last", 0))

    # --- one poll ---------------------------------------------------------------------
    def poll_once(self) -> PollReport:
        """Handle every change since the persisted Seq (in batches of `limit`)."""
        stored = self.store.get_integration_state(SEQ_KEY)
        if stored is None:  # first run: from now on, not the archive's history
            seq = self.last_seq()
            self.store.set_integration_state(SEQ_KEY, str(seq))
            log.info("orthanc /changes: starting after Seq %d", seq)
            return PollReport(seq)
        report = PollReport(int(stored))
        while True:
            page = self._get("/changes", since=report.seq, limit=self.limit) or {}
            changes = page.get("Changes") or []
            for change in changes:
                if change.get("ChangeType") == "StableStudy":
                    outcome = self._handle(str(change.get("ID", "")))
                    report.outcomes.append(outcome)
                    if self.on_outcome is not None:
                        self.on_outcome(outcome)
                report.seq = max(report.seq, int(change["Seq"]))
                report.changes += 1
                self.store.set_integration_state(SEQ_KEY, str(report.seq))
            if page.get("Done", True) or not changes:
                return report

    def _handle(self, orthanc_id: str) -> IngestOutcome:
        try:
            return self.handle_study(orthanc_id)
        except PacsUnavailable:
            raise  # the Seq stays: this change is tried again once Orthanc is back
        except MedLensError as exc:  # this study cannot be taken in: say why, move on
            return self._skip(orthanc_id, [str(exc)], status="refused")

    def handle_study(self, orthanc_id: str) -> IngestOutcome:
        """One StableStudy: look at its series, pull it if a rule may match, take it in."""
        study = self._get(f"/studies/{orthanc_id}")
        if study is None:  # deleted from Orthanc since: nothing to do
            return self._skip(orthanc_id, ["the study is no longer in Orthanc"])
        study_uid = str(study.get("MainDicomTags", {}).get("StudyInstanceUID", ""))
        series = self._get(f"/studies/{orthanc_id}/series") or []
        decisions = [self.rule.check(s.get("MainDicomTags", {}), need_pixels=False) for s in series]
        if not any(d.accept for d in decisions):
            return self._skip(orthanc_id, sorted({d.reason for d in decisions}) or ["no series"])
        return ingest_study(
            self.store, self.settings, self.fetch(self.settings, study_uid), actor=ACTOR
        )

    def _skip(
        self, orthanc_id: str, reasons: list[str], status: Status = "skipped"
    ) -> IngestOutcome:
        # Orthanc's own study id is a hash of identifiers, not one: it names the study here.
        out = IngestOutcome(status, f"orthanc:{orthanc_id[:17]}", reasons=reasons, actor=ACTOR)
        record_outcome(self.store, self.settings, ACTOR, out)
        log.info("auto-interpret: %s", out.line())
        return out

    # --- the loop -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="medlens-changes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        backoff = self.interval
        while not self._stop.is_set():
            try:
                self.poll_once()
                backoff = self.interval
            except PacsUnavailable as exc:  # Orthanc down: the Seq waits, nothing is lost
                log.warning("orthanc /changes: %s; retrying", exc)
                backoff = min(max(backoff, 1.0) * 2, 300.0)
            except Exception:
                log.exception("orthanc /changes poll failed; retrying from the same Seq")
                backoff = min(max(backoff, 1.0) * 2, 300.0)
            self._sleep(backoff)

    def _sleep(self, seconds: float) -> None:
        """Until `seconds` pass, a wake() here, or a wake-up recorded in the store."""
        seen = self.store.get_integration_state(WAKE_KEY)
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self._wake.wait(min(self.tick, max(0.0, deadline - time.monotonic()))):
                self._wake.clear()
                return
            if self.store.get_integration_state(WAKE_KEY) != seen:
                return
