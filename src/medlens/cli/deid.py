"""`medlens deid IN OUT`: de-identify DICOM (PS3.15 Basic Profile) and strip PNG/JPEG.

Output files are named by their new SOP Instance UID (DICOM) or pixel hash (PNG) unless
--keep-names is given, because original file names often carry patient names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from medlens.errors import ConfigError, MedLensError


@dataclass
class FileOutcome:
    source: str
    kind: str = "-"
    status: str = "ok"
    output: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    note: str = ""


def _inputs(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    if src.is_dir():
        return sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    raise ConfigError(f"{src} does not exist.")


def deid_path(src: Path, dst: Path, policy: object, keep_names: bool = False) -> list[FileOutcome]:
    """De-identify a file or every file under a folder into dst (a folder)."""
    from medlens.imaging.deid import deidentify_bytes
    from medlens.imaging.formats import sniff
    from medlens.imaging.ingest import ingest

    files = _inputs(src)
    dst.mkdir(parents=True, exist_ok=True)
    outcomes: list[FileOutcome] = []
    written: set[str] = set()
    for path in files:
        rel = path.relative_to(src) if src.is_dir() else Path(path.name)
        out = FileOutcome(str(rel))
        try:
            data = path.read_bytes()
            kind = sniff(data, str(rel))
            out.kind = kind
            if kind == "dicom":
                new, result = deidentify_bytes(data, policy, name=str(rel))  # type: ignore[arg-type]
                uid = str(result.dataset.get("SOPInstanceUID", "")) or path.stem
                target = dst / (rel if keep_names else Path(f"{uid}.dcm"))
                out.counts = result.summary()
                if result.warnings:
                    out.status = "warning"
                    out.note = "; ".join(result.warnings)
            else:
                img = ingest(data, name=str(rel), deid=policy)
                new = img.deidentified_bytes or b""
                out.counts = {"metadata-stripped": 1}
                target = dst / (
                    rel.with_suffix(".png") if keep_names else Path(f"{img.pixel_sha256[:24]}.png")
                )
            n = 2
            while target.exists() and str(target) in written:  # same UID twice in one run
                target = target.with_name(f"{target.stem.split('~')[0]}~{n}{target.suffix}")
                n += 1
            written.add(str(target))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(new)
            out.output = str(target.relative_to(dst))
        except MedLensError as err:
            out.status = "blocked" if err.code == "deidentification_blocked" else "skipped"
            out.note = str(err)
        outcomes.append(out)
    return outcomes


def _print_table(outcomes: list[FileOutcome]) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = ["removed", "emptied", "dummy", "uid-remapped", "date-shifted", "private-removed"]
    table = Table(title="De-identification (DICOM PS3.15 Annex E Basic Profile)")
    table.add_column("file")
    table.add_column("type")
    table.add_column("status")
    for c in cols:
        table.add_column(c, justify="right")
    table.add_column("output / note")
    for o in outcomes:
        style = {"ok": "green", "warning": "yellow"}.get(o.status, "red")
        table.add_row(
            o.source,
            o.kind,
            f"[{style}]{o.status}[/{style}]",
            *[str(o.counts.get(c, 0)) for c in cols],
            (o.output + ("  " if o.output and o.note else "") + o.note)[:200],
        )
    Console().print(table)
    done = sum(o.status in ("ok", "warning") for o in outcomes)
    Console().print(
        f"{done} of {len(outcomes)} file(s) written; "
        f"{sum(o.status == 'blocked' for o in outcomes)} blocked, "
        f"{sum(o.status == 'skipped' for o in outcomes)} skipped."
    )


def register(app: typer.Typer) -> None:
    @app.command("deid")
    def deid_cmd(
        src: Annotated[Path, typer.Argument(help="A DICOM/PNG/JPEG file or a folder.")],
        dst: Annotated[Path, typer.Argument(help="Output folder (created).")],
        dates: Annotated[
            str | None, typer.Option(help="remove | shift (default: settings).")
        ] = None,
        burned_in: Annotated[
            str | None,
            typer.Option(
                "--burned-in", help="warn | block when BurnedInAnnotation is YES or absent."
            ),
        ] = None,
        retain_safe_private: Annotated[
            bool, typer.Option(help="Keep numeric private attributes (Retain Safe Private option).")
        ] = False,
        keep_names: Annotated[
            bool, typer.Option(help="Keep input file names (they may contain patient names).")
        ] = False,
        age_band: Annotated[
            bool, typer.Option(help="Keep a 5-year age band as PatientAge (birth date emptied).")
        ] = False,
    ) -> None:
        """De-identify files (PS3.15 Basic Profile); prints what was done per file."""
        from medlens.cli.common import settings_from
        from medlens.imaging.deid import DeidPolicy

        if dates not in (None, "remove", "shift"):
            raise ConfigError("--dates must be remove or shift.")
        if burned_in not in (None, "warn", "block"):
            raise ConfigError("--burned-in must be warn or block.")
        settings = settings_from(
            deid_dates=dates,
            deid_burned_in=burned_in,
            deid_retain_safe_private=retain_safe_private or None,
            deid_age_band=age_band or None,
        )
        if src.resolve() == dst.resolve() or src.resolve() in dst.resolve().parents:
            raise ConfigError("OUT must be a different folder from IN.")
        outcomes = deid_path(src, dst, DeidPolicy.from_settings(settings), keep_names)
        _print_table(outcomes)
        if not any(o.status in ("ok", "warning") for o in outcomes):
            raise typer.Exit(1)
