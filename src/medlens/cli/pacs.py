"""`medlens pacs echo|find|pull`: talk to the configured PACS (DICOMweb or DIMSE).

Nothing is contacted that is not configured: DICOMweb needs MEDLENS_DICOMWEB_URL, DIMSE
a node in MEDLENS_DICOM_NODES. A pulled study becomes a normal MedLens study with one
interpretation job (run it with `medlens worker`, or `--run` here); its original
identifiers are kept apart (see docs/integration.md) and never printed.
"""

from __future__ import annotations

from typing import Literal

import typer

from medlens.cli.common import print_json, settings_from

pacs_app = typer.Typer(help="PACS: C-ECHO, study search (QIDO-RS / C-FIND), pull a study.")

Via = Literal["dicomweb", "dimse"]
_VIA_HELP = "dicomweb (QIDO/WADO-RS) or dimse (C-FIND/C-MOVE)."


def _via(value: str) -> Via:
    from medlens.errors import ConfigError

    if value not in ("dicomweb", "dimse"):
        raise ConfigError(f"--via {value!r}: use dicomweb or dimse.")
    return value  # type: ignore[return-value]


@pacs_app.command("echo")
def echo(node: str = typer.Argument(None, help="Node name (default: the first configured).")):
    """C-ECHO a configured DICOM node."""
    from medlens.integrations import dimse
    from medlens.integrations.settings import dicom_node

    settings = settings_from()
    target = dicom_node(settings, node)
    result = dimse.echo(settings, target)
    state = "ok" if result.ok else f"status 0x{result.status:04X}"
    typer.echo(f"{target.name} ({target.ae_title} at {target.host}:{target.port}): {state} "
               f"in {result.seconds * 1000:.0f} ms")  # fmt: skip
    if not result.ok:
        raise typer.Exit(1)


@pacs_app.command("find")
def find(
    patient_id: str = typer.Option(None, "--patient-id", help="Patient ID to match."),
    accession: str = typer.Option(None, "--accession", help="Accession number."),
    date: str = typer.Option(None, "--date", help="YYYYMMDD or YYYYMMDD-YYYYMMDD."),
    modality: str = typer.Option(None, "--modality", help="A modality in the study (CR, DX)."),
    via: str = typer.Option("dicomweb", "--via", help=_VIA_HELP),
    node: str = typer.Option(None, "--node", help="DICOM node for --via dimse."),
    limit: int = typer.Option(100, "--limit", min=1, max=1000),
    as_json: bool = typer.Option(False, "--json", help="Print the matches as JSON."),
) -> None:
    """Search the PACS for studies (no patient names are shown)."""
    from medlens.integrations.query import StudyQuery

    settings = settings_from()
    query = StudyQuery(patient_id=patient_id, accession=accession, date=date, modality=modality)
    if _via(via) == "dicomweb":
        from medlens.integrations import dicomweb

        matches = dicomweb.search_studies(settings, query, limit=limit)
    else:
        from medlens.integrations import dimse
        from medlens.integrations.settings import dicom_node

        matches = dimse.find_studies(settings, dicom_node(settings, node), query, limit=limit)
    if as_json:
        print_json([{k: v for k, v in m.__dict__.items() if k != "raw"} for m in matches])
        return
    for m in matches:
        typer.echo(
            f"{m.study_uid}  {m.date or '-':8}  acc={m.accession or '-'}  "
            f"{'/'.join(m.modalities) or '-'}  series={m.series if m.series is not None else '?'} "
            f"instances={m.instances if m.instances is not None else '?'}"
        )
    typer.echo(f"{len(matches)} stud{'y' if len(matches) == 1 else 'ies'} found", err=True)


@pacs_app.command("pull")
def pull(
    study_uid: str = typer.Argument(..., help="Study Instance UID to pull."),
    via: str = typer.Option("dicomweb", "--via", help=_VIA_HELP),
    node: str = typer.Option(None, "--node", help="DICOM node for --via dimse."),
    database_url: str = typer.Option(None, "--database-url", help="Default: settings."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Retrieve a study and queue it as a normal MedLens study (one job)."""
    from medlens.integrations.pull import pull_study
    from medlens.store import open_store

    settings = settings_from(database_url=database_url)
    how = _via(via)
    store = open_store(settings)
    try:
        result = pull_study(store, settings, study_uid, via=how, node=node)
    finally:
        store.close()
    if as_json:
        print_json(result.__dict__)
    else:
        typer.echo(result.line())


def register(app: typer.Typer) -> None:
    app.add_typer(pacs_app, name="pacs")
