"""`medlens listen`: a DICOM C-STORE SCP that spools what arrives and auto-interprets it.

- Accepts every storage SOP class with every transfer syntax pynetdicom knows, compressed
  ones included, so a PACS sends what it stores (JPEG 2000...) and never has to transcode;
  decoding happens later, in the normal intake. Verification (C-ECHO) is accepted too.
- Only from the configured nodes (`settings.dicom_nodes`): the calling AE title must be
  one of theirs AND the connection must come from that node's host; the called AE title
  must be MedLens's own (`settings.local_ae_title`). Anything else is rejected at
  association time (and audited, with AE title and address only).
- Binds `settings.dicom_listen_host` (loopback by default) on `dicom_listen_port`.
- Each instance is written to the spool (fsync'ed, 0600) before success is answered;
  instances the rules turn away leave only a reason. A study is ingested once nothing has
  arrived for it for `auto_interpret.quiet_seconds`; its spool files are deleted only
  after the intake took them (see spool.py and autoingest.py), and whatever is in the
  spool at start is ingested then: a crash between receipt and ingest loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from medlens.config import Settings
from medlens.integrations.autoingest import IngestOutcome, ingest_study, read_header
from medlens.integrations.rules import AutoRule
from medlens.integrations.spool import Spool, SpooledStudy

log = logging.getLogger("medlens.listen")

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
ACTOR = "dicom-listener"


def spool_dir(settings: Settings) -> Path:
    return settings.data_path / "spool" / "dicom"


def _addresses(host: str) -> set[str]:
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:  # a name that does not resolve matches nobody
        return set()


def refusal(settings: Settings, calling_ae: str, address: str) -> str | None:
    """Why an association from (calling AE title, source address) is refused; None: allowed."""
    nodes = [n for n in settings.dicom_nodes if n.ae_title.strip() == calling_ae.strip()]
    if not nodes:
        return f"calling AE title {calling_ae!r} is not a configured DICOM node"
    if not any(address in _addresses(n.host) for n in nodes):
        return f"AE title {calling_ae!r} is configured for another host than {address}"
    return None


class Listener:
    """The SCP plus its ingest loop. `start()` returns once both are running."""

    def __init__(
        self,
        store: Any,
        settings: Settings,
        *,
        host: str | None = None,
        port: int | None = None,
        quiet_seconds: float | None = None,
        tick: float = 0.5,
        on_outcome: Callable[[IngestOutcome], None] | None = None,
    ) -> None:
        from medlens.imaging.deid import site_secret

        self.store, self.settings = store, settings
        self.host = host or settings.dicom_listen_host
        self.port = settings.dicom_listen_port if port is None else port
        rules = settings.auto_interpret
        self.quiet_seconds = rules.quiet_seconds if quiet_seconds is None else quiet_seconds
        self.rule = AutoRule.from_settings(settings)
        self.spool = Spool(spool_dir(settings), site_secret(settings))
        self.on_outcome = on_outcome
        self._tick = tick
        self._stop = threading.Event()
        self._server: Any = None
        self._loop: threading.Thread | None = None

    # --- the SCP --------------------------------------------------------------------
    def start(self) -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        ae = AE(ae_title=self.settings.local_ae_title)
        ae.require_called_aet = True
        ae.maximum_associations = 8
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        handlers = [(evt.EVT_REQUESTED, self._on_requested), (evt.EVT_C_STORE, self._on_store)]
        self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        self.port = int(self._server.server_address[1])
        self._loop = threading.Thread(target=self._run_loop, name="medlens-listen", daemon=True)
        self._loop.start()
        log.info("listening as %s on %s:%d", self.settings.local_ae_title, self.host, self.port)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self._loop is not None:
            self._loop.join(timeout=30)

    def _on_requested(self, event: Any) -> None:
        requestor = event.assoc.requestor
        # The requestor's AE title is filled in only during negotiation: read the request.
        calling_ae = str(requestor.primitive.calling_ae_title or "").strip()
        why = refusal(self.settings, calling_ae, requestor.address)
        if why is None:
            return
        log.warning("association rejected: %s", why)
        try:
            self.store.audit(
                ACTOR,
                "integration.listen.rejected",
                outcome="refused",
                detail={"calling_ae": calling_ae, "address": requestor.address},
            )
        finally:  # an audit failure must not keep the door open
            # Rejected permanent, by the service user, calling AE title not recognised.
            event.assoc.acse.send_reject(0x01, 0x01, 0x03)

    def _on_store(self, event: Any) -> int:
        try:
            data = event.encoded_dataset(include_meta=True)
            header = read_header(data)
            study_uid = str(header.StudyInstanceUID)
            sop_uid = str(header.SOPInstanceUID)
        except Exception as exc:
            log.warning("instance refused: cannot read it (%s)", type(exc).__name__)
            return STATUS_CANNOT_UNDERSTAND
        decision = self.rule.check(header)
        try:
            if decision.accept:
                new = self.spool.put(study_uid, sop_uid, data)
            else:
                new = self.spool.put_skip(study_uid, sop_uid, decision.reason)
        except OSError as exc:  # disk full, permissions: the sender keeps it and retries
            log.error("cannot spool an instance: %s", exc.strerror or exc)
            return STATUS_OUT_OF_RESOURCES
        log.info(
            "received ref=%s %s%s",
            self.spool.key(study_uid)[:12],
            "spooled" if decision.accept else f"turned away ({decision.reason})",
            "" if new else " (duplicate)",
        )
        return STATUS_SUCCESS

    # --- the ingest loop -------------------------------------------------------------
    def _run_loop(self) -> None:
        backoff = self._tick
        while not self._stop.is_set():
            try:
                self.ingest_ready()
                backoff = self._tick
            except Exception:  # the store is down, say: keep the spool, try again later
                log.exception("ingest failed; the spool is kept and retried")
                backoff = min(backoff * 2, 30.0)
            self._stop.wait(backoff)

    def ingest_ready(self, now: float | None = None) -> list[IngestOutcome]:
        """Ingest every stable study in the spool (one pass); their outcomes."""
        done = []
        for study in self.spool.stable(self.quiet_seconds, now=now):
            outcome = self._ingest(study)
            if outcome is not None:
                done.append(outcome)
                if self.on_outcome is not None:
                    self.on_outcome(outcome)
        return done

    def _ingest(self, study: SpooledStudy) -> IngestOutcome | None:
        from medlens.errors import MedLensError

        datas = list(_read_all(study.instances))
        try:
            if datas:
                outcome = ingest_study(
                    self.store, self.settings, datas, actor=ACTOR, skipped=study.skipped
                )
            else:
                outcome = _skipped_only(self.store, self.settings, study)
        except MedLensError as exc:  # unusable as a whole: say why, do not retry forever
            log.warning("study %s not taken in: %s", study.key[:12], exc)
            self.store.audit(
                ACTOR,
                "integration.auto_interpret",
                outcome="refused",
                detail={"spool": study.key[:12], "reasons": [str(exc)]},
            )
            outcome = None
        self.spool.remove(study)
        return outcome


def _read_all(paths: Iterable[Path]) -> Iterable[bytes]:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            yield path.read_bytes()


def _skipped_only(store: Any, settings: Settings, study: SpooledStudy) -> IngestOutcome:
    from medlens.integrations.autoingest import record_outcome

    reasons = sorted(set(study.skipped))
    # The spool key and the study ref are the same keyed hash of the Study Instance UID.
    out = IngestOutcome("skipped", study.key[:24], reasons=reasons, actor=ACTOR)
    record_outcome(store, settings, ACTOR, out)
    log.info("auto-interpret: %s", out.line())
    return out
