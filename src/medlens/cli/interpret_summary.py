"""What `medlens interpret` prints after the streamed report (without --json)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medlens.disclaimer import DISCLAIMER

if TYPE_CHECKING:
    from rich.console import Console
    from rich.panel import Panel

    from medlens.tasks.interpret.result import Interpretation


def print_summary(out: Console, r: Interpretation, turns: list) -> None:
    """Gate verdicts, scores, checks, follow-ups, warnings, provenance and the disclaimer."""
    from rich.table import Table

    out.print()
    if r.status == "refused":
        out.print("[bold red]No report: the image gate refused every current image.[/bold red]")
    for g in r.gate:
        mark = "[green]accepted[/green]" if g.accepted else "[red]refused[/red]"
        out.print(
            f"image {g.image_index + 1} ({g.source_name}, {g.timepoint} {g.view}): "
            f"{mark} - {g.reason}"
        )
    scores = r.scores_for(next((b.image_index for b in r.finding_scores), None))
    if scores:
        table = Table(title="Finding scores (zero-shot encoder)", show_lines=False)
        table.add_column("finding")
        table.add_column("probability", justify="right")
        for label, p in sorted(scores.items(), key=lambda kv: -kv[1]):
            table.add_row(label, f"{p:.2f}")
        out.print(table)
    if r.cross_check is not None:
        if not r.cross_check.checked:
            out.print(f"Cross-check: not run ({r.cross_check.note})")
        elif r.cross_check.disagreements:
            out.print("[bold]Cross-check: report vs scores disagree on[/bold]")
            for d in r.cross_check.disagreements:
                out.print(f"  - {d.message}")
        else:
            out.print("Cross-check: no disagreements.")
    if r.similar_cases:
        out.print(
            "Similar cases: "
            + "; ".join(
                f"{c.case_id} ({c.score:.2f}{': ' + ', '.join(c.labels) if c.labels else ''})"
                for c in r.similar_cases
            )
        )
    if r.language_check is not None:
        out.print(
            f"Back-translation check ({r.language_check.language}): "
            + ("; ".join(r.language_check.mismatches) or "no mismatches")
        )
    if r.urgency is not None:
        out.print(f"[bold]Urgency: {r.urgency.level.upper()}[/bold]")
        for reason in r.urgency.reasons:
            out.print(f"  [{reason.rule_id}] {reason.reason}")
    for t in turns:
        out.print(f"\n[bold]Q:[/bold] {t.question}")
        out.print(t.answer, markup=False)
        out.print(f"[dim](images encoded this turn: {t.images_encoded})[/dim]")
    for w in r.warnings:
        out.print(f"[yellow]warning:[/yellow] {w}", markup=True)
    p = r.provenance
    if p.generator:
        g = p.generator
        out.print(
            f"Model: {g.model_id} (revision {g.revision}, weights "
            f"{g.weights_hash[:12]}, {g.backend}/{g.device}/{g.dtype})"
        )
    if p.encoder:
        e = p.encoder
        out.print(f"Encoder: {e.model_id} (revision {e.revision}, weights {e.weights_hash[:12]})")
    if p.prompt:
        out.print(f"Prompt: {p.prompt.name} v{p.prompt.version} ({p.prompt.prompt_format})")
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in p.timings.items() if "." not in k)
    out.print(f"Timings: {timings}")
    out.print(f"MedLens {p.medlens_version}; inputs: " + ", ".join(i.sha256[:12] for i in p.inputs))
    print_report_block(out, r)
    if r.test_model_label:
        out.print(f"[bold yellow]{r.test_model_label}[/bold yellow]")
    out.print(f"[bold]{DISCLAIMER}[/bold] {r.verification_notice}")


_SECTIONS = ("technique", "comparison", "findings", "impression")


def print_report_block(out: Console, r: Interpretation) -> None:
    # soft_wrap off for this block: interpret's console soft-wraps (stream), which would
    # crop the panel's lines instead of folding them inside it.
    out.print(report_block(r), soft_wrap=False)


def report_block(r: Interpretation) -> Panel:
    """The draft report once more, clean and whole, after the stream and the details:
    the one block to read or copy. Model text is never read as rich markup."""
    from rich.panel import Panel
    from rich.text import Text

    body = Text(overflow="fold")  # fold: long unbroken model output still fits the width
    rep = r.report
    if r.status == "refused" or rep is None:
        body.append("No report: the image gate refused every current image.", style="bold red")
    elif rep.parse_quality in ("structured", "partial"):
        parts = [(n, getattr(rep, n)) for n in _SECTIONS if getattr(rep, n)]
        for i, (name, text) in enumerate(parts):
            body.append(("\n\n" if i else "") + name.upper() + "\n", style="bold")
            body.append(text.strip())
    else:
        body.append(rep.raw_text.strip() or "(the model returned no text)")
    if r.urgency is not None:
        body.append(f"\n\nUrgency: {r.urgency.level.upper()}", style="bold")
    title = "Draft report" + (f" - {r.test_model_label}" if r.test_model_label else "")
    return Panel(body, title=title, title_align="left", subtitle=DISCLAIMER.split(".")[0])
