"""DIMSE client (pynetdicom 3.x): C-ECHO, Study Root C-FIND, C-MOVE to our own AE, C-STORE.

Pitfalls this module handles (see issue 19):
- C-STORE SCU proposes ONE transfer syntax per presentation context: offered together,
  Orthanc picks the uncompressed one and a JPEG 2000 dataset then has no context.
- The C-MOVE receiver accepts every transfer syntax, compressed ones included, so the
  PACS never has to transcode; it only accepts the node moved from (AE title + host).
- A C-MOVE destination must be known to the PACS (Orthanc: DicomModalities) as our
  `local_ae_title` at our `dicom_listen_port`; the receiver binds that port while the
  move runs (so not while `medlens listen` holds it: then the listener receives).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medlens.integrations.errors import IntegrationError, PacsUnavailable
from medlens.integrations.query import RETURN_KEYS, StudyMatch, StudyQuery

if TYPE_CHECKING:
    from pydicom import Dataset

    from medlens.config import DicomNode, Settings

TIMEOUT_S = 30.0
MOVE_TIMEOUT_S = 300.0


def _ae(settings: Settings) -> Any:
    from pynetdicom import AE

    ae = AE(ae_title=settings.local_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
    return ae


def _associate(ae: Any, node: DicomNode, what: str, **kwargs: Any) -> Any:
    where = f"{node.name} ({node.ae_title} at {node.host}:{node.port})"
    try:
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, **kwargs)
    except OSError as exc:
        raise PacsUnavailable(f"{what}: cannot connect to {where}: {exc}.") from None
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        raise IntegrationError(
            f"{what}: {where} rejected the association (is AE title "
            f"{ae.ae_title!r} at this host configured there?)."
        )
    raise PacsUnavailable(f"{what}: no association with {where} (down, or not a DICOM port?).")


@dataclass(frozen=True)
class EchoResult:
    node: str
    status: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == 0


def echo(settings: Settings, node: DicomNode) -> EchoResult:
    """C-ECHO (Verification); IntegrationError/PacsUnavailable when it fails."""
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = _ae(settings)
    ae.add_requested_context(Verification)
    start = time.monotonic()
    assoc = _associate(ae, node, "C-ECHO")
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or "Status" not in status:
        raise PacsUnavailable(f"C-ECHO: {node.name} did not answer.")
    return EchoResult(node.name, int(status.Status), time.monotonic() - start)


def find_studies(
    settings: Settings, node: DicomNode, query: StudyQuery, *, limit: int = 100
) -> list[StudyMatch]:
    """Study Root C-FIND at STUDY level with the query's terms."""
    from pydicom import Dataset
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StudyRootQueryRetrieveInformationModelFind as FIND,
    )

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    for keyword in RETURN_KEYS:
        setattr(identifier, keyword, "")
    for keyword, value in query.filters().items():
        setattr(identifier, keyword, value)
    ae = _ae(settings)
    ae.add_requested_context(FIND)
    assoc = _associate(ae, node, "C-FIND")
    matches: list[StudyMatch] = []
    try:
        for status, found in assoc.send_c_find(identifier, FIND):
            code = int(status.Status) if status and "Status" in status else None
            if code is None:
                raise PacsUnavailable(f"C-FIND: {node.name} stopped answering.")
            if code in (0xFF00, 0xFF01) and found is not None:
                matches.append(StudyMatch.from_dataset(found))
                if len(matches) >= limit:
                    assoc.send_c_cancel(1, query_model=FIND)
                    break
            elif code not in (0x0000, 0xFE00):
                raise IntegrationError(f"C-FIND: {node.name} answered status 0x{code:04X}.")
    finally:
        assoc.release()
    return matches


