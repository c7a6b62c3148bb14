"""Gate thresholds: documented package defaults, overrides, and loud typos."""

from __future__ import annotations

import pytest

from medlens.errors import ConfigError
from medlens.evaluation.gate_config import load_thresholds


def test_defaults_come_from_the_package_file() -> None:
    th = load_thresholds()
    assert th.qa.max_accuracy_drop == 0.03 and th.qa.alpha == 0.05
    assert th.kl.min_top1_agreement == 0.85
    assert th.finetune.max_general_drop == 0.02
    assert th.sources == ("medlens/evaluation/gate_thresholds.toml",)


def test_an_override_file_changes_only_what_it_names(tmp_path) -> None:
    f = tmp_path / "t.toml"
    f.write_text("[qa]\nmax_accuracy_drop = 0.1\n[kl]\nmax_mean_kl = 1\n")
    th = load_thresholds(f)
    assert th.qa.max_accuracy_drop == 0.1 and th.kl.max_mean_kl == 1.0
    assert th.qa.alpha == 0.05 and th.sources[-1] == str(f)


def test_the_data_dir_file_is_used_when_present(tmp_path) -> None:
    (tmp_path / "gate_thresholds.toml").write_text("[finetune]\nmin_target_gain = 0.05\n")
    assert load_thresholds(data_dir=tmp_path).finetune.min_target_gain == 0.05


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[qa]\nmax_acc_drop = 0.1\n", "unknown key qa.max_acc_drop"),
        ("[speed]\nx = 1\n", "unknown table"),
        ("[qa]\nalpha = 'low'\n", "must be a number"),
        ("[qa\n", "not valid TOML"),
    ],
)
def test_typos_are_errors(tmp_path, text, message) -> None:
    f = tmp_path / "t.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_thresholds(f)
    with pytest.raises(ConfigError, match="not found"):
        load_thresholds(tmp_path / "missing.toml")
