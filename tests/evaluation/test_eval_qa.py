"""QA harness: readers on the shared files, exact scoring, few-shot, resume, CLI (fake backends)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from medlens.errors import BackendUnavailable, ConfigError, DataError
from medlens.evaluation import records as rec
from medlens.evaluation import stats
from medlens.evaluation.datasets import TASKS, QAItem, read_medmcqa, read_medqa, read_pubmedqa
from medlens.evaluation.prompting import load_eval_prompt, order_pool, select_shots
from medlens.evaluation.runner import RunConfig, run_eval
from medlens.models.protocols import BackendInfo

INFO = BackendInfo("fake", "fake", "fake:", "r0", "deadbeef", "float32", "cpu", is_test=True)


class FakeGenerator:
    """Replies from a fixed table of raw outputs keyed by item id (found in the prompt)."""

    def __init__(self, outputs: dict[str, str], questions: dict[str, str]) -> None:
        self.info = INFO
        self.outputs = outputs
        self.questions = questions
        self.calls: list[str] = []
        self.fail_after: int | None = None

    def _item_id(self, prompt: str) -> str:
        # The item is the last question in the prompt (shots come first).
        best = max(self.questions, key=lambda i: prompt.rfind(self.questions[i].strip()))
        return best

    def stream(self, messages, config, stats=None):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt
        text = messages[-1].content[0].text
        item_id = self._item_id(text)
        self.calls.append(item_id)
        yield self.outputs[item_id]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class FakeScorer(FakeGenerator):
    """Log-likelihoods from a fixed table: label -> score per item id."""

    def __init__(self, scores: dict[str, dict[str, float]], questions: dict[str, str]) -> None:
        super().__init__({}, questions)
        self.scores = scores
        self.contexts: list[str] = []

    def loglikelihood(self, context, continuations):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt
        item_id = self._item_id(context)
        self.calls.append(item_id)
        self.contexts.append(context)
        return [self.scores[item_id][c.strip()] for c in continuations]


@pytest.fixture(scope="module")
def medqa_items(shared_data: Path) -> list[QAItem]:
    return read_medqa(shared_data / TASKS["medqa"].default_file)


def _cfg(tmp_path: Path, shared_data: Path, **kw) -> RunConfig:
    task = TASKS[kw.pop("task", "medqa")]
    data = shared_data / task.default_file
    return RunConfig(
        task=task,
        model="fake",
        data_file=data,
        fewshot_file=data,
        output=kw.pop("output", tmp_path / "run"),
        prompt=load_eval_prompt(task.prompt),
        **kw,
    )


def test_eval_readers_match_manifests(shared_data):
    mq = read_medqa(shared_data / TASKS["medqa"].default_file)
    assert len(mq) == 637
    assert Counter(i.gold for i in mq) == {"A": 187, "C": 182, "B": 146, "D": 122}
    assert all(list(i.options) == ["A", "B", "C", "D"] for i in mq)
    mm = read_medmcqa(shared_data / TASKS["medmcqa"].default_file)
    assert len(mm) == 500 and Counter(i.gold for i in mm) == {"A": 163, "B": 132, "C": 109, "D": 96}
    pq = read_pubmedqa(shared_data / TASKS["pubmedqa"].default_file)
    assert len(pq) == 250 and Counter(i.gold for i in pq) == {"yes": 141, "no": 80, "maybe": 29}
    tv = read_pubmedqa(shared_data / TASKS["pubmedqa"].fewshot_file)
    assert len(tv) == 500 and not ({i.id for i in tv} & {i.id for i in pq})  # disjoint pool


def test_eval_reader_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "x", "question": "q", "options": {"A": "a", "B": "b"}, "answer_idx": "C"}\n'
    )
    with pytest.raises(DataError, match="gold"):
        read_medqa(bad)
    bad.write_text('{"id": "x", "question": "q"\n')
    with pytest.raises(DataError, match=":1: not valid JSON"):
        read_medqa(bad)
    with pytest.raises(DataError, match="not found"):
        read_medqa(tmp_path / "missing.jsonl")


def test_eval_fixed_predictions_hand_computed_accuracy(tmp_path, shared_data, medqa_items):
    items = medqa_items[:10]
    wrong = {"A": "B", "B": "C", "C": "D", "D": "A"}
    outputs = {}
    # items 0-5 answered correctly in various formats, 6-7 wrong, 8 refusal, 9 two letters
    formats = ["The answer is {}.", "({})", "Answer: {}) x", "**{}**", "{}", "Final answer: {}"]
    for i, it in enumerate(items[:6]):
        outputs[it.id] = formats[i].format(it.gold)
    outputs[items[6].id] = f"The answer is {wrong[items[6].gold]}."
    outputs[items[7].id] = f"({wrong[items[7].gold]})"
    outputs[items[8].id] = "I cannot give medical advice."
    outputs[items[9].id] = f"The answer is {items[9].gold} or {wrong[items[9].gold]}."
    gen = FakeGenerator(outputs, {i.id: i.question for i in medqa_items})
    res = run_eval(
        _cfg(tmp_path, shared_data, scoring="generate", limit=10),
        medqa_items,
        [],
        gen,
        progress=False,
    )
    s = res.summary
    assert (s.correct, s.n, s.unparseable) == (6, 10, 2)
    assert s.accuracy.value == 0.6
    assert s.accuracy.ci.low == pytest.approx(stats.wilson_ci(6, 10).low)
    assert round(s.accuracy.ci.low, 4) == 0.3127 and round(s.accuracy.ci.high, 4) == 0.8318
    recs = rec.read_records(tmp_path / "run" / rec.RECORDS)
    assert [r["id"] for r in recs] == [i.id for i in items]
    assert recs[8]["prediction"] is None and recs[8]["raw_output"].startswith("I cannot")
    assert recs[9]["extract_reason"] == "multiple"
    summary = json.loads((tmp_path / "run" / rec.SUMMARY).read_text())
    assert summary["accuracy"] == 0.6 and summary["unparseable"] == 2
    meta = json.loads((tmp_path / "run" / rec.RUN).read_text())
    assert (
        meta["status"] == "complete" and meta["prompt"] == "mcq" and meta["prompt_version"] == "1"
    )
    assert len(meta["data_sha256"]) == 64 and meta["backend"]["weights_hash"] == "deadbeef"
    # the summary recomputed from the file alone gives the same numbers
    assert rec.summarize(recs).accuracy == s.accuracy


def test_eval_summarize_fixed_file(tmp_path):
    path = tmp_path / "records.jsonl"
    rows = [
        {"id": str(i), "gold": "A", "prediction": p, "correct": p == "A"}
        for i, p in enumerate(["A", "A", "B", None, "A", "C", "A", None])
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = rec.summarize(rec.read_records(path))
    assert (s.correct, s.n, s.unparseable) == (4, 8, 2) and s.accuracy.value == 0.5
    assert s.prediction_counts == {"A": 4, "B": 1, "C": 1, "None": 2}


def test_eval_loglik_scoring_and_tie(tmp_path, shared_data, medqa_items):
    items = medqa_items[:6]
    scores = {}
    for n, it in enumerate(items):
        sc = {k: -5.0 for k in "ABCD"}
        target = it.gold if n < 4 else next(k for k in "ABCD" if k != it.gold)
        sc[target] = -1.0
        scores[it.id] = sc
    tie = {k: -2.0 for k in "ABCD"}  # exact tie: first label wins, flagged
    scores[items[5].id] = tie
    fake = FakeScorer(scores, {i.id: i.question for i in medqa_items})
    res = run_eval(
        _cfg(tmp_path, shared_data, scoring="loglik", limit=6),
        medqa_items,
        [],
        fake,
        progress=False,
    )
    expected = 4 + (items[5].gold == "A")
    assert res.summary.correct == expected
    recs = rec.read_records(tmp_path / "run" / rec.RECORDS)
    assert recs[5]["tie"] is True and recs[5]["prediction"] == "A"
    assert recs[0]["scores"] == scores[items[0].id]
    ctx = fake.contexts[0]
    assert ctx.endswith("D. " + items[0].options["D"] + "\nAnswer:")
    assert res.metadata["scoring"] == "loglik"


def test_eval_auto_and_missing_loglik(tmp_path, shared_data, medqa_items):
    gen = FakeGenerator(
        {i.id: "(A)" for i in medqa_items[:2]}, {i.id: i.question for i in medqa_items}
    )
    with pytest.raises(BackendUnavailable):
        run_eval(
            _cfg(tmp_path, shared_data, scoring="loglik", limit=2),
            medqa_items,
            [],
            gen,
            progress=False,
        )
    res = run_eval(
        _cfg(tmp_path, shared_data, scoring="auto", limit=2, output=tmp_path / "r2"),
        medqa_items,
        [],
        gen,
        progress=False,
    )
    assert res.metadata["scoring"] == "generate"


def test_eval_fewshot_deterministic_and_excludes_item(shared_data, medqa_items):
    pool = order_pool(medqa_items, seed=3)
    assert [i.id for i in pool] == [i.id for i in order_pool(list(reversed(medqa_items)), 3)]
    first = pool[0]
    shots = select_shots(pool, first, 3)
    assert first.id not in {s.id for s in shots} and len(shots) == 3
    other = select_shots(pool, pool[10], 3)
    assert [s.id for s in other] == [p.id for p in pool[:3]]
    assert [s.id for s in select_shots(order_pool(medqa_items, 4), first, 3)] != [
        s.id for s in other
    ]


def test_eval_fewshot_prompt_in_context(tmp_path, shared_data):
    pq_file = shared_data / TASKS["pubmedqa"].default_file
    items = read_pubmedqa(pq_file)
    pool = read_pubmedqa(shared_data / TASKS["pubmedqa"].fewshot_file)
    scores = {i.id: {"yes": -1.0, "no": -2.0, "maybe": -3.0} for i in items}
    fake = FakeScorer(scores, {i.id: i.question for i in items})
    cfg = _cfg(tmp_path, shared_data, task="pubmedqa", scoring="loglik", shots=2, limit=3)
    res = run_eval(cfg, items, pool, fake, progress=False)
    ordered = order_pool(pool, 0)
    ctx = fake.contexts[0]
    assert ordered[0].question in ctx and ordered[1].question in ctx
    assert ctx.count("\nAnswer:") == 3 and ctx.endswith(items[0].question + "\nAnswer:")
    assert f"Answer: {ordered[0].gold}\n\n" in ctx
    recs = rec.read_records(tmp_path / "run" / rec.RECORDS)
    assert recs[0]["shot_ids"] == [ordered[0].id, ordered[1].id]
    assert res.summary.correct == sum(i.gold == "yes" for i in items[:3])
    assert res.metadata["fewshot_sha256"] and res.metadata["shots"] == 2


def test_eval_resume_after_interrupt(tmp_path, shared_data, medqa_items):
    items = medqa_items[:8]
    scores = {i.id: {k: (-1.0 if k == i.gold else -3.0) for k in "ABCD"} for i in items}
    fake = FakeScorer(scores, {i.id: i.question for i in medqa_items})
    fake.fail_after = 3
    cfg = _cfg(tmp_path, shared_data, scoring="loglik", limit=8)
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg, medqa_items, [], fake, progress=False)
    path = tmp_path / "run" / rec.RECORDS
    assert len(rec.read_records(path)) == 3
    # simulate a crash mid-write: a torn last line must be dropped, not crash the resume
    with open(path, "a") as fh:
        fh.write('{"id": "medqa_us_test_9999", "gold": "A", "predi')
    fake2 = FakeScorer(scores, {i.id: i.question for i in medqa_items})
    res = run_eval(cfg, medqa_items, [], fake2, progress=False)
    assert fake2.calls == [i.id for i in items[3:]]  # only the unscored ones
    assert (res.scored_now, res.skipped) == (5, 3)
    recs = rec.read_records(path)
    assert [r["id"] for r in recs] == [i.id for i in items]
    assert res.summary.correct == 8 and res.metadata["status"] == "complete"
    assert "resumed_at" in res.metadata
    # a different configuration refuses to reuse the folder
    with pytest.raises(ConfigError, match="shots"):
        run_eval(
            _cfg(tmp_path, shared_data, scoring="loglik", limit=8, shots=1),
            medqa_items,
            medqa_items,
            fake2,
            progress=False,
        )
