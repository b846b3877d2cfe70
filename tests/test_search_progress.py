"""What `nax search` records and shows: the header's real budget, rounding, progress, resume."""

from __future__ import annotations

import io
import json
import warnings

import jax
import numpy as np
import pytest
from test_search_support import EPOCHS, margin_rule, simulated_curve_csv

from nax import cli, tables
from nax.search import journal as journal_lib
from nax.search import loop, progress, report, strategies
from nax.search.config import SearchConfig, execute
from nax.search.evaluators import CurveTableEvaluator, RunResult, TrainingEvaluator


@pytest.fixture(scope="module")
def curve_csv(tmp_path_factory):
    return simulated_curve_csv(tmp_path_factory.mktemp("tables") / "sim.csv")


def _cfg(csv, **kw):
    return SearchConfig(
        **{
            "dataset": "beta",
            "strategy": "random",
            "evaluator": "table",
            "tables": (str(csv),),
            "early_stop": False,
            **kw,
        }
    )


def test_header_records_the_budget_and_epochs_a_run_trains(curve_csv, tmp_path):
    # no budget given: 20 full runs of the table's 8 epochs, counted in epochs
    execute(_cfg(curve_csv, budget_epochs=None), tmp_path / "a", log=lambda s: None)
    head, _ = journal_lib.read(tmp_path / "a" / "journal.jsonl")
    assert head["config"]["budget_epochs"] == 20 * EPOCHS and head["config"]["epochs_per_run"] == EPOCHS
    # a time budget stays a time budget
    execute(_cfg(curve_csv, budget_minutes=1.0), tmp_path / "b", log=lambda s: None)
    head, _ = journal_lib.read(tmp_path / "b" / "journal.jsonl")
    assert head["config"]["budget_epochs"] is None and head["config"]["budget_minutes"] == 1.0
    with pytest.raises(
        ValueError, match="--epochs-per-run is for an architecture table; a run of this search trains 8 epochs, not 200"
    ):
        execute(_cfg(curve_csv, epochs_per_run=200), tmp_path / "c", log=lambda s: None)


def test_accuracies_are_rounded_to_the_validation_resolution(tmp_path):
    # mnist5k validates on 500 examples: steps of 0.002, three decimals; no data is read for it
    assert report.accuracy_decimals(TrainingEvaluator("mnist5k"))[0] == 3
    assert report.accuracy_decimals(TrainingEvaluator("fashion_mnist"))[0] == 4  # 5000
    assert report.written_decimals([0.90096, 0.5, None]) == 5 and report.written_decimals([0.25]) == 2
    # 467/500 as float32, the way training reports it
    acc = float(np.float32(467 / 500))
    assert acc != 0.934
    runs = [loop.Run(0, 0, 0, np.zeros(6, int), RunResult("a", "completed", (0.5, acc), acc, cost_epochs=2))]
    summary = report.write_outputs(loop.SearchOutcome(runs, 2, 0.0, 2, "mnist5k"), tmp_path, decimals=3)
    assert summary["best_accuracy"] == 0.934
    assert json.loads((tmp_path / "summary.json").read_text())["best_accuracy"] == 0.934


def test_resume_says_one_line_and_shows_only_new_runs(curve_csv, tmp_path):
    cfg = _cfg(curve_csv, budget_epochs=6 * EPOCHS)
    first = []
    execute(cfg, tmp_path, log=first.append)
    lines = [l for l in first if l.startswith("run ")]
    assert len(lines) == 6 and f"| {6 * EPOCHS}/{6 * EPOCHS} epochs (100%)" in lines[-1]
    assert all("| best 0." in l and ", eta " in l for l in lines)
    # keep runs 0-2 (their start..end lines), drop the rest
    text = (tmp_path / "journal.jsonl").read_text().splitlines(keepends=True)
    end2 = next(i for i, l in enumerate(text) if '"event":"end","run":2' in l)
    (tmp_path / "journal.jsonl").write_text("".join(text[: end2 + 1]))
    again = []
    summary = execute(None, tmp_path, resume=True, log=again.append)
    assert again.count(f"resumed 3 runs ({3 * EPOCHS} epochs) from the journal") == 1
    new = [l for l in again if l.startswith("run ")]
    # the same runs as before the cut (their ETAs differ: the clock)
    assert [l.split(", eta")[0] for l in new] == [l.split(", eta")[0] for l in lines[3:6]]
    assert summary["runs"] == 6


