"""The audit log's hash chain: canonical form, entry hash, and the walk that verifies it.

Each audit entry stores `prev_hash` (the previous entry's `entry_hash`, or GENESIS for
the first) and `entry_hash` = SHA-256 over a canonical serialisation of
(prev_hash, at, actor, action, study_id, outcome, detail). Editing an entry changes its
hash; removing or inserting one breaks the next entry's `prev_hash`.

The canonical form is computed from values as the database returns them, identically on
write and on verify, on both backends:
- `at`: SQLite keeps the ISO text it was given; PostgreSQL returns a timestamptz, which
  is rendered in UTC with microseconds (the same fixed-width form SQLite stores).
- `detail`: JSON with sorted keys (jsonb reorders keys) and integral floats written as
  integers (jsonb's numeric turns 1e20 into 100000000000000000000, read back as int).
Pure functions only: no database access here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
HASH_VERSION = "medlens-audit-v1"
# The columns a chain walk reads, in this order.
CHAIN_COLUMNS = "id, at, actor, action, study_id, outcome, detail, prev_hash, entry_hash"


def ts_text(value: Any) -> str:
    """A stored timestamp as hashed: UTC ISO 8601 with microseconds."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return str(value)


def _canon(obj: Any) -> Any:
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): _canon(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canon(v) for v in obj]
    return obj


def detail_value(value: Any) -> Any:
    """A stored `detail` as a Python value (SQLite gives text, PostgreSQL a dict)."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def entry_hash(
    prev_hash: str,
    at: Any,
    actor: str,
    action: str,
    study_id: str | None,
    outcome: str,
    detail: Any,
) -> str:
    """SHA-256 (hex) of one entry's canonical serialisation, chained to `prev_hash`."""
    payload = json.dumps(
        [
            HASH_VERSION,
            prev_hash,
            ts_text(at),
            actor,
            action,
            study_id,
            outcome,
            _canon(detail_value(detail)),
        ],
        sort_keys=True,
        ensure_ascii=True,  # ASCII escapes: no encoding question (lone surrogates included)
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def row_hash(prev_hash: str, row: Sequence[Any]) -> str:
    """The hash of a row read as `id, at, actor, action, study_id, outcome, detail, ...`."""
    return entry_hash(prev_hash, row[1], row[2], row[3], row[4], row[5], row[6])


@dataclass(frozen=True)
class AuditChainReport:
    ok: bool
    count: int  # entries verified (all of them when ok; those before the break otherwise)
    head: str  # entry_hash of the last verified entry (GENESIS when none)
    broken_id: int | None = None
    problem: str | None = None


class ChainWalker:
    """Feed rows (CHAIN_COLUMNS, ascending id); stops at the first broken entry."""

    def __init__(self, anchor: str | None = None) -> None:
        # anchor: an entry_hash recorded earlier (e.g. a printed head); it must still be there.
        self.anchor = anchor
        self.seen_anchor = anchor is None
        self.count = 0
        self.head = GENESIS
        self.prev_id: int | None = None
        self.broken_id: int | None = None
        self.problem: str | None = None

    def feed(self, row: Sequence[Any]) -> bool:
        """Check one row; False (and the problem recorded) when the chain breaks here."""
        rid, prev, stored = int(row[0]), row[7], row[8]
        before = f"entry {self.prev_id}" if self.prev_id is not None else "the chain start"
        if stored is None or prev is None:
            return self._broken(rid, "has no hash (written outside the chained insert path)")
        if prev != self.head:
            return self._broken(
                rid,
                f"prev_hash {prev[:16]}... does not match {before} ({self.head[:16]}...): "
                "an entry before it was removed or inserted",
            )
        computed = row_hash(prev, row)
        if computed != stored:
            return self._broken(
                rid,
                f"content does not match its entry_hash (stored {stored[:16]}..., "
                f"computed {computed[:16]}...): at/actor/action/study_id/outcome/detail "
                f"was edited; it now reads actor={row[2]!r} action={row[3]!r} "
                f"study_id={row[4]!r} outcome={row[5]!r} at={ts_text(row[1])}",
            )
        self.count += 1
        self.seen_anchor = self.seen_anchor or stored == self.anchor
        self.head = stored
        self.prev_id = rid
        return True

    def _broken(self, rid: int, problem: str) -> bool:
        self.broken_id, self.problem = rid, problem
        return False

    def report(self) -> AuditChainReport:
        if self.problem is None and not self.seen_anchor:
            return AuditChainReport(
                False, self.count, self.head, None,
                f"anchor {str(self.anchor)[:16]}... is not in the chain: entries were removed "
                "or the chain was rewritten since it was recorded",
            )  # fmt: skip
        return AuditChainReport(
            self.problem is None, self.count, self.head, self.broken_id, self.problem
        )


def backfill(conn: Any, mark: str, *, batch: int = 1000) -> int:
    """Chain the rows already present (ascending id); the caller disabled the triggers.

    `conn` is a raw driver connection inside the migration's transaction; `mark` is its
    parameter placeholder. Returns the number of rows chained.
    """
    prev, last_id, done = GENESIS, -1, 0
    select = (
        "SELECT id, at, actor, action, study_id, outcome, detail FROM audit_events"
        f" WHERE id > {mark} ORDER BY id LIMIT {int(batch)}"
    )
    update = f"UPDATE audit_events SET prev_hash = {mark}, entry_hash = {mark} WHERE id = {mark}"
    while True:
        rows = conn.execute(select, (last_id,)).fetchall()
        if not rows:
            return done
        for row in rows:
            digest = row_hash(prev, row)
            conn.execute(update, (prev, digest, row[0]))
            prev, last_id, done = digest, int(row[0]), done + 1
