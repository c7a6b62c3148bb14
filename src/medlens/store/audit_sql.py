"""Audit SQL shared by both backends: chained append, listing, chain verification.

Each append reads the last entry's hash and inserts the new entry in ONE write
transaction holding the chain lock, so concurrent writers never fork the chain:
- SQLite: every write transaction is `BEGIN IMMEDIATE`, which already serialises all
  writers of the file (threads and processes); `_lock` is a no-op there.
- PostgreSQL: `_lock` takes a transaction-scoped advisory lock, held until commit, so a
  second writer (thread or process) reads the last hash only after the first committed
  (READ COMMITTED takes a new snapshot per statement). The UNIQUE index on `prev_hash`
  is the backstop for a writer that bypasses this path.
Mixed into `SqlStore`, which supplies transactions and value conversion.
"""

from __future__ import annotations

from typing import Any

from medlens.store import rows as R
from medlens.store.audit_chain import (
    CHAIN_COLUMNS,
    GENESIS,
    AuditChainReport,
    ChainWalker,
    entry_hash,
)
from medlens.store.base import AuditEvent
from medlens.store.sqlparts import SqlParts

AUDIT_CHAIN_LOCK = "audit:chain"


class AuditSql(SqlParts):
    def _append_audit(
        self,
        c: Any,
        actor: str,
        action: str,
        *,
        study_id: str | None = None,
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> str:
        """Append one chained entry inside the caller's write transaction; its hash.

        For code that audits as part of a larger write (e.g. a sign-off): the entry then
        commits or rolls back with it.
        """
        self._lock(c, AUDIT_CHAIN_LOCK)
        row = c.execute("SELECT entry_hash FROM audit_events ORDER BY id DESC LIMIT 1").fetchone()
        prev = row[0] if row is not None else GENESIS
        at = self._ts(self._now(c))
        # Hash the detail as it will read back (strict JSON, numpy/Path/date converted).
        stored = R.json_loads(R.json_dumps(detail or {}))
        digest = entry_hash(prev, at, actor, action, study_id, outcome, stored)
        c.execute(
            "INSERT INTO audit_events (at, actor, action, study_id, outcome, detail,"
            " prev_hash, entry_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (at, actor, action, study_id, outcome, self._json_in(stored), prev, digest),
        )
        return digest

    def audit(
        self,
        actor: str,
        action: str,
        *,
        study_id: str | None = None,
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> None:
        with self._write() as c:
            self._append_audit(c, actor, action, study_id=study_id, outcome=outcome, detail=detail)

    def list_audit(self, *, limit: int = 100, study_id: str | None = None) -> list[AuditEvent]:
        where, params = ("WHERE study_id = ?", (study_id,)) if study_id else ("", ())
        with self._read() as c:
            found = c.execute(
                f"SELECT {R.AUDIT_COLUMNS} FROM audit_events {where} ORDER BY id DESC LIMIT ?",
                (*params, int(limit)),
            ).fetchall()
        return [
            AuditEvent(int(r[0]), self._iso(r[1]), r[2], r[3], r[4], r[5], self._json_out(r[6]))
            for r in found
        ]

    def verify_audit_chain(
        self, *, anchor: str | None = None, batch: int = 1000
    ) -> AuditChainReport:
        """Walk the whole chain in id order (one read snapshot); the first break, if any.

        `anchor`: an entry_hash recorded earlier (e.g. the head printed by a previous
        verify); the report fails when it is no longer in the chain, which catches a
        removed tail or a rewritten chain that the links alone cannot show.
        """
        walker = ChainWalker(anchor)
        last_id = -1
        with self._read() as c:
            while True:
                rows = c.execute(
                    f"SELECT {CHAIN_COLUMNS} FROM audit_events WHERE id > ?"
                    f" ORDER BY id LIMIT {int(batch)}",
                    (last_id,),
                ).fetchall()
                if not rows:
                    break
                for row in rows:
                    if not walker.feed(row):
                        return walker.report()
                last_id = int(rows[-1][0])
        return walker.report()
