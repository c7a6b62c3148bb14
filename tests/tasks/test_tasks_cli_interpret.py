"""`medlens interpret` and `medlens summarize` through the real CLI app.

Fast tests patch the backend loader with the mocks; the end-to-end tests at the bottom
load the tiny test models through the real loader (issue 2 / issue 4 Done-when commands).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medlens.cli.main import app
from medlens.disclaimer import DISCLAIMER, TEST_MODEL_LABEL
from medlens.errors import ModelNotAvailable
from medlens.tasks.interpret.result import Interpretation

from .conftest import ABNORMAL_REPORT, FakeEncoder, MockGenerator

runner = CliRunner()


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> dict:
    from medlens.models.registry import load_registry
    from medlens.models.session import ModelSession

    state: dict = {"gen": MockGenerator([ABNORMAL_REPORT, "Yes.", ABNORMAL_REPORT]),
                   "enc": FakeEncoder()}
    reg = load_registry()

    def gen_for(settings, model, *, text=False):
        return state["gen"], reg.get(model or "medlens/test-medgemma")

    def enc_for(settings, model):
        if model is None:  # the default encoder (google/medsiglip-448) is not downloaded
            raise ModelNotAvailable("google/medsiglip-448 is not in the local cache.")
        return state["enc"], reg.get(model)

    monkeypatch.setattr(ModelSession, "generator_for", staticmethod(gen_for))
    monkeypatch.setattr(ModelSession, "encoder_for", staticmethod(enc_for))
    return state


def test_human_output_streams_report_and_provenance(mocked: dict, cxr_pngs: list[Path]) -> None:
    res = runner.invoke(app, ["interpret", str(cxr_pngs[0]), "--model",
                              "medlens/test-medgemma", "--ask", "Is it on the right?"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "Large right pleural effusion." in out  # the streamed report
    assert "Urgency: URGENT" in out and "[U03]" in out
    assert "Model: mock/medgemma (revision rev-1" in out
    assert "Prompt: cxr-report+radiologist-system@1 v1.0" in out
    assert "Timings:" in out and "generate" in out
    assert TEST_MODEL_LABEL in out and DISCLAIMER in out
    assert "Q: Is it on the right?" in out and "images encoded this turn: 0" in out


def test_json_output_follows_the_schema(mocked: dict, cxr_pngs: list[Path],
                                        cxr_dicom: Path) -> None:
    res = runner.invoke(app, ["interpret", str(cxr_dicom), str(cxr_pngs[0]), "--json",
                              "--context", "fever", "--prior", str(cxr_pngs[1]),
                              "--ask", "Any change?"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)  # nothing but JSON on stdout
    r = Interpretation.model_validate(data)
    assert [(f.question, f.answer, f.images_encoded) for f in r.followups] == [
        ("Any change?", "Yes.", 0)]
    assert r.status == "complete" and len(r.gate) == 3 and r.context_used[0] == "indication"
    assert "load_models" in r.provenance.timings
    assert r.test_model_label == TEST_MODEL_LABEL


def test_fhir_option_writes_the_diagnostic_report(mocked: dict, cxr_pngs: list[Path],
                                                  tmp_path: Path) -> None:
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    from medlens.tasks.interpret.fhir import to_diagnostic_report

    out = tmp_path / "report.fhir.json"
    res = runner.invoke(app, ["interpret", str(cxr_pngs[0]), "--json", "--fhir", str(out)])
    assert res.exit_code == 0, res.output
    r = Interpretation.model_validate(json.loads(res.stdout))
    fhir = json.loads(out.read_text(encoding="utf-8"))
    assert fhir == to_diagnostic_report(r)  # the builder the API serves from
    report = DiagnosticReport.model_validate(fhir)
    assert report.status == "preliminary" and report.id == r.study_id
    assert "Large right pleural effusion." in report.presentedForm[0].data.decode()
    # The id comes from the images, so a re-run writes the same resource.
    again = runner.invoke(app, ["interpret", str(cxr_pngs[0]), "--json"])
    assert json.loads(again.stdout)["study_id"] == r.study_id


def test_ehr_bundle_adds_context(mocked: dict, cxr_pngs: list[Path], shared_data: Path) -> None:
    bundle = next((shared_data / "fhir").glob("Michele_Wolf*.json"))
    res = runner.invoke(app, ["interpret", str(cxr_pngs[0]), "--json", "--ehr", str(bundle)])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {"age", "sex", "patient record summary"} <= set(data["context_used"])
    text = mocked["gen"].calls[0][-1].content[0].text
    assert "Chronic congestive heart failure" in text and "Michele" not in text


def test_bad_input_is_one_line_error(mocked: dict, tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"PK\x03\x04 not an image")
    res = runner.invoke(app, ["interpret", str(bad)])
    assert res.exit_code != 0
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert "Traceback" not in res.output


def test_unknown_model_is_one_line_error(cxr_pngs: list[Path]) -> None:
    res = runner.invoke(app, ["interpret", str(cxr_pngs[0]), "--model", "nope/nothing"])
    assert res.exit_code != 0 and "Unknown model 'nope/nothing'" in res.stderr
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1


def test_refused_image_exits_3_without_report(mocked: dict, dicom_dir: Path) -> None:
    res = runner.invoke(app, ["interpret", str(dicom_dir / "CT_small.dcm")])
    assert res.exit_code == 3
    assert "No report" in res.stdout and DISCLAIMER in res.stdout
    assert mocked["gen"].calls == []


def test_summarize_context_only(shared_data: Path) -> None:
    bundle = next((shared_data / "fhir").glob("Kermit_Trantow*.json"))
    res = runner.invoke(app, ["summarize", str(bundle), "--context-only"])
    assert res.exit_code == 0 and "Allergy to peanuts" in res.stdout
    assert "Kermit" not in res.stdout and DISCLAIMER in res.stdout


def test_summarize_with_a_model(mocked: dict, tmp_path: Path) -> None:
    mocked["gen"] = MockGenerator(["- cough, fever"])
    notes = tmp_path / "notes.txt"
    notes.write_text("Day 1: cough.\nDay 2: fever 38.5 C.\n")
    res = runner.invoke(app, ["summarize", str(notes), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["summary"] == "- cough, fever" and data["calls"] == 1
    assert data["test_model_label"] == TEST_MODEL_LABEL


# --- end to end with the tiny test models (real loader, real transformers backends) ---
def test_e2e_png_with_test_model(tiny_test_models: dict, cxr_pngs: list[Path]) -> None:
    """The issue's command: only --model given; the test encoder is paired automatically."""
    res = runner.invoke(app, ["interpret", str(cxr_pngs[0]), "--model",
                              "medlens/test-medgemma", "--max-new-tokens", "8"])
    assert res.exit_code == 0, res.output
    assert "Model: medlens/test-medgemma (revision local" in res.stdout
    assert "Encoder: medlens/test-medsiglip" in res.stdout and "Finding scores" in res.stdout
    assert TEST_MODEL_LABEL in res.stdout and DISCLAIMER in res.stdout