@dataclass
class Received:
    """What a C-MOVE brought in: Part 10 bytes by SOP Instance UID (duplicates dropped)."""

    instances: dict[str, bytes] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _addresses(host: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return {host}


def _receiver(settings: Settings, node: DicomNode, received: Received) -> Any:
    """A storage SCP on our AE title and port that takes C-STOREs from `node` only."""
    from pynetdicom import ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt

    allowed_hosts = _addresses(node.host)

    def on_store(event: Any) -> int:
        requestor = event.assoc.requestor
        if requestor.ae_title.strip() != node.ae_title or requestor.address not in allowed_hosts:
            with received.lock:
                received.refused.append(f"{requestor.ae_title.strip()}@{requestor.address}")
            return 0xA801  # refused: move destination unknown (not the node we asked)
        data = event.encoded_dataset(include_meta=True)
        with received.lock:
            received.instances.setdefault(str(event.request.AffectedSOPInstanceUID), data)
        return 0x0000

    ae = _ae(settings)
    ae.require_calling_aet = [node.ae_title]
    for cx in StoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    address = (settings.dicom_listen_host, settings.dicom_listen_port)
    try:
        return ae.start_server(address, block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    except OSError as exc:
        raise IntegrationError(
            f"C-MOVE: cannot receive on {address[0]}:{address[1]} ({exc.strerror}); if "
            "`medlens listen` runs there, it receives moved studies itself."
        ) from None


def move_study(settings: Settings, node: DicomNode, study_uid: str) -> list[bytes]:
    """C-MOVE a study from `node` to our own AE and return its instances (Part 10 bytes)."""
    from pydicom import Dataset
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StudyRootQueryRetrieveInformationModelMove as MOVE,
    )

    received = Received()
    server = _receiver(settings, node, received)
    try:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = study_uid
        ae = _ae(settings)
        ae.dimse_timeout = MOVE_TIMEOUT_S
        ae.add_requested_context(MOVE)
        assoc = _associate(ae, node, "C-MOVE")
        try:
            final = _run_move(assoc, identifier, settings.local_ae_title, MOVE, node)
        finally:
            assoc.release()
    finally:
        server.shutdown()
    if final not in (0x0000, 0xB000) or not received.instances:
        why = f"status 0x{final:04X}" if final is not None else "no final status"
        if received.refused:
            why += f"; refused stores from {', '.join(sorted(set(received.refused)))}"
        got = len(received.instances)
        raise IntegrationError(
            f"C-MOVE of study {study_uid} from {node.name}: {why}, {got} received."
        )
    return list(received.instances.values())


def _run_move(assoc: Any, identifier: Any, dest: str, model: Any, node: DicomNode) -> int | None:
    final: int | None = None
    for status, _ in assoc.send_c_move(identifier, dest, model):
        if not status or "Status" not in status:
            raise PacsUnavailable(f"C-MOVE: {node.name} stopped answering.")
        code = int(status.Status)
        if code not in (0xFF00, 0xFF01):
            final = code
    return final


def store(settings: Settings, node: DicomNode, datasets: Sequence[Dataset]) -> list[int]:
    """C-STORE SCU of the datasets to `node`; one transfer syntax per presentation context.
    Returns each dataset's status; IntegrationError if any was not stored."""
    ae = _ae(settings)
    pairs = sorted({(str(ds.SOPClassUID), _syntax(ds)) for ds in datasets})
    if len(pairs) > 128:
        raise IntegrationError("C-STORE: more than 128 (SOP class, transfer syntax) pairs.")
    for sop_class, syntax in pairs:
        ae.add_requested_context(sop_class, [syntax])
    assoc = _associate(ae, node, "C-STORE")
    statuses: list[int] = []
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if not status or "Status" not in status:
                raise PacsUnavailable(f"C-STORE: {node.name} stopped answering.")
            statuses.append(int(status.Status))
    finally:
        assoc.release()
    bad = [f"0x{s:04X}" for s in statuses if s not in (0x0000, 0xB000, 0xB007, 0xB006)]
    if bad:
        raise IntegrationError(f"C-STORE to {node.name}: {len(bad)} refused ({', '.join(bad)}).")
    return statuses


def _syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if not syntax:
        raise IntegrationError("C-STORE: a dataset has no file meta Transfer Syntax UID.")
    return str(syntax)
