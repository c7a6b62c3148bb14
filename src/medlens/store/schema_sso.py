"""Migration for single sign-on (issue 18): which OpenID identity is which MedLens user.

`oidc_identities` links an (issuer, subject) pair - the only stable identity OpenID
Connect guarantees; names and e-mails can change or be reused - to a user row. Users
created by SSO have no password (NULL hash), so only the provider can sign them in.
The same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

SSO_001 = "sso_001_oidc_identities"

SSO_001_SQL = """
    CREATE TABLE oidc_identities (
        issuer TEXT NOT NULL,
        subject TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        PRIMARY KEY (issuer, subject)
    );
    CREATE INDEX oidc_identities_user ON oidc_identities (user_id);
"""
