"""A `nax search` killed (SIGKILL) during its start-up fit or between runs resumes losing at
most the run in flight, and reuses the characteristic model it saved instead of refitting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from test_search_support import EPOCHS, simulated_curve_csv

from nax.search import journal as journal_lib
from nax.search.config import MODEL_FILE, SearchConfig, execute

CLI = "import sys; from nax import cli; sys.exit(cli.main(sys.argv[1:]))"
RUNS = 16


def _ends(path):
    return [e for e in journal_lib.read(path)[1] if e["event"] == "end"]


def _n_ends(path):
    """Finished runs in a journal being written (raw lines: it may be empty or torn)."""
    return path.read_bytes().count(b'"event":"end"') if path.exists() else 0


def _kill_when(argv, ready, timeout=240.0):
    """Start the search, SIGKILL it as soon as ``ready()``; True if it was killed then."""
    proc = subprocess.Popen([sys.executable, "-c", CLI, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            if ready():
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.005)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _comparable(path):
    return journal_lib.strip_clock(e for e in journal_lib.read(path)[1] if e["event"] != "resume")


@pytest.mark.slow
def test_kill_during_the_fit_and_between_runs_then_resume(tmp_path):
    csv = simulated_curve_csv(tmp_path / "sim.csv")
    cfg = SearchConfig(
        dataset="beta",
        strategy="transfer",
        early_stop=False,
        evaluator="table",
        tables=(str(csv),),
        budget_epochs=RUNS * EPOCHS,
    )
    reference = tmp_path / "reference"
    execute(cfg, reference, log=lambda s: None)
    want = _comparable(reference / "journal.jsonl")
    argv = [
        "search",
        "--dataset",
        "beta",
        "--strategy",
        "transfer",
        "--no-early-stop",
        "--evaluator",
        "table",
        "--table",
        str(csv),
        "--budget-epochs",
        str(RUNS * EPOCHS),
        "--quiet",
    ]

    # 1. killed while fitting the characteristic model: the header is there, the model is not
    out = tmp_path / "fit"
    journal = out / "journal.jsonl"
    assert _kill_when(argv + ["--out", str(out)], lambda: journal.exists() and journal.stat().st_size > 0)
    assert journal_lib.read(journal)[1] == [] and not (out / MODEL_FILE).exists()
    logs = []
    execute(None, out, resume=True, log=logs.append)
    assert any(l.startswith("fitting the characteristic model") for l in logs)
    assert _comparable(journal) == want

    # 2. killed between runs: the runs the journal finished are kept, the model is loaded
    out = tmp_path / "runs"
    journal = out / "journal.jsonl"
    assert _kill_when(argv + ["--out", str(out)], lambda: _n_ends(journal) >= 3)
    before = _ends(journal)
    assert 3 <= len(before) < RUNS and not (out / "summary.json").exists()
    started = [e["run"] for e in journal_lib.read(journal)[1] if e["event"] == "start"]
    assert len(started) - len(before) <= 1  # at most the run in flight is unfinished
    model_mtime = (out / MODEL_FILE).stat().st_mtime_ns
    logs = []
    summary = execute(None, out, resume=True, log=logs.append)
    assert f"resumed {len(before)} runs ({len(before) * EPOCHS} epochs) from the journal" in logs
    assert any(l.startswith("loaded the characteristic model on alpha, gamma (saved by") for l in logs)
    assert not any(l.startswith("fitting") for l in logs)
    assert (out / MODEL_FILE).stat().st_mtime_ns == model_mtime
    after = _ends(journal)
    assert journal_lib.strip_clock(after[: len(before)]) == journal_lib.strip_clock(before)
    assert _comparable(journal) == want and summary["runs"] == RUNS


def test_resume_loads_the_saved_curve_prior_instead_of_refitting(tmp_path, monkeypatch):
    from test_curves_calibration import hand_prior

    from nax import curves

    fits = []
    # a hand-made prior stands in for fitting one (minutes on two cores); saving and loading are real
    monkeypatch.setattr(curves, "fit_prior", lambda *a, **kw: fits.append(kw) or hand_prior())
    csv = simulated_curve_csv(tmp_path / "sim.csv")
    cfg = SearchConfig(dataset="beta", strategy="random", evaluator="table", tables=(str(csv),), budget_epochs=EPOCHS)
    execute(cfg, tmp_path / "run", log=lambda s: None)
    saved = tmp_path / "run" / "curve_prior.json"
    assert len(fits) == 1 and curves.CurvePrior.load(saved).to_dict() == hand_prior().to_dict()
    text, logs = saved.read_text(), []
    execute(None, tmp_path / "run", resume=True, log=logs.append)
    assert len(fits) == 1 and saved.read_text() == text
    assert any(l.startswith("loaded the curve prior on alpha, gamma") for l in logs)
