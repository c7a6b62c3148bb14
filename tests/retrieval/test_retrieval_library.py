"""Case library with a deterministic fake encoder: add, cache, exact search, persistence."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from retrieval_fakes import FakeEncoder

from medlens.config import Settings, load_settings
from medlens.models.registry import load_registry
from medlens.tasks.retrieval.add_cases import THUMBNAIL_PX
from medlens.tasks.retrieval.cases_csv import CaseInput, find_cases
from medlens.tasks.retrieval.library import CaseLibrary


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data")


@pytest.fixture
def record(settings: Settings):
    return load_registry(settings).get("medlens/test-medsiglip")


@pytest.fixture
def nih_dir(shared_data: Path) -> Path:
    return shared_data / "cxr" / "nih_cxr14_sample"


def test_add_search_exact_and_cached(settings, record, nih_dir) -> None:
    enc = FakeEncoder()
    cases = find_cases(nih_dir)
    assert len(cases) == 30
    with CaseLibrary.open(settings) as lib:
        rep = lib.add_cases(enc, record, cases)
        assert (rep.added, rep.embedded, rep.cached, rep.failed) == (30, 30, 0, [])
        again = lib.add_cases(enc, record, cases)  # same pixels + same encoder -> cache
        assert (again.added, again.embedded, again.cached) == (30, 0, 30)
        assert lib.size() == 30
        ids, mat = lib.db.matrix("default", lib.encoder_id)
        rng = np.random.default_rng(0)
        for q in [mat[3], mat[17], rng.standard_normal(enc.dim)]:
            res = lib.search_image(q, k=7)
            qn = q / np.linalg.norm(q)
            brute = np.argsort(-(mat @ qn), kind="stable")[:7]
            expected_ids = [lib.db.cases_by_id([int(ids[r])])[int(ids[r])].case_id for r in brute]
            assert [r.case_id for r in res] == expected_ids
            np.testing.assert_allclose([r.similarity for r in res], (mat @ qn)[brute], atol=1e-5)
        top = lib.search_image(mat[3], k=1)[0]
        assert top.similarity == pytest.approx(1.0, abs=1e-5)
        assert top.filename.endswith(".png") and top.rank == 1
        assert set(top.labels) >= {"Pneumothorax", "No Finding", "urgent"}
        assert set(top.labels.values()) <= {0, 1}  # text labels are attributes
        assert "finding_labels" in top.attributes and "finding_labels" not in top.labels
        assert top.positive_labels == [k for k, v in top.labels.items() if v == 1]


def test_persistence_across_restarts(settings, record, nih_dir) -> None:
    enc = FakeEncoder()
    q = np.random.default_rng(3).standard_normal(enc.dim)
    with CaseLibrary.open(settings, "persist") as lib:
        lib.add_cases(enc, record, find_cases(nih_dir)[:12])
        before = [(r.case_id, r.similarity) for r in lib.search_image(q, 5)]
    # A new process would open the same DB file: nothing embedded again, same answers.
    with CaseLibrary.open(settings, "persist", encoder_id="fake/encoder") as lib2:
        assert lib2.size() == 12
        after = [(r.case_id, r.similarity) for r in lib2.search_image(q, 5)]
    assert after == before
    with CaseLibrary.open(settings, "other") as empty:
        assert empty.search_image(q, 5) == []


def test_ivf_index_file_persisted_and_rebuilt_when_stale(settings, record, nih_dir) -> None:
    enc = FakeEncoder()
    cases = find_cases(nih_dir)
    q = np.random.default_rng(4).standard_normal(enc.dim)
    with CaseLibrary.open(settings, "big", index="ivf") as lib:
        lib.add_cases(enc, record, cases[:20])
        res = lib.search_image(q, 5)
        path = lib._index_path(lib.encoder_id)
        assert path.is_file()
        exact = CaseLibrary.open(settings, "big", "fake/encoder", index="exact")
        assert [r.case_id for r in exact.search_image(q, 5)] == [r.case_id for r in res]
        exact.close()
        mtime = path.stat().st_mtime_ns
    with CaseLibrary.open(settings, "big", "fake/encoder", index="ivf") as lib:
        lib.search_image(q, 5)
        assert path.stat().st_mtime_ns == mtime  # fresh index reused, not rebuilt
        lib.add_cases(enc, record, cases[20:])
        assert len(lib.search_image(q, 30)) == 30  # stale index rebuilt with the new cases
        assert path.stat().st_mtime_ns != mtime


def test_text_search_and_thumbnails(settings, record, nih_dir) -> None:
    enc = FakeEncoder()
    with CaseLibrary.open(settings) as lib:
        lib.add_cases(enc, record, find_cases(nih_dir)[:5])
        _ids, mat = lib.db.matrix("default", lib.encoder_id)
        enc.text_vectors["that one"] = mat[2]
        res = lib.search_text(enc, "that one", k=2)
        assert res[0].similarity == pytest.approx(1.0, abs=1e-5)
        thumb = Path(res[0].thumbnail_path)
        with Image.open(io.BytesIO(thumb.read_bytes())) as im:
            assert im.format == "PNG" and max(im.size) <= THUMBNAIL_PX
            assert not im.info.get("exif") and not getattr(im, "text", {})


def test_bad_image_is_reported_not_fatal(settings, record, nih_dir, tmp_path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    good = find_cases(nih_dir)[:2]
    with CaseLibrary.open(settings) as lib:
        rep = lib.add_cases(FakeEncoder(), record, [*good, CaseInput(bad, "bad")])
    assert rep.added == 2 and [c for c, _ in rep.failed] == ["bad"]


def test_labelled_embeddings_for_probes(settings, record, shared_data) -> None:
    enc = FakeEncoder()
    with CaseLibrary.open(settings, "covid") as lib:
        cases = find_cases(shared_data / "cxr" / "covid_chestxray" / "metadata.csv")[:16]
        lib.add_cases(enc, record, cases)
        x, y, _names = lib.labelled_embeddings("urgent")
        known = [c for c in cases if "urgent" in c.labels]
        assert x.shape == (len(known), enc.dim)
        assert y.sum() == sum(c.labels["urgent"] for c in known)
        with pytest.raises(Exception, match="Labels present"):
            lib.labelled_embeddings("no-such-label")


def test_second_encoder_embeds_stored_images_without_mixing_spaces(settings, record,
                                                                    nih_dir) -> None:
    enc_a = FakeEncoder(dim=32)
    enc_b = FakeEncoder(dim=24, model_id="fake/other", weights_hash="b" * 64)
    with CaseLibrary.open(settings, "two") as lib:
        lib.add_cases(enc_a, record, find_cases(nih_dir)[:6])
        q_b = np.random.default_rng(9).standard_normal(24)
        lib.use_encoder(enc_b)
        assert lib.search_image(q_b, 3) == []  # no vectors for B yet: nothing, not A's
        rep = lib.embed_missing(enc_b, record)  # from the stored de-identified blobs
        assert rep.embedded == 6 and not rep.failed
        assert len(lib.search_image(q_b, 3)) == 3
        lib.use_encoder(enc_a)
        with pytest.raises(Exception, match="24 dimensions"):
            lib.search_image(q_b, 3)
    # A bare registry id resolves to the stored `id@weights` key.
    with CaseLibrary.open(settings, "two", encoder_id="fake/other") as lib2:
        assert lib2.encoder_id.startswith("fake/other@") and len(lib2.search_image(q_b, 2)) == 2


def test_vector_snapshot_survives_restart_and_goes_stale(settings, record, nih_dir) -> None:
    enc = FakeEncoder()
    cases = find_cases(nih_dir)
    q = np.random.default_rng(11).standard_normal(enc.dim)
    with CaseLibrary.open(settings, "snap", snapshot_min_size=1) as lib:
        lib.add_cases(enc, record, cases[:10])
        first = [r.case_id for r in lib.search_image(q, 5)]
        snap = lib._index_path(lib.encoder_id)
        vec = snap.with_name(snap.name + ".vectors.npy")
        assert vec.is_file()
    with CaseLibrary.open(settings, "snap", "fake/encoder", snapshot_min_size=1) as lib:
        lib.db.matrix = None  # type: ignore[assignment]  # must come from the snapshot
        assert [r.case_id for r in lib.search_image(q, 5)] == first
    with CaseLibrary.open(settings, "snap", snapshot_min_size=1) as lib:
        lib.add_cases(enc, record, cases[10:])  # generation bumped: snapshot is stale
        assert lib.search_image(q, 30)[-1].rank == 30
        assert np.load(vec).shape[0] == 30
