"""Job queue SQL shared by both backends: enqueue, lease-based claim, heartbeat, finish.

A claim takes the oldest queued job, or a running one whose lease expired (its worker
died). A queued job's claim counts an attempt; an expired one's counts a restart instead,
because the death of a process is not the job's failure (a crash-looping process must not
fail the innocent jobs it held). A job restarted `MAX_RESTARTS` times and dead again is
one that kills its worker: it ends 'failed' with a reason. finish/fail/update accept
`worker_id` so that only the current lease owner can write: a worker that lost its lease
cannot overwrite.
Mixed into `SqlStore`, which supplies transactions and value conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from medlens.store import rows as R
from medlens.store.base import Job, JobStatus
from medlens.store.sqlparts import SqlParts

if TYPE_CHECKING:
    from medlens.tasks.interpret.result import Interpretation


class JobsSql(SqlParts):
    _skip_locked = ""
    # (column, value) SQL that numbers a new job in claim order, for a backend whose
    # jobs.seq has no default; empty where the column numbers itself (PG identity).
    _job_seq: tuple[str, str] = ("", "")

    if TYPE_CHECKING:  # supplied by SqlStore and the dialects

        def _job(self, row: Sequence[Any]) -> Job: ...
        def _claim_candidate(
            self, c: Any, now: datetime, kinds: Sequence[str] | None
        ) -> str | None: ...
        def _save_interpretation(
            self, c: Any, study_id: str, job_id: str | None, interp: Interpretation
        ) -> None: ...
        def _add_message(
            self, c: Any, study_id: str, role: str, content: str, job_id: str | None
        ) -> Any: ...

    def _get_job(self, c: Any, job_id: str) -> Job | None:
        row = c.execute(f"SELECT {R.JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job(row) if row else None

    def enqueue_job(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        study_id: str | None = None,
        max_attempts: int = R.DEFAULT_MAX_ATTEMPTS,
    ) -> Job:
        with self._write() as c:
            now = self._ts(self._now(c))
            job_id = R.new_id()
            c.execute(
                f"INSERT INTO jobs (id, {self._job_seq[0]}study_id, kind, status, payload,"
                " max_attempts, created_at, updated_at, stage)"
                f" VALUES (?, {self._job_seq[1]}?, ?, 'queued', ?, ?, ?, ?, 'queued')",
                (job_id, study_id, kind, self._json_in(payload), max(1, max_attempts), now, now),
            )
            job = self._get_job(c, job_id)
            assert job is not None
            return job

    def claim_job(
        self,
        worker_id: str,
        *,
        lease_seconds: float = 300.0,
        kinds: Sequence[str] | None = None,
    ) -> Job | None:
        # Idle workers poll often: a read first keeps them off the write lock.
        with self._read() as c:
            busy = c.execute(
                "SELECT 1 FROM jobs WHERE status IN ('queued', 'running') LIMIT 1"
            ).fetchone()
        if busy is None:
            return None
        with self._write() as c:
            now = self._now(c)
            # Jobs whose worker died once more after the restart cap end here, with a reason.
            c.execute(
                "UPDATE jobs SET status = 'failed', updated_at = ?, lease_owner = NULL,"
                " lease_expires_at = NULL, error = 'Gave up after ' || restarts ||"
                " ' restarts: the worker running it stopped responding each time.'"
                " WHERE id IN (SELECT id FROM jobs WHERE status = 'running'"
                f" AND lease_expires_at < ? AND restarts >= ?{self._skip_locked})",
                (self._ts(now), self._ts(now), R.MAX_RESTARTS),
            )
            job_id = self._claim_candidate(c, now, kinds)
            if job_id is None:
                return None
            c.execute(
                "UPDATE jobs SET status = 'running', progress = 0, stage = 'starting',"
                " attempts = attempts + CASE WHEN status = 'queued' THEN 1 ELSE 0 END,"
                " restarts = restarts + CASE WHEN status = 'running' THEN 1 ELSE 0 END,"
                " lease_owner = ?, lease_expires_at = ?, updated_at = ? WHERE id = ?",
                (
                    worker_id,
                    self._ts(now + timedelta(seconds=lease_seconds)),
                    self._ts(now),
                    job_id,
                ),
            )
            return self._get_job(c, job_id)

    def heartbeat_job(self, job_id: str, worker_id: str, lease_seconds: float = 300.0) -> bool:
        """Extend this worker's lease; False when the lease was lost or the job is gone."""
        with self._write() as c:
            now = self._now(c)
            return (
                c.execute(
                    "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND status = 'running'"
                    " AND lease_owner = ?",
                    (self._ts(now + timedelta(seconds=lease_seconds)), job_id, worker_id),
                ).rowcount
                > 0
            )

    def _owned(self, worker_id: str | None) -> tuple[str, tuple[Any, ...]]:
        if worker_id is None:
            return "", ()
        return " AND lease_owner = ?", (worker_id,)

    def update_job(
        self, job_id: str, *, progress: float, stage: str, worker_id: str | None = None
    ) -> bool:
        cond, extra = self._owned(worker_id)
        with self._write() as c:
            return (
                c.execute(
                    "UPDATE jobs SET progress = ?, stage = ?, updated_at = ?"
                    f" WHERE id = ? AND status = 'running'{cond}",
                    (R.clamp_progress(progress), stage, self._ts(self._now(c)), job_id, *extra),
                ).rowcount
                > 0
            )

    def finish_job(
        self,
        job_id: str,
        result: dict[str, Any] | None = None,
        *,
        worker_id: str | None = None,
        interpretation: Interpretation | None = None,
        messages: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """Mark done and write the result, the interpretation and messages in ONE transaction.

        With `worker_id`, only the current lease owner succeeds (a worker whose lease
        expired and was re-claimed must not overwrite). Returns whether it applied.
        """
        cond, extra = self._owned(worker_id)
        with self._write() as c:
            now = self._ts(self._now(c))
            applied = c.execute(
                "UPDATE jobs SET status = 'done', progress = 1, stage = 'done', result = ?,"
                " error = NULL, updated_at = ?, lease_expires_at = NULL"
                f" WHERE id = ? AND status = 'running'{cond}",
                (self._json_in(result) if result is not None else None, now, job_id, *extra),
            ).rowcount
            if not applied:
                return False
            study_id = c.execute("SELECT study_id FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
            if (interpretation is not None or messages) and study_id is None:
                raise ValueError("interpretation/messages need a job attached to a study")
            if interpretation is not None:
                self._save_interpretation(c, study_id, job_id, interpretation)
            for role, content in messages:
                self._add_message(c, study_id, role, content, job_id)
            return True

    def fail_job(self, job_id: str, error: str, *, worker_id: str | None = None) -> bool:
        cond, extra = self._owned(worker_id)
        with self._write() as c:
            return (
                c.execute(
                    "UPDATE jobs SET status = 'failed', error = ?, updated_at = ?,"
                    " lease_expires_at = NULL WHERE id = ?"
                    f" AND status IN ('queued', 'running'){cond}",
                    (error, self._ts(self._now(c)), job_id, *extra),
                ).rowcount
                > 0
            )

    def release_job(self, job_id: str, worker_id: str) -> bool:
        """Give a claimed job back to the queue (graceful stop); the attempt is not counted."""
        with self._write() as c:
            return (
                c.execute(
                    "UPDATE jobs SET status = 'queued', attempts = attempts - 1, stage = 'queued',"
                    " progress = 0, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                    " WHERE id = ? AND status = 'running' AND lease_owner = ?",
                    (self._ts(self._now(c)), job_id, worker_id),
                ).rowcount
                > 0
            )

    def get_job(self, job_id: str) -> Job | None:
        with self._read() as c:
            return self._get_job(c, job_id)

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        limit: int = 100,
        study_id: str | None = None,
    ) -> list[Job]:
        conds: list[str] = []
        params: list[Any] = []
        if status is not None:
            conds.append("status = ?")
            params.append(status)
        if study_id is not None:
            conds.append("study_id = ?")
            params.append(study_id)
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        with self._read() as c:
            found = c.execute(
                f"SELECT {R.JOB_COLUMNS} FROM jobs {where} ORDER BY seq LIMIT ?",
                (*params, int(limit)),
            ).fetchall()
        return [self._job(r) for r in found]

    def count_jobs(self) -> dict[str, int]:
        """Jobs per status (for /metrics and progress bars)."""
        with self._read() as c:
            found = c.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        counts = dict.fromkeys(("queued", "running", "done", "failed"), 0)
        counts.update({r[0]: int(r[1]) for r in found})
        return counts

    def requeue_interrupted(self) -> int:
        """Single-process start-up: every 'running' job was left by a dead process.

        Each is requeued as a restart (its attempt is not used up); one already restarted
        `MAX_RESTARTS` times fails instead (a job that crashes the process must not crash
        it forever). Do NOT call this while other workers share the database: they rely
        on lease expiry instead.
        """
        with self._write() as c:
            now = self._ts(self._now(c))
            c.execute(
                "UPDATE jobs SET status = 'failed', updated_at = ?, lease_owner = NULL,"
                " lease_expires_at = NULL, error = 'Gave up after ' || restarts ||"
                " ' restarts: the process running it stopped each time.'"
                " WHERE status = 'running' AND restarts >= ?",
                (now, R.MAX_RESTARTS),
            )
            return int(
                c.execute(
                    "UPDATE jobs SET status = 'queued', stage = 'queued', progress = 0,"
                    " restarts = restarts + 1,"
                    " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,"
                    " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                    " WHERE status = 'running'",
                    (now,),
                ).rowcount
            )
