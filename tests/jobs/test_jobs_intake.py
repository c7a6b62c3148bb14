"""Intake below the server: prepare → store → queue, and the pixels decoded once."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from medlens.config import Settings
from medlens.errors import InvalidImage
from medlens.jobs import intake
from medlens.jobs.handlers import _study_for_task


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    from medlens.imaging import dicom_decode, raster

    counts: Counter[str] = Counter()
    for module, name in ((dicom_decode, "decode_pixels"), (raster, "decode_raster")):
        real = getattr(module, name)

        def counting(*a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            counts[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(module, name, counting)
    intake.DECODED.clear()
    yield counts
    intake.DECODED.clear()


def test_an_upload_is_named_by_its_position_never_its_file_name(settings, nih_images):
    prepared = intake.prepare(nih_images[0].read_bytes(), 2, settings)
    assert prepared.new.filename == intake.display_name(2) == "image 2"


def test_submit_stores_the_study_once_and_queues_one_job(store, settings, nih_images):
    prepared = [intake.prepare(nih_images[0].read_bytes(), 1, settings)]
    first = intake.submit_study(store, prepared, {"language": "en"})
    assert first.created and first.queued and first.job.kind == "interpret"
    assert first.job.payload == {"language": "en"}
    again = intake.submit_study(store, prepared, {"language": "en"})
    assert (again.study.id, again.created, again.queued) == (first.study.id, False, False)
    assert again.job.id == first.job.id
    assert len(store.list_jobs(study_id=first.study.id)) == 1
    assert store.blobs.read(prepared[0].new.sha256) == prepared[0].new.data


def test_a_refused_upload_stores_nothing(store, settings):
    with pytest.raises(InvalidImage):
        intake.prepare(b"PK\x03\x04 a zip renamed", 1, settings)
    assert store.list_studies() == [] and store.blobs.iter_shas() == []


def test_the_job_works_from_the_stored_copy_without_decoding(
    store, settings, dicom_dir, nih_images, decodes
):
    from medlens.imaging.ingest import ingest

    dicom = (dicom_dir / "RG1_J2KI.dcm").read_bytes()
    files = [dicom, nih_images[0].read_bytes()]
    prepared = [intake.prepare(data, i, settings) for i, data in enumerate(files, start=1)]
    sub = intake.submit_study(store, prepared, {"indication": "cough"})
    assert decodes == {"decode_pixels": 1, "decode_raster": 1}
    intake.DECODED.clear()  # as in a separate worker process: only the copy on disk

    study = _study_for_task(sub.job, SimpleNamespace(store=store))
    assert decodes == {"decode_pixels": 1, "decode_raster": 1}
    assert study.context.indication == "cough"
    for task_img, stored, p in zip(study.images, sub.study.images, prepared, strict=True):
        got = task_img.ingested
        fresh = ingest(p.new.data, name=stored.filename)  # what the job used to do
        assert np.array_equal(np.asarray(got.image), np.asarray(fresh.image))
        assert got.image.mode == fresh.image.mode
        assert (got.pixel_sha256, got.sha256) == (fresh.pixel_sha256, stored.sha256)
        assert got.source_name == stored.filename and got.warnings == fresh.warnings
        assert got.metadata.view_position == fresh.metadata.view_position


def test_an_old_study_is_decoded_once_then_served_from_its_new_copy(
    store, settings, dicom_dir, decodes
):
    prepared = [intake.prepare((dicom_dir / "RG1_J2KI.dcm").read_bytes(), 1, settings)]
    sub = intake.submit_study(store, prepared, {})
    sha = prepared[0].new.sha256
    store.blobs.derived_path(sha, intake.DECODED_KIND).unlink()  # stored before copies
    intake.DECODED.clear()
    ctx = SimpleNamespace(store=store)
    first = _study_for_task(sub.job, ctx)
    assert decodes["decode_pixels"] == 2  # upload + this one
    intake.DECODED.clear()
    second = _study_for_task(sub.job, ctx)
    assert decodes["decode_pixels"] == 2
    a, b = first.images[0].ingested, second.images[0].ingested
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))

    # A damaged copy is not trusted: the original is decoded again, the copy rewritten.
    store.blobs.put_derived(sha, intake.DECODED_KIND, b"not an npz")
    intake.DECODED.clear()
    assert intake.decoded_image(store.blobs, sub.study.images[0]).pixel_sha256 == a.pixel_sha256
    assert decodes["decode_pixels"] == 3


def test_deleting_a_study_removes_its_decoded_copy(store, settings, nih_images):
    prepared = [intake.prepare(nih_images[0].read_bytes(), 1, settings)]
    sub = intake.submit_study(store, prepared, {})
    copy = store.blobs.derived_path(prepared[0].new.sha256, intake.DECODED_KIND)
    assert copy.is_file()
    assert store.delete_study(sub.study.id)
    assert not copy.exists() and store.blobs.iter_shas() == []