def test_a_torn_journal_warns_once_through_the_cli(curve_csv, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "search",
        "--dataset",
        "beta",
        "--strategy",
        "random",
        "--no-early-stop",
        "--evaluator",
        "table",
        "--table",
        str(curve_csv),
        "--budget-epochs",
        str(3 * EPOCHS),
        "--out",
        str(out),
        "--quiet",
    ]
    assert cli.main(argv) == 0
    with open(out / "journal.jsonl", "ab") as fh:
        fh.write(b'{"event":"start","ru')
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert cli.main(["search", "--resume", str(out), "--quiet"]) == 0
    assert sum(issubclass(w.category, journal_lib.JournalWarning) for w in seen) == 1
    assert "resumed 3 runs" in capsys.readouterr().out


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_bar_counts_epochs_and_watching_changes_no_result(curve_csv):
    ev = CurveTableEvaluator(tables.load_curves(curve_csv), "beta")
    budget = loop.Budget(epochs=12 * EPOCHS)

    def search(evaluator, on_run=None):
        strat = strategies.random(ev.space, candidates=ev.candidates())
        out = loop.run_search(strat, evaluator, budget, jax.random.key(5), stop_rule=margin_rule(), on_run=on_run)
        return [(r.run, r.result.arch, r.result.status, r.result.curve, r.result.predicted_final) for r in out.runs]

    term, lines = _Terminal(), []
    show = progress.Progress(lines.append, file=term, decimals=3)
    assert show.live
    show.start(budget, ev.max_epochs)
    watched = search(show.watch(ev), show.on_run)
    show.close()
    assert watched == search(ev)  # the same runs, stops and predictions
    screen = term.getvalue()
    assert "search:" in screen and f"/{12 * EPOCHS} epoch" in screen and f"epoch 3/{EPOCHS}" in screen
    assert "best 0." in screen and len(lines) == len(watched)
    quiet = progress.Progress(lines.append, file=_Terminal(), quiet=True)
    assert not quiet.live and not progress.Progress(lines.append, file=io.StringIO()).live


def _loss_table(path):
    """An architecture table of losses (lower is better, some negative): per dataset the loss
    falls with the number of 3x3 convolutions, so the sources say which cells are good."""
    space = __import__("nax").space.nb201
    encs = space.enumerate()[::97][:60]
    rng = np.random.default_rng(0)
    rows = ["arch,dataset,score"]
    for d in ("alpha", "beta", "gamma"):
        for e in encs:
            rows.append(f"{space.to_string(e)},{d},{0.5 - 0.3 * (e == 3).sum() + rng.normal(0, 0.05):.4f}")
    path.write_text("\n".join(rows) + "\n")
    return path, {r.split(",")[0]: float(r.split(",")[2]) for r in rows[1:] if ",beta," in r}


@pytest.mark.slow  # ~25 s: fits the characteristic model
def test_lower_is_better_scores_are_minimised_and_transfer_ranks_them_reversed(tmp_path, capsys):
    csv, beta = _loss_table(tmp_path / "loss.csv")
    argv = [
        "search",
        "--dataset",
        "beta",
        "--evaluator",
        "table",
        "--table",
        str(csv),
        "--lower-is-better",
        "--epochs-per-run",
        "10",
        "--quiet",
    ]
    # random over every cell: the best is the lowest loss, reported in the table's units
    assert (
        cli.main(argv + ["--strategy", "random", "--budget-epochs", str(10 * len(beta)), "--out", str(tmp_path / "r")])
        == 0
    )
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["runs"] == len(beta) and summary["lower_is_better"] is True
    assert summary["best_score"] == min(beta.values()) and summary["best_arch"] == min(beta, key=beta.get)
    assert summary["best_accuracy"] is None
    # transfer: the first cell is one the sources' losses rank well (reversed ranks), within
    # the best fifth of beta's cells
    assert cli.main(argv + ["--strategy", "transfer", "--budget-epochs", "30", "--out", str(tmp_path / "t")]) == 0
    _, events = journal_lib.read(tmp_path / "t" / "journal.jsonl")
    first = next(e["arch"] for e in events if e["event"] == "end")
    assert sorted(beta.values()).index(beta[first]) < len(beta) / 5
    # and a curve table has no scores to reverse
    assert (
        cli.main(
            [
                "search",
                "--dataset",
                "beta",
                "--evaluator",
                "table",
                "--strategy",
                "random",
                "--table",
                str(simulated_curve_csv(tmp_path / "c.csv")),
                "--lower-is-better",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 2
    )
    assert "--lower-is-better is for an architecture table" in capsys.readouterr().err
