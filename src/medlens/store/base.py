"""The store interface: studies, images, interpretations, conversations, jobs, audit.

Two implementations share it: SQLite (embedded default: one file, WAL, BEGIN IMMEDIATE
for writes, named migrations) and PostgreSQL (psycopg 3), chosen by the database URL.
Images themselves live in a content-addressed folder of de-identified files (blobs.py);
the database holds their hashes. Methods are synchronous: the server calls them from a
thread pool, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from medlens.store.audit_chain import AuditChainReport
    from medlens.store.review import Addendum, ReportSignature, ReportVersion
    from medlens.store.usersql import ApiToken, User
    from medlens.tasks.interpret.result import Interpretation

JobStatus = Literal["queued", "running", "done", "failed"]
JobKind = Literal["interpret", "followup", "batch"]


@dataclass(frozen=True)
class NewImage:
    """An image to attach to a new study (already de-identified and stored as a blob)."""

    sha256: str  # content hash of the stored (de-identified) file = blob key
    pixel_sha256: str  # hash of decoded pixels (dedup / encoder cache key)
    format: str  # png | jpeg | dicom
    filename: str  # user's file name (sanitised), shown in the UI
    metadata: dict[str, Any] = field(default_factory=dict)
    # Optional de-identified bytes: when given, the store writes the blob inside the
    # create transaction (safe against a concurrent delete of the same bytes).
    data: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class StoredImage:
    id: int
    study_id: str
    position: int
    sha256: str
    pixel_sha256: str
    format: str
    filename: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Study:
    id: str
    created_at: str  # ISO 8601 UTC
    context: dict[str, Any]  # indication, age, sex, language, ehr summary ...
    images: tuple[StoredImage, ...]
    idempotency_key: str | None = None
    owner: str | None = None  # idempotency scope: 'user:<id>', 'token:<hash8>' or None
    owner_id: str | None = None  # the uploading user (None: uploaded in a single-user mode)
    group: str | None = None  # the group that shares it (see server/services/access.py)


@dataclass(frozen=True)
class Job:
    id: str
    study_id: str | None
    kind: str
    status: JobStatus
    progress: float  # 0..1
    stage: str  # human-readable current stage
    payload: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: str
    updated_at: str
    lease_owner: str | None = None
    lease_expires_at: str | None = None
    max_attempts: int = 3
    restarts: int = 0  # runs cut short by the death of their worker (not attempts)


@dataclass(frozen=True)
class Message:
    study_id: str
    seq: int
    role: str  # user | assistant
    content: str
    created_at: str
    job_id: str | None = None


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: str
    actor: str  # token name / "cli" / "page-session:<id>"
    action: str  # upload | view | export | delete | followup | login ...
    study_id: str | None
    outcome: str  # ok | denied | error
    detail: dict[str, Any]


class Store(Protocol):
    """What every store offers. All writes are transactional; nothing is half-written."""

    url: str

    def migrate(self) -> list[str]:
        """Apply pending named migrations; returns the names applied."""
        ...

    def close(self) -> None: ...

    # studies -----------------------------------------------------------------
    def create_study(
        self,
        images: list[NewImage],
        context: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        owner: str | None = None,
    ) -> tuple[Study, bool]:
        """Create a study, or return the existing one for the same idempotency key or the
        same set of image hashes. The bool says whether it was created."""
        ...

    def get_study(self, study_id: str) -> Study | None: ...

    def list_studies(self, *, limit: int = 50, offset: int = 0) -> list[Study]: ...

    def delete_study(self, study_id: str) -> bool:
        """Delete a study with its images rows, interpretation, messages and jobs."""
        ...

    # interpretations -----------------------------------------------------------
    def save_interpretation(self, study_id: str, job_id: str, interp: Interpretation) -> None:
        """Insert or replace the study's interpretation (stored as its JSON)."""
        ...

    def get_interpretation(self, study_id: str) -> Interpretation | None: ...

    # conversations -------------------------------------------------------------
    def add_message(
        self, study_id: str, role: str, content: str, *, job_id: str | None = None
    ) -> Message: ...

    def list_messages(self, study_id: str) -> list[Message]: ...

    # jobs ------------------------------------------------------------------------
    def enqueue_job(
        self, kind: str, payload: dict[str, Any], *, study_id: str | None = None
    ) -> Job: ...

    def claim_job(self, worker_id: str, *, lease_seconds: float = 300.0) -> Job | None:
        """Atomically take the oldest queued (or lease-expired running) job."""
        ...

    def update_job(self, job_id: str, *, progress: float, stage: str) -> None: ...

    def finish_job(self, job_id: str, result: dict[str, Any] | None = None) -> None: ...

    def fail_job(self, job_id: str, error: str) -> None: ...

    def get_job(self, job_id: str) -> Job | None: ...

    def list_jobs(self, *, status: JobStatus | None = None, limit: int = 100) -> list[Job]: ...

    def requeue_interrupted(self) -> int:
        """At start-up: jobs left 'running' by a dead process go back to 'queued'."""
        ...

    # users, tokens, ownership (usersql.py) -------------------------------------------
    def create_user(
        self, name: str, role: str, groups: Sequence[str], password_hash: str | None
    ) -> User: ...

    def get_user(self, user_id: str) -> User | None: ...

    def get_user_by_name(self, name: str) -> User | None: ...

    def list_users(self) -> list[User]: ...

    def has_users(self) -> bool: ...

    def set_password(self, user_id: str, password_hash: str) -> bool: ...

    def delete_user(self, user_id: str) -> bool: ...

    def add_token(self, user_id: str, token_sha256: str, prefix: str) -> ApiToken: ...

    def user_for_token(self, token_sha256: str) -> tuple[User, ApiToken] | None: ...

    def token_active(self, token_id: str) -> bool: ...

    def list_tokens(self, user_id: str) -> list[ApiToken]: ...

    def revoke_tokens(self, *, user_id: str | None = None, prefix: str | None = None) -> int: ...

    def set_study_owner(self, study_id: str, owner_id: str, group: str | None) -> bool: ...

    def list_visible_studies(
        self, *, user_id: str, groups: Sequence[str] = (), limit: int = 50, offset: int = 0
    ) -> list[Study]:
        """The studies a user owns or that belong to one of their groups (SQL filter)."""
        ...

    # single sign-on (sso_sql.py) -------------------------------------------------------
    def sso_user(
        self, issuer: str, subject: str, *, name: str, role: str, groups: Sequence[str]
    ) -> User:
        """The user linked to an OpenID identity: created at first sign-in, else updated."""
        ...

    # integration cursors (integration_state_sql.py) ---------------------------------------
    def get_integration_state(self, name: str) -> str | None:
        """A named cursor (e.g. the last Orthanc /changes Seq handled), None if never set."""
        ...

    def set_integration_state(self, name: str, value: str) -> None: ...

    # original identity of integrated studies (identity_sql.py): never shown or logged
    def put_study_identity(self, study_id: str, identity: dict[str, Any]) -> None:
        """Keep a pulled study's original identifying header (replaces any earlier one)."""
        ...

    def get_study_identity(self, study_id: str) -> dict[str, Any] | None: ...

    def find_study_by_key(self, idempotency_key: str, *, owner: str | None = None) -> str | None:
        """The study stored under this idempotency key, if any."""
        ...

    # result delivery state (delivery_sql.py): pending until the PACS / FHIR server accepts
    def set_delivery(
        self, study_id: str, target: str, status: str, *, attempted: bool = False,
        error: str = "", detail: dict[str, Any] | None = None,
    ) -> None: ...

    def list_deliveries(
        self, *, study_id: str | None = None, status: str | None = None
    ) -> list[Any]: ...

    # audit -------------------------------------------------------------------------
    def audit(
        self,
        actor: str,
        action: str,
        *,
        study_id: str | None = None,
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> None: ...

    def list_audit(self, *, limit: int = 100, study_id: str | None = None) -> list[AuditEvent]: ...

    def verify_audit_chain(self, *, anchor: str | None = None) -> AuditChainReport:
        """Walk the audit hash chain; the first broken entry, if any (audit_chain.py)."""
        ...

    # radiologist review (review_sql.py): versions, one signature, addenda; never overwritten
    def add_report_version(
        self,
        study_id: str,
        content: dict[str, Any],
        *,
        author_id: str | None,
        author_name: str,
        base_version: int | None = None,
    ) -> ReportVersion: ...

    def list_report_versions(self, study_id: str) -> list[ReportVersion]: ...

    def sign_report(
        self, study_id: str, *, signer_id: str | None, signer_name: str, version: int | None = None
    ) -> ReportSignature:
        """Freeze the latest version; Conflict when already signed or nothing is saved."""
        ...

    def get_report_signature(self, study_id: str) -> ReportSignature | None: ...

    def signed_study_ids(self, study_ids: Sequence[str]) -> set[str]: ...

    def add_report_addendum(
        self, study_id: str, text: str, *, author_id: str | None, author_name: str
    ) -> Addendum: ...

    def list_report_addenda(self, study_id: str) -> list[Addendum]: ...