def test_e2e_dicom_png_spanish_json(tiny_test_models: dict, cxr_pngs: list[Path],
                                    cxr_dicom: Path) -> None:
    from medlens.models.session import default_session

    default_session().unload()  # other tests' encodings of these images must not count
    res = runner.invoke(app, [
        "interpret", str(cxr_dicom), str(cxr_pngs[0]), "--language", "es", "--json",
        "--model", "medlens/test-medgemma", "--encoder", "medlens/test-medsiglip",
        "--max-new-tokens", "8"])
    assert res.exit_code == 0, res.output
    r = Interpretation.model_validate(json.loads(res.stdout))
    assert r.status == "complete" and r.language == "es"
    assert [i.format for i in r.provenance.inputs] == ["dicom", "png"]
    assert r.provenance.generator.model_id == "medlens/test-medgemma"
    assert r.provenance.generator.weights_hash and r.provenance.encoder.weights_hash
    assert len(r.finding_scores) == 2 and len(r.finding_scores[0].scores) == 14
    assert r.language_check is not None  # back-translation ran (default on)
    gen = r.provenance.generation  # the PNG may already sit in the backend's cache
    assert gen.images_encoded + gen.images_cached == 2 and gen.images_encoded >= 1
    assert r.test_model_label == TEST_MODEL_LABEL and r.disclaimer == DISCLAIMER


def test_unknown_modality_is_one_line_error(cxr_pngs: list[Path]) -> None:
    res = runner.invoke(app, ["interpret", str(cxr_pngs[0]), "--modality", "xray"])
    assert res.exit_code != 0 and res.stderr.startswith("error: Unknown modality 'xray'")


def test_missing_weights_is_one_line_error(cxr_pngs: list[Path]) -> None:
    res = runner.invoke(app, ["interpret", str(cxr_pngs[0]), "--model",
                              "google/medgemma-4b-it", "--no-scores"])
    lines = res.stderr.splitlines()  # progress lines ("· read 1 image(s)") may precede
    assert res.exit_code != 0 and lines[-1].startswith("error: ")
    assert [ln for ln in lines if not ln.startswith("· ")] == [lines[-1]]
    assert "Health AI Developer Foundations" in lines[-1] and "Traceback" not in res.output


def test_missing_default_encoder_downgrades_to_no_scores(mocked: dict,
                                                        cxr_pngs: list[Path]) -> None:
    res = runner.invoke(app, ["interpret", str(cxr_pngs[0]), "--json"])
    assert res.exit_code == 0, res.output
    r = Interpretation.model_validate(json.loads(res.stdout))
    assert r.finding_scores == [] and any("No encoder" in w for w in r.warnings)
    assert "no finding scores" in res.stderr


def test_missing_explicit_encoder_is_an_error(mocked: dict, cxr_pngs: list[Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from medlens.models.session import ModelSession

    def unavailable(settings, model):
        raise ModelNotAvailable(f"{model} is not in the local cache.")

    monkeypatch.setattr(ModelSession, "encoder_for", staticmethod(unavailable))
    res = runner.invoke(app, ["interpret", str(cxr_pngs[0]), "--encoder",
                              "google/medsiglip-448"])
    assert res.exit_code != 0 and res.stderr.splitlines()[-1].startswith("error: ")
