"""``nax search --strategy asha --asha-transfer selection|both``: ASHA with the characteristic
model's proposals and the curve prior's ranking of promotions, its one-line errors, and an
exact resume from the directory alone."""

from __future__ import annotations

import json

import pytest
from test_search_mf_cli import _argv, assert_resumes_exactly_after_pause
from test_search_support import simulated_curve_csv

from nax import cli
from nax.search import config as config_lib
from nax.search import journal as journal_lib


def test_asha_transfer_options_are_checked_in_one_line():
    with pytest.raises(ValueError, match="--asha-transfer selection: only for --strategy asha"):
        config_lib.SearchConfig("beta", strategy="hyperband", asha_transfer="selection")
    with pytest.raises(ValueError, match="--asha-transfer must be none, selection or both"):
        config_lib.SearchConfig("beta", strategy="asha", asha_transfer="curves")
    assert config_lib.SearchConfig("beta", strategy="asha").asha_transfer == "none"  # the paper's ASHA


def test_asha_transfer_without_sources_is_one_clear_line(tmp_path, capsys):
    one = simulated_curve_csv(tmp_path / "one.csv", datasets=("beta",))
    assert cli.main(_argv(one, tmp_path / "x", "--strategy", "asha", "--asha-transfer", "both")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--asha-transfer both needs a curve prior and a characteristic model" in err and "no transfer-from" in err


@pytest.mark.slow
def test_asha_with_both_transfers_searches_and_resumes_exactly(tmp_path):
    curves = simulated_curve_csv(tmp_path / "sim.csv")
    out = tmp_path / "run"
    assert cli.main(_argv(curves, out, "--strategy", "asha", "--asha-transfer", "both", budget="40")) == 0
    assert (out / "curve_prior.json").is_file() and (out / "characteristic_model.npz").is_file()
    summary = json.loads((out / "summary.json").read_text())
    head, events = journal_lib.read(out / "journal.jsonl")
    assert head["config"]["asha_transfer"] == "both" and summary["asha_transfer"] == "both"
    assert summary["epochs_spent"] <= 40 and summary["jobs"] > summary["runs"] >= 2
    assert_resumes_exactly_after_pause(out, tmp_path / "cut", 3)
