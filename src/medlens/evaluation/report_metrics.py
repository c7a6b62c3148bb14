"""Report-generation metrics that run offline.

Clinical-efficacy F1 (CheXpert style): both the generated and the reference report go
through MedLens' rule-based labeler (`medlens.tasks.interpret.labeler.label_report`); each of the
14 CheXpert observations becomes "positive" (1) or "not positive" (0: negative, not
mentioned, and - by default - uncertain). Uncertain mentions count as not positive
("uncertain='negative'", the usual convention of CheXbert-based report metrics);
`uncertain='positive'` counts them as positive instead (the CheXpert U-Ones policy).
Per-label precision / recall / F1 come from the pooled TP/FP/FN over all report pairs;
macro F1 averages the labels whose F1 is defined (a label never positive in either the
generated or the reference reports has 0/0 and is left out, and reported as such).
"Top-5" macro F1 uses Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion
(the CheXpert competition labels MedGemma's card reports).

Text overlap: corpus BLEU-4 and mean ROUGE-L F1 (`text_metrics`).

Model-based metrics are optional and never downloaded. CheXbert F1 (`chexbert_metrics`)
labels both sides with the original Stanford CheXbert checkpoint (`chexbert` module: needs
the `hf` extra, MEDLENS_CHEXBERT_CHECKPOINT and MEDLENS_CHEXBERT_BERT) and scores them with
the same F1 code: positive = CheXbert class 1, uncertain (class 3) per `uncertain`.
RadGraph F1 is not supported: it needs the separate `radgraph` package (with its own
AllenNLP-era model and weights) and no MedLens code runs it. `model_metrics_status()`
says which model-based metrics are available and why the others are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from medlens.evaluation import stats, text_metrics

TOP5 = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")
Uncertain = Literal["negative", "positive"]


@dataclass(frozen=True)
class LabelF1:
    """Label F1 over report pairs, whichever labeler produced the labels."""

    per_label: dict[str, dict[str, float | int]]
    macro_f1: float
    macro_f1_top5: float
    micro_f1: float
    undefined_labels: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class ReportMetrics(LabelF1):
    """Rule-based label F1 plus BLEU-4 and ROUGE-L."""

    n: int
    bleu4: float
    bleu_precisions: tuple[float, ...]
    brevity_penalty: float
    rouge_l: float
    uncertain: str


def positive_labels(
    text: str, labels: Sequence[str], uncertain: Uncertain = "negative"
) -> set[str]:
    """The labels the rule-based labeler finds positive in `text`."""
    from medlens.tasks.interpret.labeler import label_report

    found = label_report(text)
    ok = {"positive", "uncertain"} if uncertain == "positive" else {"positive"}
    return {lbl for lbl in labels if lbl in found and found[lbl].status in ok}


def counts_from_sets(
    generated: Sequence[set[str]], references: Sequence[set[str]], labels: Sequence[str]
) -> dict[str, stats.BinaryCounts]:
    """Pooled TP/FP/FN/TN per label from the positive-label sets of each report pair."""
    if len(generated) != len(references):
        raise ValueError("generated and reference reports differ in number")
    tp = dict.fromkeys(labels, 0)
    fp, fn, tn = dict(tp), dict(tp), dict(tp)
    for g, r in zip(generated, references, strict=True):
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


def chexpert_counts(
    generated: Sequence[str],
    references: Sequence[str],
    labels: Sequence[str] | None = None,
    uncertain: Uncertain = "negative",
) -> dict[str, stats.BinaryCounts]:
    """Pooled TP/FP/FN/TN per label (reference = truth, generated = prediction)."""
    from medlens.tasks.interpret.labeler import CHEXPERT_LABELS

    if len(generated) != len(references):
        raise ValueError("generated and reference reports differ in number")
    labels = tuple(labels or CHEXPERT_LABELS)
    return counts_from_sets(
        [positive_labels(t, labels, uncertain) for t in generated],
        [positive_labels(t, labels, uncertain) for t in references],
        labels,
    )


def label_f1(counts: dict[str, stats.BinaryCounts]) -> LabelF1:
    """Per-label P/R/F1 (nan when undefined), macro, top-5 macro and micro F1."""
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
    return LabelF1(
        per_label=per,
        macro_f1=stats.macro_mean(f1),
        macro_f1_top5=stats.macro_mean([f1[lbl] for lbl in TOP5 if lbl in f1]),
        micro_f1=pooled.f1(math.nan),
        undefined_labels=tuple(lbl for lbl, v in f1.items() if math.isnan(v)),
    )


def report_metrics(
    generated: Sequence[str], references: Sequence[str], uncertain: Uncertain = "negative"
) -> ReportMetrics:
    f = label_f1(chexpert_counts(generated, references, uncertain=uncertain))
    bleu = text_metrics.corpus_bleu(generated, references)
    return ReportMetrics(
        **vars(f),
        n=len(generated),
        bleu4=bleu.bleu,
        bleu_precisions=bleu.precisions,
        brevity_penalty=bleu.brevity_penalty,
        rouge_l=text_metrics.rouge_l(generated, references),
        uncertain=uncertain,
    )


@dataclass(frozen=True)
class ChexbertMetrics(LabelF1):
    """Label F1 with CheXbert as the labeler."""

    n: int
    uncertain: str
    checkpoint: str


def chexbert_positive(labels: dict[str, int], uncertain: Uncertain = "negative") -> set[str]:
    """Conditions CheXbert calls positive (class 1; class 3 too when uncertain='positive')."""
    from medlens.evaluation.chexbert import POSITIVE, UNCERTAIN

    ok = {POSITIVE, UNCERTAIN} if uncertain == "positive" else {POSITIVE}
    return {cond for cond, cls in labels.items() if cls in ok}


def chexbert_metrics(
    generated: Sequence[str],
    references: Sequence[str],
    uncertain: Uncertain = "negative",
    labeler: Any = None,
) -> ChexbertMetrics:
    """CheXbert-label F1 (14 observations); loads the labeler from the env unless given."""
    from medlens.evaluation import chexbert

    if len(generated) != len(references):
        raise ValueError("generated and reference reports differ in number")
    lab = labeler or chexbert.load_labeler()
    # One pass over both sides: batches fill up and the model runs once per text.
    labels = lab.label([*generated, *references])
    sets = [chexbert_positive(x, uncertain) for x in labels]
    n = len(generated)
    f = label_f1(counts_from_sets(sets[:n], sets[n:], chexbert.CONDITIONS))
    return ChexbertMetrics(
        **vars(f),
        n=n,
        uncertain=uncertain,
        checkpoint=str(lab.checkpoint),
    )


def model_metrics_status() -> dict[str, str]:
    """Why each model-based metric is (not) available: never downloads or loads anything."""
    from medlens.errors import MedLensError
    from medlens.evaluation import chexbert

    out = {}
    if not chexbert.requested():
        out["chexbert"] = (
            f"skipped: set {chexbert.CHECKPOINT_ENV} to a local chexbert.pth and "
            f"{chexbert.BERT_ENV} to a folder with bert-base-uncased config.json + vocab.txt "
            "(Stanford CheXbert weights are not bundled and are never downloaded)"
        )
    else:
        try:
            p = chexbert.resolve_paths()
            out["chexbert"] = f"available: {p.checkpoint} (BERT files in {p.bert_dir})"
        except MedLensError as err:
            out["chexbert"] = f"skipped: {err}"
    out["radgraph"] = (
        "skipped: RadGraph F1 is not supported: it needs the separate `radgraph` package "
        "and its AllenNLP-era model weights, which MedLens does not run"
    )
    return out
