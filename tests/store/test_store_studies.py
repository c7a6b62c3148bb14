"""Studies, images, interpretations, messages and audit on both backends."""

from __future__ import annotations

import threading

import pytest

from medlens.errors import Conflict
from medlens.store import open_store
from medlens.tasks.interpret.result import Interpretation, Provenance, ReportSections, SimilarCase


def _interp(text: str, study_id: str = "s") -> Interpretation:
    return Interpretation(
        study_id=study_id,
        status="complete",
        report=ReportSections(findings=text, raw_text=text),
        provenance=Provenance(medlens_version="test", created_at="2026-01-01T00:00:00Z"),
    )


def test_create_and_get_study_round_trips_everything(store, new_image):
    imgs = [new_image(b"image-a", "a.png"), new_image(b"image-b", "b.png")]
    study, created = store.create_study(imgs, {"indication": "cough", "age": 61}, owner="tok1")
    assert created
    got = store.get_study(study.id)
    assert got == study
    assert got.context == {"indication": "cough", "age": 61}
    assert got.owner == "tok1"
    assert [i.filename for i in got.images] == ["a.png", "b.png"]
    assert [i.position for i in got.images] == [0, 1]
    assert got.images[0].metadata == {"rows": 1}
    assert all(store.blobs.exists(i.sha256) for i in got.images)
    assert store.get_study("nope") is None


def test_same_image_set_in_any_order_is_one_study(store, new_image):
    a, b = new_image(b"one"), new_image(b"two")
    first, created1 = store.create_study([a, b], {})
    second, created2 = store.create_study([b, a], {"other": "context"})
    assert created1 and not created2
    assert second.id == first.id
    assert len(store.list_studies()) == 1


def test_idempotency_key_returns_same_study_and_rejects_other_images(store, new_image):
    a = new_image(b"key-a")
    first, _ = store.create_study([a], {}, idempotency_key="k-1")
    again, created = store.create_study([a], {}, idempotency_key="k-1")
    assert not created and again.id == first.id
    with pytest.raises(Conflict):
        store.create_study([new_image(b"different")], {}, idempotency_key="k-1")


def test_idempotency_is_scoped_per_owner(store, new_image):
    a = new_image(b"shared-bytes")
    s1, c1 = store.create_study([a], {}, owner="alice")
    s2, c2 = store.create_study([a], {}, owner="bob")
    assert c1 and c2 and s1.id != s2.id


def test_concurrent_duplicate_submissions_create_one_study(db_url, tmp_path, new_image):
    store = open_store(db_url, images_dir=tmp_path / "img")
    imgs = [new_image(b"dup-1"), new_image(b"dup-2")]
    results: list = []
    errors: list = []
    barrier = threading.Barrier(8)

    def submit(i: int) -> None:
        try:
            barrier.wait()
            order = imgs if i % 2 else list(reversed(imgs))
            key = "same-key" if i % 3 == 0 else None
            results.append(store.create_study(order, {"i": i}, idempotency_key=key))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert not errors
    assert len({s.id for s, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_list_studies_newest_first_with_paging(store, new_image):
    ids = [store.create_study([new_image(f"p{i}".encode())], {})[0].id for i in range(5)]
    listed = [s.id for s in store.list_studies(limit=10)]
    assert listed == list(reversed(ids))
    assert [s.id for s in store.list_studies(limit=2, offset=1)] == listed[1:3]


def test_delete_removes_rows_and_unreferenced_blobs_but_keeps_audit(store, new_image):
    shared, own = new_image(b"shared"), new_image(b"own")
    s1, _ = store.create_study([shared, own], {})
    s2, _ = store.create_study([shared], {})
    job = store.enqueue_job("interpret", {}, study_id=s1.id)
    store.save_interpretation(s1.id, job.id, _interp("x"))
    store.add_message(s1.id, "user", "why?")
    store.audit("cli", "upload", study_id=s1.id)

    assert store.delete_study(s1.id)
    assert store.get_study(s1.id) is None
    assert store.get_interpretation(s1.id) is None
    assert store.list_messages(s1.id) == []
    assert store.get_job(job.id) is None
    assert not store.blobs.exists(own.sha256)
    assert store.blobs.exists(shared.sha256)  # still used by s2
    assert [e.study_id for e in store.list_audit()] == [s1.id]
    assert not store.delete_study(s1.id)

    store.delete_study(s2.id)
    assert not store.blobs.exists(shared.sha256)
    assert store.blobs.iter_shas() == []


def test_interpretation_upsert_and_messages_sequence(store, new_image):
    study, _ = store.create_study([new_image(b"m")], {})
    assert store.get_interpretation(study.id) is None
    store.save_interpretation(study.id, "job-1", _interp("é ü"))
    store.save_interpretation(study.id, "job-2", _interp("v2"))
    assert store.get_interpretation(study.id) == _interp("v2")
    m1 = store.add_message(study.id, "user", "Is there a nodule?")
    m2 = store.add_message(study.id, "assistant", "No.", job_id="job-3")
    assert (m1.seq, m2.seq) == (1, 2)
    assert store.list_messages(study.id) == [m1, m2]


def test_messages_need_an_existing_study(store):
    with pytest.raises(Exception):  # noqa: B017 - FK violation type differs per driver
        store.add_message("missing", "user", "hi")


def test_audit_is_append_only(store, new_image):
    store.audit("tok", "view", study_id="s1", detail={"ip": "127.0.0.1"})
    store.audit("tok", "delete", study_id="s1", outcome="denied")
    events = store.list_audit()
    assert [e.action for e in events] == ["delete", "view"]
    assert events[1].detail == {"ip": "127.0.0.1"}
    assert events[0].outcome == "denied"
    assert not hasattr(store, "delete_audit")
    for sql in ("UPDATE audit_events SET outcome = 'ok'", "DELETE FROM audit_events"):
        with pytest.raises(Exception, match="append-only"), store._write() as c:
            c.execute(sql)
    if not store.url.startswith("sqlite"):
        with pytest.raises(Exception, match="append-only"), store._write() as c:
            c.execute("TRUNCATE audit_events")
    assert len(store.list_audit()) == 2


def test_migrations_are_idempotent(db_url, tmp_path):
    s1 = open_store(db_url, images_dir=tmp_path / "i")
    assert s1.migrate() == []
    s1.close()
    s2 = open_store(db_url, images_dir=tmp_path / "i")
    assert s2.migrate() == []
    s2.close()


def test_non_json_results_are_refused_cleanly(store, new_image):
    study, _ = store.create_study([new_image(b"nan")], {})
    with pytest.raises(ValueError):
        bad = _interp("nan")
        bad.similar_cases = [SimilarCase(case_id="c", score=float("nan"))]
        store.save_interpretation(study.id, "j", bad)
    assert store.get_interpretation(study.id) is None
