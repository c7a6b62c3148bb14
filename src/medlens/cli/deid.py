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


_FILE_SUFFIXES = {".dcm": "dicom", ".png": "png"}


def output_is_file(src: Path, dst: Path) -> bool:
    """OUT names a file (not a folder) when it ends in .dcm/.png and is not a folder."""
    if dst.suffix.lower() not in _FILE_SUFFIXES or dst.is_dir():
        return False
    if not src.is_file():
        raise ConfigError(
            f"OUT ({dst.name}) names a file but IN is a folder; give a folder for OUT."
        )
    return True


def deid_path(src: Path, dst: Path, policy: object, keep_names: bool = False) -> list[FileOutcome]:
    """De-identify a file or every file under a folder into dst: a folder, or the output
    file itself when IN is one file and OUT ends in .dcm (DICOM) or .png (PNG/JPEG)."""
    files = _inputs(src)
    if output_is_file(src, dst):
        return [_deid_to_file(src, dst, policy)]
    dst.mkdir(parents=True, exist_ok=True)
    outcomes: list[FileOutcome] = []
    written: set[str] = set()
    for path in files:
        rel = path.relative_to(src) if src.is_dir() else Path(path.name)
        out = FileOutcome(str(rel))
        try:
            new, name = _deid_one(path, str(rel), policy, out)
            kept = rel if name.endswith(".dcm") else rel.with_suffix(".png")
            target = dst / (kept if keep_names else Path(name))
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


def _deid_one(path: Path, label: str, policy: object, out: FileOutcome) -> tuple[bytes, str]:
    """(new bytes, default output name) for one input; fills `out`'s kind/counts/note."""
    from medlens.imaging.deid import deidentify_bytes
    from medlens.imaging.formats import sniff
    from medlens.imaging.ingest import ingest

    data = path.read_bytes()
    out.kind = sniff(data, label)
    if out.kind == "dicom":
        new, result = deidentify_bytes(data, policy, name=label)  # type: ignore[arg-type]
        uid = str(result.dataset.get("SOPInstanceUID", "")) or path.stem
        out.counts = result.summary()
        if result.warnings:
            out.status = "warning"
            out.note = "; ".join(result.warnings)
        return new, f"{uid}.dcm"
    img = ingest(data, name=label, deid=policy)
    out.counts = {"metadata-stripped": 1}
    return img.deidentified_bytes or b"", f"{img.pixel_sha256[:24]}.png"


def _deid_to_file(src: Path, dst: Path, policy: object) -> FileOutcome:
    out = FileOutcome(src.name)
    try:
        new, _ = _deid_one(src, src.name, policy, out)
        wanted = _FILE_SUFFIXES[dst.suffix.lower()]
        if (out.kind == "dicom") != (wanted == "dicom"):
            raise ConfigError(
                f"IN is {out.kind} but OUT ends in {dst.suffix}; name OUT "
                f"{'.dcm' if out.kind == 'dicom' else '.png'} or give a folder."
            )
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(new)
        out.output = dst.name
    except MedLensError as err:
        out.status = "blocked" if err.code == "deidentification_blocked" else "skipped"
        out.note = str(err)
    return out


# Short names keep the table within 80 columns; the legend under it spells them out.
_ABBREV = {
    "removed": "rm",
    "emptied": "empty",
    "dummy": "dummy",
    "uid-remapped": "uid",
    "date-shifted": "date",
    "private-removed": "priv",
    "age-banded": "age",
    "metadata-stripped": "meta",
}


def _changes(counts: dict[str, int]) -> str:
    return " ".join(f"{_ABBREV.get(k, k)} {v}" for k, v in counts.items() if v) or "-"


def _print_table(outcomes: list[FileOutcome], console: object = None) -> None:
    from rich.console import Console
    from rich.table import Table

    con = console if isinstance(console, Console) else Console()
    table = Table(title="De-identification (DICOM PS3.15 Annex E Basic Profile)")
    table.add_column("file", overflow="fold", ratio=3)
    table.add_column("type", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("changes", overflow="fold", ratio=2)
    table.add_column("output / note", overflow="fold", ratio=4)
    for o in outcomes:
        style = {"ok": "green", "warning": "yellow"}.get(o.status, "red")
        table.add_row(
            o.source,
            o.kind,
            f"[{style}]{o.status}[/{style}]",
            _changes(o.counts),
            (o.output + ("  " if o.output and o.note else "") + o.note)[:300],
        )
    con.print(table)
    used = {k for o in outcomes for k, v in o.counts.items() if v}
    if used:
        legend = ", ".join(f"{_ABBREV.get(k, k)} = {k}" for k in _ABBREV if k in used)
        con.print(f"changes: {legend}", soft_wrap=False)
    done = sum(o.status in ("ok", "warning") for o in outcomes)
    con.print(
        f"{done} of {len(outcomes)} file(s) written; "
        f"{sum(o.status == 'blocked' for o in outcomes)} blocked, "
        f"{sum(o.status == 'skipped' for o in outcomes)} skipped."
    )


def register(app: typer.Typer) -> None:
    @app.command("deid")
    def deid_cmd(
        src: Annotated[Path, typer.Argument(help="A DICOM/PNG/JPEG file or a folder.")],
        dst: Annotated[
            Path,
            typer.Argument(
                help="Output folder (created), or an output file when IN is one file and "
                "OUT ends in .dcm (DICOM) or .png (PNG/JPEG)."
            ),
        ],
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
        from medlens.cli.common import fail

        try:
            _deid(src, dst, dates, burned_in, (retain_safe_private, keep_names, age_band))
        except MedLensError as err:
            fail(err)


def _deid(
    src: Path, dst: Path, dates: str | None, burned_in: str | None, flags: tuple[bool, ...]
) -> None:
    from medlens.cli.common import settings_from
    from medlens.imaging.deid import DeidPolicy

    retain_safe_private, keep_names, age_band = flags
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
