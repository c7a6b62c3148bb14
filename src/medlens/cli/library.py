"""`medlens library add|search|list|embed|remove`: the searchable case library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medlens.cli.common import (
    EncoderOpt,
    LegacyModelOpt,
    model_flag,
    print_json,
    settings_from,
)

library_app = typer.Typer(
    help="Case library: add labelled images, search by image or text.", no_args_is_help=True
)
LibOpt = Annotated[str, typer.Option("--library", help="Library name.")]


@library_app.command("add")
def add_cmd(
    source: Annotated[
        Path,
        typer.Argument(
            help="Folder of images (uses its labels.csv / "
            "metadata.csv when present) or a labelled CSV."
        ),
    ],
    encoder_id: EncoderOpt = None,
    library: LibOpt = "default",
    model: LegacyModelOpt = None,
) -> None:
    """De-identify, embed and store images (embeddings cached by pixel hash + encoder)."""
    model = model_flag(encoder_id, model, "--encoder")
    from medlens.models.session import default_session
    from medlens.tasks.retrieval.cases_csv import find_cases
    from medlens.tasks.retrieval.library import CaseLibrary

    settings = settings_from()
    cases = find_cases(source)
    if not cases:
        typer.echo(f"no images found in {source}")
        raise typer.Exit(1)
    encoder, record = default_session().encoder_for(settings, model)
    with CaseLibrary.open(settings, library) as lib:
        rep = lib.add_cases(
            encoder, record, cases, progress=lambda d, n: typer.echo(f"  {d}/{n}", err=True)
        )
        total = lib.size()
    typer.echo(
        f"library {library}: added {rep.added} case(s) ({rep.embedded} embedded, "
        f"{rep.cached} from cache), {len(rep.failed)} failed; {total} case(s) in total."
    )
    for cid, why in rep.failed:
        typer.echo(f"  failed {cid}: {why}", err=True)
    if rep.failed and not rep.added:
        raise typer.Exit(1)


@library_app.command("search")
def search_cmd(
    image: Annotated[Path | None, typer.Argument(help="Query image (or use --text).")] = None,
    text: Annotated[str | None, typer.Option("--text", help="Text query.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="Results.")] = 10,
    encoder_id: EncoderOpt = None,
    library: LibOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    model: LegacyModelOpt = None,
) -> None:
    """The k most similar library cases to an image or a text."""
    model = model_flag(encoder_id, model, "--encoder")
    from medlens.errors import ConfigError
    from medlens.models.session import default_session
    from medlens.tasks.retrieval.library import CaseLibrary

    if (image is None) == (text is None):
        raise ConfigError('Give a query IMAGE or --text "..." (exactly one).')
    settings = settings_from()
    encoder, record = default_session().encoder_for(settings, model)
    with CaseLibrary.open(settings, library) as lib:
        if lib.size() == 0:
            raise ConfigError(
                f"Library {library!r} is empty; add cases with `medlens library add`."
            )
        if text is not None:
            results = lib.search_text(encoder, text, k)
        else:
            from medlens.imaging.ingest import ingest

            results = lib.search_images(encoder, record, [ingest(image)], k)[0]  # type: ignore[arg-type]
    if as_json:
        print_json(
            {
                "library": library,
                "query": text or str(image),
                "results": [r.to_dict() for r in results],
            }
        )
        return
    if not results:
        typer.echo(
            f"no case in {library!r} has a vector for this encoder; "
            "run `medlens library embed --model ...`"
        )
        return
    typer.echo(f"{'rank':>4}  {'similarity':>10}  {'file':<28} {'case':<32} labels")
    for r in results:
        pos = r.positive_labels
        if "finding" in r.attributes and r.attributes["finding"] not in pos:
            pos = [r.attributes["finding"], *pos]
        pos = pos or ["-"]
        typer.echo(
            f"{r.rank:>4}  {r.similarity:>10.4f}  {r.filename:<28} {r.case_id:<32} {', '.join(pos)}"
        )


@library_app.command("list")
def list_cmd() -> None:
    """Libraries with their case counts and the encoders that embedded them."""
    from medlens.tasks.retrieval.tables import LibraryDB, sqlite_path_for

    db = LibraryDB(sqlite_path_for(settings_from()))
    try:
        libs = db.libraries()
        if not libs:
            typer.echo("no case libraries yet (`medlens library add DIR`)")
        for name, n in libs:
            encs = ", ".join(f"{e} ({c})" for e, c in db.encoders(name)) or "none"
            typer.echo(f"{name}: {n} case(s); vectors: {encs}")
    finally:
        db.close()


@library_app.command("embed")
def embed_cmd(
    encoder_id: EncoderOpt = None, library: LibOpt = "default", model: LegacyModelOpt = None
) -> None:
    """Embed stored cases that lack a vector for this encoder (e.g. after a model change)."""
    model = model_flag(encoder_id, model, "--encoder")
    from medlens.models.session import default_session
    from medlens.tasks.retrieval.library import CaseLibrary

    settings = settings_from()
    encoder, record = default_session().encoder_for(settings, model)
    with CaseLibrary.open(settings, library) as lib:
        rep = lib.embed_missing(encoder, record)
    typer.echo(f"embedded {rep.embedded} case(s), {len(rep.failed)} failed")


@library_app.command("remove")
def remove_cmd(
    library: LibOpt = "default",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Remove a library's cases (cached vectors and blobs stay; they are content-addressed)."""
    from medlens.tasks.retrieval.library import CaseLibrary

    if not yes:
        typer.confirm(f"Remove every case of library {library!r}?", abort=True)
    with CaseLibrary.open(settings_from(), library) as lib:
        n = lib.db.remove_library(library)
    typer.echo(f"removed {n} case(s) from {library!r}")


def register(app: typer.Typer) -> None:
    app.add_typer(library_app, name="library")
