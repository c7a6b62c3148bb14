"""The report as a PDF for printing (fpdf2): header, the signed text (or the AI draft
clearly marked DRAFT — NOT SIGNED), signer and time, addenda, and the disclaimer in the
footer of every page.

A Unicode TrueType font (DejaVu Sans, when the system has it) prints every report
language; without one, the core Helvetica font prints Latin-1 and marks other
characters with '?', so a missing font never fails the export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medlens.disclaimer import DISCLAIMER
from medlens.server.schemas_review import ReportContent
from medlens.tasks.interpret.signoff import SignedReport, review_line

DRAFT_MARK = "DRAFT — NOT SIGNED"
_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF")


def _unicode_font() -> tuple[Path, Path] | None:
    for folder in _FONT_DIRS:
        regular, bold = Path(folder, "DejaVuSans.ttf"), Path(folder, "DejaVuSans-Bold.ttf")
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


def _make_pdf(title: str, study_id: str, status: str) -> Any:
    from fpdf import FPDF

    font = _unicode_font()

    class ReportPdf(FPDF):  # type: ignore[misc]
        family_name = "helvetica"  # the font family every text uses (see below)

        def header(self) -> None:
            self.set_font(self.family_name, "B", 13)
            self.cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
            self.set_font(self.family_name, "", 9)
            self.cell(
                0, 5, self.text_of(f"Study {study_id} · {status}"), new_x="LMARGIN", new_y="NEXT"
            )
            self.ln(3)

        def footer(self) -> None:
            self.set_y(-18)
            self.set_font(self.family_name, "B", 8)
            self.multi_cell(0, 4, self.text_of(DISCLAIMER), align="C")
            self.set_font(self.family_name, "", 8)
            self.cell(0, 4, f"Page {self.page_no()}/{{nb}}", align="C")

        def text_of(self, text: str) -> str:
            if font is not None:
                return text
            return (
                text.replace("—", "-")
                .replace("·", "-")
                .encode("latin-1", "replace")
                .decode("latin-1")
            )

    pdf = ReportPdf(format="A4")
    if font is not None:
        pdf.add_font("body", "", str(font[0]))
        pdf.add_font("body", "B", str(font[1]))
        pdf.family_name = "body"
    pdf.set_auto_page_break(auto=True, margin=24)
    pdf.set_title(title)
    pdf.set_creator("MedLens")
    return pdf


def _section(pdf: Any, heading: str, body: str) -> None:
    pdf.set_font(pdf.family_name, "B", 11)
    pdf.cell(0, 7, pdf.text_of(heading), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(pdf.family_name, "", 10)
    pdf.multi_cell(0, 5, pdf.text_of(body or "-"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)


def report_pdf(
    study_id: str, created_at: str, draft: ReportContent, signed: SignedReport | None
) -> bytes:
    """The printable report: the signed one when there is one, else the marked draft."""
    status = "FINAL — SIGNED" if signed is not None else DRAFT_MARK
    if signed is not None and signed.addenda:
        status = "FINAL — SIGNED, WITH ADDENDA"
    pdf = _make_pdf("MedLens chest X-ray report", study_id, status)
    pdf.alias_nb_pages()
    pdf.add_page()
    pdf.set_font(pdf.family_name, "B", 16)
    pdf.cell(0, 10, pdf.text_of(status), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(pdf.family_name, "", 9)
    pdf.cell(0, 5, pdf.text_of(f"Study created {created_at}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    if signed is None:
        _section(pdf, "Findings (AI-generated draft)", draft.findings)
        _section(pdf, "Impression (AI-generated draft)", draft.impression)
        _section(pdf, "Status", "Not reviewed or signed by a radiologist.")
        return bytes(pdf.output())
    _section(pdf, "Findings", signed.findings)
    _section(pdf, "Impression", signed.impression)
    reviewed = review_line(signed.finding_reviews)
    if reviewed:
        _section(pdf, "Review of the AI findings", reviewed)
    _section(
        pdf,
        "Signed",
        f"Signed by {signed.signer_name} on {signed.signed_at} (version {signed.version}).\n"
        f"SHA-256 of the signed content: {signed.sha256}",
    )
    for a in signed.addenda:
        _section(pdf, f"Addendum {a.seq} — {a.author_name}, {a.created_at}", a.text)
    return bytes(pdf.output())
