"""Radiologist review records: report versions, the signature, addenda (plain data).

Nothing here is ever overwritten: every save is a new version, a signature freezes one
version (the database refuses new versions and any UPDATE once signed), and later
corrections are addenda. Hashes are SHA-256 over canonical JSON (sorted keys, no
whitespace, UTF-8), so anyone can recompute them from the exported fields.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


def canonical_json(obj: Any) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_of(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj)).hexdigest()


@dataclass(frozen=True)
class ReportVersion:
    study_id: str
    version: int  # 1, 2, ... per study
    author_id: str | None
    author_name: str
    content: dict[str, Any]  # findings, impression, finding_reviews [{label, verdict, comment}]
    created_at: str


@dataclass(frozen=True)
class ReportSignature:
    study_id: str
    version: int  # the signed (frozen) version
    signer_id: str | None
    signer_name: str
    signed_at: str
    sha256: str  # of signed_document(...)

    def document(self, content: dict[str, Any]) -> dict[str, Any]:
        return signed_document(
            self.study_id, self.version, content, self.signer_id, self.signer_name, self.signed_at
        )


@dataclass(frozen=True)
class Addendum:
    study_id: str
    seq: int
    text: str
    author_id: str | None
    author_name: str
    created_at: str
    sha256: str  # of addendum_document(...), chained to the signature's hash


def signed_document(
    study_id: str,
    version: int,
    content: dict[str, Any],
    signer_id: str | None,
    signer_name: str,
    signed_at: str,
) -> dict[str, Any]:
    """What a signature's hash covers: the frozen content plus who signed it and when."""
    return {
        "study_id": study_id,
        "version": version,
        "content": content,
        "signer_id": signer_id,
        "signer_name": signer_name,
        "signed_at": signed_at,
    }


def addendum_document(
    signature_sha256: str,
    seq: int,
    text: str,
    author_id: str | None,
    author_name: str,
    created_at: str,
) -> dict[str, Any]:
    return {
        "signature_sha256": signature_sha256,
        "seq": seq,
        "text": text,
        "author_id": author_id,
        "author_name": author_name,
        "created_at": created_at,
    }
