"""Parse a model's free-text report into technique / comparison / findings / impression.

Models format headings many ways ("Findings:", "**FINDINGS**", "## Impression", "1. Findings
-") and non-English reports may translate them; the parser accepts all of these and never
fails: text without headings is kept whole as `findings` (parse_quality "unstructured").
The raw text is always kept unchanged beside the sections.
"""

from __future__ import annotations

import re

from medlens.tasks.interpret.result import ReportSections

# Heading words per section, English first, then the languages of tasks.language.
_HEADINGS: dict[str, tuple[str, ...]] = {
    "technique": (
        "technique",
        "technical factors",
        "view",
        "views",
        "examination",
        "exam",
        "técnica",
        "technik",
        "तकनीक",
        "技术",
        "检查技术",
    ),
    "comparison": (
        "comparison",
        "comparisons",
        "prior",
        "comparación",
        "comparaison",
        "vergleich",
        "comparação",
        "तुलना",
        "对比",
        "比较",
    ),
    "indication": (
        "indication",
        "clinical indication",
        "history",
        "clinical history",
        "reason for exam",
        "indicación",
        "indication clinique",
        "indikation",
        "indicação",
        "संकेत",
        "临床指征",
    ),
    "findings": (
        "findings",
        "finding",
        "observations",
        "report",
        "hallazgos",
        "résultats",
        "constatations",
        "befund",
        "befunde",
        "achados",
        "निष्कर्ष",
        "所见",
        "检查所见",
        "影像所见",
        "表现",
        "发现",
    ),
    "impression": (
        "impression",
        "impressions",
        "conclusion",
        "conclusions",
        "summary",
        "assessment",
        "diagnosis",
        "impresión",
        "conclusión",
        "beurteilung",
        "eindruck",
        "zusammenfassung",
        "impressão",
        "conclusão",
        "प्रभाव",
        "छाप",
        "निष्कर्ष सारांश",
        "印象",
        "结论",
        "诊断意见",
    ),
}
_WORD_TO_SECTION = {w: sec for sec, words in _HEADINGS.items() for w in words}
_ALT = "|".join(sorted((re.escape(w) for w in _WORD_TO_SECTION), key=len, reverse=True))
# A heading: line start, optional markdown/numbering, the word, then ':' / '：' / '-' or EOL.
_HEADING_RE = re.compile(
    rf"^[ \t]*(?:#{{1,6}}[ \t]*)?(?:\d+[.)][ \t]*)?(?:\*\*|__)?[ \t]*({_ALT})[ \t]*"
    rf"(?:\*\*|__)?[ \t]*(?:[:：]|[ \t]+-[ \t]|(?=\n)|$)(?:\*\*|__)?",
    re.IGNORECASE | re.MULTILINE,
)
_MD = re.compile(r"\*\*|__|^#+\s*", re.MULTILINE)


def _clean(text: str) -> str | None:
    text = _MD.sub("", text).strip().strip(":").strip()
    return re.sub(r"\n{3,}", "\n\n", text) or None


def parse_report(text: str) -> ReportSections:
    """Sections of a report; missing sections are None, the raw text is kept."""
    raw = text or ""
    if not raw.strip():
        return ReportSections(raw_text=raw, parse_quality="empty")
    matches = list(_HEADING_RE.finditer(raw))
    sections: dict[str, str] = {}
    for i, m in enumerate(matches):
        name = _WORD_TO_SECTION[m.group(1).lower()]
        end = matches[i + 1].start() if i + 1 < len(matches) else len(raw)
        body = _clean(raw[m.end() : end])
        if body:
            # A repeated heading (e.g. two "Findings" blocks for two images) is appended.
            sections[name] = f"{sections[name]}\n{body}" if name in sections else body
    preamble = _clean(raw[: matches[0].start()]) if matches else None
    has_f, has_i = "findings" in sections, "impression" in sections
    if has_f and has_i:
        quality = "structured"
    elif has_f or has_i:
        quality = "partial"
        if not has_f and preamble:
            # Text before the first heading is usually the findings narrative.
            sections["findings"] = preamble
    else:
        quality = "unstructured"
        body = _clean(raw)
        sections = {"findings": body} if body else {}
    return ReportSections(
        technique=sections.get("technique"),
        comparison=sections.get("comparison"),
        findings=sections.get("findings"),
        impression=sections.get("impression"),
        raw_text=raw,
        parse_quality=quality,  # type: ignore[arg-type]
    )
