"""Migrations for users, their API tokens, and study ownership (issue 18).

- `users`: a unique name, a role, groups (JSON list) and an Argon2id password hash
  (NULL until a password is set: such a user can only use tokens).
- `api_tokens`: only the SHA-256 of a token is kept, with a short prefix to name it by;
  a revoked token keeps its row (revoked_at) so the audit trail can still name it.
- `studies.owner_id` / `studies."group"`: who uploaded a study and which group shares it
  (NULL owner: uploaded in a single-user mode; only admins see such a study).
"""

from __future__ import annotations


def _users_sql(*, ts: str, json: str) -> str:
    return f"""
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL CHECK (role IN ('clinician', 'radiologist', 'admin')),
            groups {json} NOT NULL,
            password_hash TEXT,
            created_at {ts} NOT NULL
        );
        CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            prefix TEXT NOT NULL,
            token_sha256 TEXT NOT NULL UNIQUE,
            created_at {ts} NOT NULL,
            revoked_at {ts}
        );
        CREATE INDEX api_tokens_user ON api_tokens (user_id);
        CREATE INDEX api_tokens_prefix ON api_tokens (prefix);
        ALTER TABLE studies ADD COLUMN owner_id TEXT;
        ALTER TABLE studies ADD COLUMN "group" TEXT;
        CREATE INDEX studies_owner_id ON studies (owner_id);
        CREATE INDEX studies_group ON studies ("group");"""


USERS_001_SQLITE = _users_sql(ts="TEXT", json="TEXT")
USERS_001_PG = _users_sql(ts="TIMESTAMPTZ", json="JSONB")
