"""Result delivery state on both backends (mixed into `SqlStore`; see schema_delivery)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from medlens.store.sqlparts import SqlParts


@dataclass(frozen=True)
class Delivery:
    study_id: str
    target: str  # dicom | fhir
    status: str  # pending | delivered
    attempts: int
    last_error: str
    detail: dict[str, Any]
    updated_at: str


class DeliverySql(SqlParts):
    def set_delivery(
        self,
        study_id: str,
        target: str,
        status: str,
        *,
        attempted: bool = False,
        error: str = "",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Upsert the (study, target) row; `attempted` adds one to its attempt count."""
        data = json.dumps(detail or {}, sort_keys=True)
        with self._write() as c:
            at = self._iso(self._ts(self._now(c)))
            c.execute(
                "INSERT INTO result_deliveries (study_id, target, status, attempts, last_error,"
                " detail, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (study_id, target) DO UPDATE SET status = excluded.status,"
                " attempts = result_deliveries.attempts + excluded.attempts,"
                " last_error = excluded.last_error, detail = excluded.detail,"
                " updated_at = excluded.updated_at",
                (study_id, target, status, int(attempted), error[:500], data, at),
            )

    def list_deliveries(
        self, *, study_id: str | None = None, status: str | None = None
    ) -> list[Delivery]:
        sql = (
            "SELECT study_id, target, status, attempts, last_error, detail, updated_at"
            " FROM result_deliveries WHERE 1 = 1"
        )
        args: list[Any] = []
        if study_id is not None:
            sql += " AND study_id = ?"
            args.append(study_id)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        with self._read() as c:
            rows = c.execute(sql + " ORDER BY study_id, target", args).fetchall()
        return [
            Delivery(r[0], r[1], r[2], int(r[3]), r[4], json.loads(r[5]), str(r[6]))
            for r in rows
        ]
