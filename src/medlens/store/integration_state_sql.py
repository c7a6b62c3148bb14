"""Named integration cursors on both backends (mixed into `SqlStore`).

One row per name; `set_integration_state` is an upsert, so a poller that persists its
position after each handled batch resumes there after a restart (or a crash).
"""

from __future__ import annotations

from medlens.store.sqlparts import SqlParts


class IntegrationStateSql(SqlParts):
    def get_integration_state(self, name: str) -> str | None:
        with self._read() as c:
            row = c.execute(
                "SELECT value FROM integration_state WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else str(row[0])

    def set_integration_state(self, name: str, value: str) -> None:
        with self._write() as c:
            at = self._iso(self._ts(self._now(c)))
            c.execute(
                "INSERT INTO integration_state (name, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (name, value, at),
            )
