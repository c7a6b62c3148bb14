"""Radiologist review records on both backends: versions, one signature, addenda."""

from __future__ import annotations

import pytest

from medlens.errors import Conflict
from medlens.store.review import addendum_document, sha256_of


def _content(text: str) -> dict:
    return {"findings": text, "impression": f"Impression: {text}",
            "finding_reviews": [{"label": "Effusion", "verdict": "agree", "comment": ""}]}


def _study(store, new_image, payload: bytes = b"img") -> str:
    study, _ = store.create_study([new_image(payload)], {})
    return study.id


def test_versions_are_numbered_and_kept(store, new_image):
    sid = _study(store, new_image)
    v1 = store.add_report_version(sid, _content("one"), author_id="u1", author_name="Dr A",
                                  base_version=0)
    v2 = store.add_report_version(sid, _content("two ünïcode"), author_id="u2",
                                  author_name="Dr B")
    assert (v1.version, v2.version) == (1, 2)
    got = store.list_report_versions(sid)
    assert [v.content for v in got] == [_content("one"), _content("two ünïcode")]
    assert [v.author_name for v in got] == ["Dr A", "Dr B"]
    assert got[1].created_at == v2.created_at and got[1].created_at >= got[0].created_at
    with pytest.raises(Conflict, match="saved meanwhile"):
        store.add_report_version(sid, _content("stale"), author_id="u1", author_name="Dr A",
                                 base_version=1)
    assert len(store.list_report_versions(sid)) == 2


def test_sign_freezes_the_latest_version_with_a_recomputable_hash(store, new_image):
    sid = _study(store, new_image)
    with pytest.raises(Conflict, match="Nothing to sign"):
        store.sign_report(sid, signer_id="u1", signer_name="Dr A")
    store.add_report_version(sid, _content("one"), author_id="u1", author_name="Dr A")
    store.add_report_version(sid, _content("two"), author_id="u1", author_name="Dr A")
    with pytest.raises(Conflict, match="latest"):
        store.sign_report(sid, signer_id="u1", signer_name="Dr A", version=1)
    sig = store.sign_report(sid, signer_id="u1", signer_name="Dr A", version=2)
    assert store.get_report_signature(sid) == sig
    assert sig.version == 2
    assert sig.sha256 == sha256_of(sig.document(_content("two")))
    assert sig.sha256 != sha256_of(sig.document(_content("one")))
    with pytest.raises(Conflict, match="already signed"):
        store.sign_report(sid, signer_id="u2", signer_name="Dr B")
    with pytest.raises(Conflict, match="signed"):
        store.add_report_version(sid, _content("three"), author_id="u1", author_name="Dr A")
    assert [v.version for v in store.list_report_versions(sid)] == [1, 2]
    assert store.signed_study_ids([sid, "other"]) == {sid}
    assert store.signed_study_ids([]) == set()


def test_the_database_itself_refuses_overwrites(store, new_image):
    sid = _study(store, new_image)
    store.add_report_version(sid, _content("one"), author_id="u1", author_name="Dr A")
    store.sign_report(sid, signer_id="u1", signer_name="Dr A")
    store.add_report_addendum(sid, "late note", author_id="u1", author_name="Dr A")
    for sql in ("UPDATE report_versions SET author_name = 'x'",
                "UPDATE report_signatures SET signer_name = 'x'",
                "UPDATE report_addenda SET text = 'x'",
                "INSERT INTO report_versions (study_id, version, author_name, content, created_at)"
                f" VALUES ('{sid}', 9, 'x', '{{}}', '2026-01-01T00:00:00+00:00')"):
        with pytest.raises(Exception, match=r"never|signed"), store._write() as c:
            c.execute(sql)
    assert store.list_report_addenda(sid)[0].text == "late note"
    assert store.list_report_versions(sid)[0].author_name == "Dr A"


def test_addenda_need_a_signature_and_chain_to_it(store, new_image):
    sid = _study(store, new_image)
    with pytest.raises(Conflict, match="not signed"):
        store.add_report_addendum(sid, "x", author_id="u1", author_name="Dr A")
    store.add_report_version(sid, _content("one"), author_id="u1", author_name="Dr A")
    sig = store.sign_report(sid, signer_id="u1", signer_name="Dr A")
    a1 = store.add_report_addendum(sid, "first", author_id="u1", author_name="Dr A")
    a2 = store.add_report_addendum(sid, "second", author_id=None, author_name="Dr B")
    assert [a.seq for a in store.list_report_addenda(sid)] == [1, 2]
    assert store.list_report_addenda(sid) == [a1, a2]
    assert a2.sha256 == sha256_of(addendum_document(sig.sha256, 2, "second", None, "Dr B",
                                                    a2.created_at))


def test_deleting_the_study_removes_its_review(store, new_image):
    sid = _study(store, new_image)
    store.add_report_version(sid, _content("one"), author_id="u1", author_name="Dr A")
    store.sign_report(sid, signer_id="u1", signer_name="Dr A")
    store.add_report_addendum(sid, "x", author_id="u1", author_name="Dr A")
    assert store.delete_study(sid)
    assert store.list_report_versions(sid) == [] and store.get_report_signature(sid) is None
    assert store.list_report_addenda(sid) == []
