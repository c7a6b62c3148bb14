"""The streaming request-size cap: 413 before the body is read, with or without a
(truthful) Content-Length."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medlens.server.limits import BodySizeLimitMiddleware

MB = 1024 * 1024


def test_declared_oversize_is_413(client_factory):
    with client_factory(max_upload_mb=1) as client:
        r = client.post("/v1/studies", files=[("files", ("a.png", b"\0" * (2 * MB), "image/png"))])
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"


def test_streamed_oversize_without_content_length_is_413(client_factory):
    """(TestClient buffers the body; the real-server test in test_server_live.py shows the
    413 arrives while the client is still sending.)"""

    def body():
        for _ in range(64):
            yield b"\0" * (64 * 1024)

    with client_factory(max_upload_mb=1) as client:
        r = client.post("/v1/studies", content=body(),
                        headers={"Content-Type": "multipart/form-data; boundary=xyz"})
        assert r.status_code == 413


def _run_asgi(app, headers, chunks):
    sent: list[dict] = []
    received = {"n": 0}

    async def receive():
        if received["n"] < len(chunks):
            received["n"] += 1
            return {"type": "http.request", "body": chunks[received["n"] - 1],
                    "more_body": received["n"] < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent, received["n"]


async def _reads_everything(scope, receive, send):
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_false_content_length_is_caught_while_streaming():
    app = BodySizeLimitMiddleware(_reads_everything, max_bytes=1000)
    chunks = [b"x" * 600] * 10
    sent, reads = _run_asgi(app, [(b"content-length", b"10")], chunks)
    assert sent[0]["status"] == 413
    assert reads == 1  # refused at the first chunk that exceeded the declared length


def test_missing_content_length_counts_bytes():
    app = BodySizeLimitMiddleware(_reads_everything, max_bytes=1000)
    sent, reads = _run_asgi(app, [], [b"x" * 400] * 10)
    assert sent[0]["status"] == 413 and reads == 3
    sent, _ = _run_asgi(app, [], [b"x" * 400, b"x" * 400])
    assert sent[0]["status"] == 200


def test_declared_oversize_is_refused_without_reading():
    app = BodySizeLimitMiddleware(_reads_everything, max_bytes=1000)
    sent, reads = _run_asgi(app, [(b"content-length", b"5000")], [b"x" * 5000])
    assert sent[0]["status"] == 413 and reads == 0


def _dicom_with(description: str, patient: str) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.PatientName, ds.PatientID, ds.StudyDescription = patient, "MRN-4455", description
    ds.BurnedInAnnotation = "NO"
    yy, xx = np.mgrid[0:128, 0:128]
    ds.set_pixel_data(((yy * 13 + xx * 7) % 4096).astype(np.uint16), "MONOCHROME2", 12)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def test_dicom_tags_are_deidentified_and_escaped(client_factory, upload):
    script = '<script>alert("dicom")</script>'
    data = _dicom_with(description=f"CHEST PA {script}", patient=f"Doe^Jane{script}")
    with client_factory() as client:
        r = upload(client, ("study.dcm", data))
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        html = client.get(f"/studies/{sid}").text
        assert "<script>alert" not in html
        assert "Doe^Jane" not in html and "MRN-4455" not in html
        store = client.app.state.medlens.store
        blob = store.blobs.read(store.get_study(sid).images[0].sha256)
        assert b"Doe^Jane" not in blob and b"MRN-4455" not in blob
        stored = pydicom.dcmread(io.BytesIO(blob))
        assert stored.get("PatientIdentityRemoved") == "YES"
        # Window/level: defaults from the stored bit depth, and a re-render.
        window = client.get(f"/v1/studies/{sid}/images/0/window").json()
        assert window["min"] == 0 and window["max"] > 255
        narrow = client.get(f"/v1/studies/{sid}/images/0.png",
                            params={"wc": window["center"], "ww": 100})
        wide = client.get(f"/v1/studies/{sid}/images/0.png")
        assert narrow.status_code == wide.status_code == 200
        assert narrow.content != wide.content


def test_uploads_never_spill_to_temporary_files(client_factory, upload, monkeypatch):
    """An original (not yet de-identified) upload stays in memory: no temp file on disk."""
    import tempfile

    from PIL import Image

    rolled: list[int] = []
    original = tempfile.SpooledTemporaryFile.rollover

    def tracking_rollover(self):
        rolled.append(1)
        return original(self)

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", tracking_rollover)
    noise = np.random.default_rng(0).integers(0, 255, (1100, 1100), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    assert len(buf.getvalue()) > 1024 * 1024  # above Starlette's default 1 MB spool
    with client_factory() as client:
        r = upload(client, ("big.png", buf.getvalue()))
        assert r.status_code in (201, 422), r.text
    assert rolled == []
