"""Report-generation metrics that run offline.

Clinical-efficacy F1 (CheXpert style): both the generated and the reference report go
through MedLens' rule-based labeler (`medlens.tasks.labeler.label_report`); each of the
14 CheXpert observations becomes "positive" (1) or "not positive" (0: negative, not
mentioned, and - by default - uncertain). Uncertain mentions count as not positive
("uncertain='negative'", the usual convention of CheXbert-based report metrics);
`uncertain='positive'` counts them as positive instead (the CheXpert U-Ones policy).
Per-label precision / recall / F1 come from the pooled TP/FP/FN over all report pairs;
macro F1 averages the labels whose F1 is defined (a label never positive in either the
generated or the reference reports has 0/0 and is left out, and reported as such).
"Top-5" macro F1 uses Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion
(the CheXpert competition labels MedGemma's card reports).

Text overlap: corpus BLEU-4 and mean ROUGE-L F1 (`text_metrics`). Model-based metrics
(CheXbert, RadGraph) are not bundled: `model_metrics_status()` says why they are skipped.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medlens.evaluation import stats, text_metrics

TOP5 = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")
Uncertain = Literal["negative", "positive"]


@dataclass(frozen=True)
class ReportMetrics:
    n: int
    per_label: dict[str, dict[str, float | int]]
    macro_f1: float
    macro_f1_top5: float
    micro_f1: float
    undefined_labels: tuple[str, ...]
    bleu4: float
    bleu_precisions: tuple[float, ...]
    brevity_penalty: float
    rouge_l: float
    uncertain: str

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def positive_labels(
    text: str, labels: Sequence[str], uncertain: Uncertain = "negative"
) -> set[str]:
    """The labels the rule-based labeler finds positive in `text`."""
    from medlens.tasks.labeler import label_report

    found = label_report(text)
    ok = {"positive", "uncertain"} if uncertain == "positive" else {"positive"}
    return {lbl for lbl in labels if lbl in found and found[lbl].status in ok}


def chexpert_counts(
    generated: Sequence[str],
    references: Sequence[str],
    labels: Sequence[str] | None = None,
    uncertain: Uncertain = "negative",
) -> dict[str, stats.BinaryCounts]:
    """Pooled TP/FP/FN/TN per label (reference = truth, generated = prediction)."""
    from medlens.tasks.labeler import CHEXPERT_LABELS

    if len(generated) != len(references):
        raise ValueError("generated and reference reports differ in number")
    labels = tuple(labels or CHEXPERT_LABELS)
    tp = dict.fromkeys(labels, 0)
    fp, fn, tn = dict(tp), dict(tp), dict(tp)
    for gen, ref in zip(generated, references, strict=True):
        g = positive_labels(gen, labels, uncertain)
        r = positive_labels(ref, labels, uncertain)
        for lbl in labels:
            if lbl in g and lbl in r:
                tp[lbl] += 1
            elif lbl in g:
                fp[lbl] += 1
            elif lbl in r:
                fn[lbl] += 1
            else:
                tn[lbl] += 1
    return {lbl: stats.BinaryCounts(tp[lbl], fp[lbl], fn[lbl], tn[lbl]) for lbl in labels}


def report_metrics(
    generated: Sequence[str], references: Sequence[str], uncertain: Uncertain = "negative"
) -> ReportMetrics:
    counts = chexpert_counts(generated, references, uncertain=uncertain)
    per = {}
    for lbl, c in counts.items():
        per[lbl] = {
            "tp": c.tp,
            "fp": c.fp,
            "fn": c.fn,
            "tn": c.tn,
            "precision": c.precision(math.nan),
            "recall": c.recall(math.nan),
            "f1": c.f1(math.nan),
        }
    f1 = {lbl: float(v["f1"]) for lbl, v in per.items()}
    pooled = stats.BinaryCounts(
        sum(c.tp for c in counts.values()),
        sum(c.fp for c in counts.values()),
        sum(c.fn for c in counts.values()),
        sum(c.tn for c in counts.values()),
    )
    bleu = text_metrics.corpus_bleu(generated, references)
    return ReportMetrics(
        n=len(generated),
        per_label=per,
        macro_f1=stats.macro_mean(f1),
        macro_f1_top5=stats.macro_mean([f1[lbl] for lbl in TOP5 if lbl in f1]),
        micro_f1=pooled.f1(math.nan),
        undefined_labels=tuple(lbl for lbl, v in f1.items() if math.isnan(v)),
        bleu4=bleu.bleu,
        bleu_precisions=bleu.precisions,
        brevity_penalty=bleu.brevity_penalty,
        rouge_l=text_metrics.rouge_l(generated, references),
        uncertain=uncertain,
    )


def model_metrics_status() -> dict[str, str]:
    """Why each model-based metric is (not) available: never downloads anything."""
    out = {}
    chexbert = os.environ.get("MEDLENS_CHEXBERT_CHECKPOINT")
    if not chexbert:
        out["chexbert"] = (
            "skipped: set MEDLENS_CHEXBERT_CHECKPOINT to a local chexbert.pth "
            "(Stanford CheXbert weights are not bundled and are never downloaded)"
        )
    elif not Path(chexbert).expanduser().is_file():
        out["chexbert"] = f"skipped: MEDLENS_CHEXBERT_CHECKPOINT={chexbert} does not exist"
    else:
        out["chexbert"] = "skipped: CheXbert scoring is not implemented in this version"
    out["radgraph"] = (
        "skipped: RadGraph F1 needs the `radgraph` package and its local model "
        "weights; not implemented in this version"
    )
    return out
