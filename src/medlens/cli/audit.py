"""`medlens audit verify|list`: check the audit log's hash chain; read recent entries.

Both work on the configured store (MEDLENS_DATA_DIR / MEDLENS_DATABASE_URL, or
`--database-url`). `verify` exits 0 with the entry count and the head hash (record it
somewhere else and pass it back as `--anchor` next time to also catch a removed tail
or a rewritten chain), or 1 naming the first broken entry.
"""

from __future__ import annotations

import json

import typer

from medlens.cli.common import print_json, settings_from

audit_app = typer.Typer(help="The audit log: verify its hash chain, list entries.")

_DB_HELP = "postgresql://... or sqlite:///path (default: settings)."


@audit_app.command("verify")
def verify(
    database_url: str = typer.Option(None, "--database-url", help=_DB_HELP),
    anchor: str = typer.Option(
        None, "--anchor", help="An entry_hash recorded earlier that must still be in the chain."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Walk the audit chain; exit 1 at the first entry edited, removed or inserted."""
    from medlens.store import open_store

    store = open_store(settings_from(database_url=database_url))
    try:
        report = store.verify_audit_chain(anchor=anchor)
    finally:
        store.close()
    if as_json:
        print_json(report.__dict__)
    elif report.ok:
        typer.echo(f"OK: {report.count} audit entries, chain intact; head {report.head}")
    else:
        where = f"entry id {report.broken_id}" if report.broken_id is not None else "chain"
        typer.echo(f"BROKEN at {where}: {report.problem}")
        typer.echo(f"{report.count} entries before it verified; last good head {report.head}")
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("list")
def list_entries(
    database_url: str = typer.Option(None, "--database-url", help=_DB_HELP),
    study: str = typer.Option(None, "--study", help="Only entries about this study id."),
    limit: int = typer.Option(50, "--limit", min=1, max=100_000, help="Newest N entries."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of lines."),
) -> None:
    """The newest audit entries (newest first)."""
    from medlens.store import open_store

    store = open_store(settings_from(database_url=database_url))
    try:
        events = store.list_audit(limit=limit, study_id=study)
    finally:
        store.close()
    if as_json:
        print_json([e.__dict__ for e in events])
        return
    for e in events:
        detail = json.dumps(e.detail, ensure_ascii=False, sort_keys=True) if e.detail else ""
        line = f"{e.id}\t{e.at}\t{e.actor}\t{e.action}\t{e.outcome}\t{e.study_id or '-'}"
        typer.echo(f"{line}\t{detail}".rstrip())


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
