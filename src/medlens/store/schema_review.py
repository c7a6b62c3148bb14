"""Tables of the radiologist review (migration review_001), both backends.

Append-only by construction: triggers refuse UPDATE of versions, signatures and addenda,
and refuse a new version of a signed report. Rows still go with their study when the
study is deleted (ON DELETE CASCADE), like every other record of a deleted study.
"""

from __future__ import annotations


def _tables(*, ts: str, json: str) -> str:
    return f"""
        CREATE TABLE report_versions (
            study_id TEXT NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            author_id TEXT,
            author_name TEXT NOT NULL,
            content {json} NOT NULL,
            created_at {ts} NOT NULL,
            PRIMARY KEY (study_id, version)
        );
        CREATE TABLE report_signatures (
            study_id TEXT PRIMARY KEY REFERENCES studies (id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            signer_id TEXT,
            signer_name TEXT NOT NULL,
            signed_at {ts} NOT NULL,
            sha256 TEXT NOT NULL,
            FOREIGN KEY (study_id, version) REFERENCES report_versions (study_id, version)
                ON DELETE CASCADE
        );
        CREATE TABLE report_addenda (
            study_id TEXT NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            text TEXT NOT NULL,
            author_id TEXT,
            author_name TEXT NOT NULL,
            created_at {ts} NOT NULL,
            sha256 TEXT NOT NULL,
            PRIMARY KEY (study_id, seq)
        );"""


SQLITE_REVIEW_001 = (
    _tables(ts="TEXT", json="TEXT")
    + """
        CREATE TRIGGER report_versions_no_update BEFORE UPDATE ON report_versions
        BEGIN SELECT RAISE(ABORT, 'report versions are never overwritten'); END;
        CREATE TRIGGER report_versions_frozen BEFORE INSERT ON report_versions
        WHEN EXISTS (SELECT 1 FROM report_signatures WHERE study_id = NEW.study_id)
        BEGIN SELECT RAISE(ABORT, 'the report is signed: add an addendum'); END;
        CREATE TRIGGER report_signatures_no_update BEFORE UPDATE ON report_signatures
        BEGIN SELECT RAISE(ABORT, 'a signature is never changed'); END;
        CREATE TRIGGER report_addenda_no_update BEFORE UPDATE ON report_addenda
        BEGIN SELECT RAISE(ABORT, 'addenda are never overwritten'); END;
        """
)

PG_REVIEW_001 = (
    _tables(ts="TIMESTAMPTZ", json="JSONB")
    + """
        CREATE FUNCTION medlens_review_no_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% rows are never overwritten', TG_TABLE_NAME;
        END;
        $$;
        CREATE FUNCTION medlens_review_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM report_signatures WHERE study_id = NEW.study_id) THEN
                RAISE EXCEPTION 'the report is signed: add an addendum';
            END IF;
            RETURN NEW;
        END;
        $$;
        CREATE TRIGGER report_versions_no_update BEFORE UPDATE ON report_versions
            FOR EACH ROW EXECUTE FUNCTION medlens_review_no_update();
        CREATE TRIGGER report_versions_frozen BEFORE INSERT ON report_versions
            FOR EACH ROW EXECUTE FUNCTION medlens_review_frozen();
        CREATE TRIGGER report_signatures_no_update BEFORE UPDATE ON report_signatures
            FOR EACH ROW EXECUTE FUNCTION medlens_review_no_update();
        CREATE TRIGGER report_addenda_no_update BEFORE UPDATE ON report_addenda
            FOR EACH ROW EXECUTE FUNCTION medlens_review_no_update();
        """
)
