"""``nax search --strategy hyperband|asha|successive-halving|freeze-thaw`` on a simulated curve
table: the journal, exact resume from the directory alone, and one-line errors for bad input."""

from __future__ import annotations

import json
import re

import pytest
from test_search_support import EPOCHS, simulated_curve_csv

from nax import cli
from nax.search import journal as journal_lib


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    return simulated_curve_csv(tmp_path_factory.mktemp("t") / "sim.csv")


def _argv(curves, out, *extra, budget="60"):
    return [
        "search",
        "--dataset",
        "beta",
        "--evaluator",
        "table",
        "--table",
        str(curves),
        "--budget-epochs",
        budget,
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


def _strip(path):
    return journal_lib.strip_clock(journal_lib.read(path)[1])


def assert_resumes_exactly_after_pause(out, cut, nth: int) -> None:
    """A search killed right after its ``nth`` (0-based) paused job, with only its journal and
    the two fitted models left in ``cut``, resumes from that directory to the same journal."""
    lines = (out / "journal.jsonl").read_bytes().split(b"\n")
    keep = [i for i, line in enumerate(lines) if b'"event":"paused"' in line][nth]
    cut.mkdir()
    (cut / "journal.jsonl").write_bytes(b"\n".join(lines[: keep + 1]) + b"\n")
    for name in ("curve_prior.json", "characteristic_model.npz"):
        (cut / name).write_bytes((out / name).read_bytes())
    assert cli.main(["search", "--resume", str(cut), "--quiet"]) == 0
    resumed = [e for e in _strip(cut / "journal.jsonl") if e["event"] != "resume"]
    assert resumed == _strip(out / "journal.jsonl")


@pytest.mark.parametrize("strategy,batch", [("asha", "2"), ("successive-halving", "1")])
def test_multi_fidelity_search_and_exact_resume(curves, tmp_path, capsys, strategy, batch):
    out = tmp_path / "run"
    argv = _argv(curves, out, "--strategy", strategy, "--eta", "2", "--min-epochs", "2", "--batch", batch)
    assert cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    head, events = journal_lib.read(out / "journal.jsonl")
    assert head["config"]["eta"] == 2 and head["config"]["min_epochs"] == 2 and head["config"]["max_epochs"] == EPOCHS
    jobs = [e for e in events if e["event"] == "job"]
    results = [e for e in events if e["event"] in ("paused", "end", "failed")]
    assert len(jobs) == len(results) == summary["jobs"] and summary["epochs_spent"] <= 60
    assert {j["epochs"] for j in jobs} <= {2, 4, EPOCHS} and any(j["start"] > 0 for j in jobs)
    assert sum(r["cost_epochs"] for r in results) == summary["epochs_spent"]
    ends = [e for e in results if e["event"] == "end"]
    assert summary["best_accuracy"] == max(e["final"] for e in ends)
    assert "early stopping off" in summary["notes"][0]
    assert json.loads(capsys.readouterr().out.splitlines()[-2])["best_accuracy"] == summary["best_accuracy"]

    # cut after the fourth job's result and resume from the directory alone: the same journal
    lines = (out / "journal.jsonl").read_bytes().split(b"\n")
    keep = [i for i, line in enumerate(lines) if b'"event":"paused"' in line][3]
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "journal.jsonl").write_bytes(b"\n".join(lines[: keep + 1]) + b"\n")
    assert cli.main(["search", "--resume", str(cut), "--quiet"]) == 0
    resumed = [e for e in _strip(cut / "journal.jsonl") if e["event"] != "resume"]
    assert resumed == _strip(out / "journal.jsonl")


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--strategy", "hyperband", "--eta", "1"], "--eta must be a number > 1"),
        (["--strategy", "asha", "--eta", "0.5"], "--eta must be a number > 1"),
        (["--strategy", "hyperband", "--min-epochs", "5", "--max-epochs", "3"], r"--min-epochs \(5\) must not exceed"),
        (["--strategy", "asha", "--min-epochs", "20"], r"--min-epochs \(20\) exceeds the epochs of a full run \(8\)"),
        (["--strategy", "evolution", "--eta", "3"], "--eta: only for the strategies hyperband"),
        (["--strategy", "hyperband", "--max-epochs", "30"], "the table's curves have 8 epochs"),
        (["--strategy", "asha", "--ft-jobs", "rungs"], "--ft-jobs rungs: only for --strategy freeze-thaw"),
    ],
)
def test_bad_input_is_one_clear_line(curves, tmp_path, capsys, extra, message):
    assert cli.main(_argv(curves, tmp_path / "x", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("nax search: error:")
    assert re.search(message, err), err


def test_freeze_thaw_without_sources_is_one_clear_line(tmp_path, capsys):
    one = simulated_curve_csv(tmp_path / "one.csv", datasets=("beta",))
    assert cli.main(_argv(one, tmp_path / "x", "--strategy", "freeze-thaw")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "freeze-thaw needs a curve prior and a characteristic model" in err and "no transfer-from dataset" in err


@pytest.mark.slow
def test_freeze_thaw_search_with_both_transfers(curves, tmp_path, capsys):
    """Freeze-thaw fits the curve prior and the characteristic model on the other datasets,
    saves them beside the journal, and resumes from the directory alone exactly."""
    out = tmp_path / "ft"
    # each freeze-thaw decision predicts the paused runs with the curve model: a short search
    assert cli.main(_argv(curves, out, "--strategy", "freeze-thaw", budget="24")) == 0
    assert (out / "curve_prior.json").is_file() and (out / "characteristic_model.npz").is_file()
    summary = json.loads((out / "summary.json").read_text())
    head, events = journal_lib.read(out / "journal.jsonl")
    assert head["config"]["min_epochs"] == 2  # a quarter of the 8-epoch runs per job
    assert summary["epochs_spent"] <= 24 and summary["jobs"] > summary["runs"] >= 2
    assert summary["best_accuracy"] == max(e["final"] for e in events if e["event"] == "end")
    assert_resumes_exactly_after_pause(out, tmp_path / "cut", 2)


def test_freeze_thaw_jobs_on_the_rungs_reach_the_strategy(monkeypatch):
    """``--ft-jobs rungs``: the search's min epochs default to 1 (Hyperband's, not a quarter
    of a run) and freeze-thaw is built with jobs on the rungs of min epochs x eta^k."""
    import types

    from nax.search import config as config_lib
    from nax.search import fidelity, freeze_thaw

    seen = []
    monkeypatch.setattr(freeze_thaw, "from_models", lambda *a, **kw: seen.append(kw))
    table = types.SimpleNamespace(max_epochs=EPOCHS)  # an evaluator as resolve reads it
    for jobs, want in [("rungs", dict(jobs="rungs", min_epochs=1, eta=3)), ("delta", dict(delta=2))]:
        cfg = config_lib.SearchConfig("beta", strategy="freeze-thaw", evaluator="table", ft_jobs=jobs)
        cfg = config_lib.resolve(cfg, table, strict=False)
        fidelity.strategy(cfg, None, None, "curve", ["alpha"], lambda: None, lambda: None)
        assert {k: seen[-1][k] for k in want} == want and ("delta" in seen[-1]) == (jobs == "delta")
    with pytest.raises(ValueError, match="--ft-jobs rungs: only for --strategy freeze-thaw"):
        config_lib.SearchConfig("beta", strategy="asha", ft_jobs="rungs")
    with pytest.raises(ValueError, match="--ft-jobs must be delta or rungs"):
        config_lib.SearchConfig("beta", strategy="freeze-thaw", ft_jobs="halving")
