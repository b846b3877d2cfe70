"""What a finished search leaves behind: ``summary.json``, ``curves.png``, ``progress.png``.

Plots use ``matplotlib.figure.Figure`` directly (no pyplot global state, no backend
switch), so the library can be imported next to any user's matplotlib setup.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nax.search import journal as journal_lib
from nax.search.loop import SearchOutcome


def write_outputs(outcome: SearchOutcome, out: str | Path, extra: dict | None = None) -> dict:
    """``summary.json``, ``curves.png`` and ``progress.png`` in ``out``; returns the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {**outcome.summary(), **(extra or {})}
    (out / "summary.json").write_text(json.dumps(journal_lib._clean(summary), indent=2) + "\n")
    plot_curves(outcome, out / "curves.png")
    plot_progress(outcome, out / "progress.png")
    return summary


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def plot_curves(outcome: SearchOutcome, path: str | Path) -> None:
    """Every learning curve; stopped runs in red, ending in an x, with their predicted final value."""
    fig = _figure((7, 4.5))
    ax = fig.subplots()
    has_curves = any(r.result.curve for r in outcome.runs)
    for r in outcome.runs:
        res = r.result
        if res.curve:
            t = np.arange(1, len(res.curve) + 1)
            if res.status == "stopped":
                ax.plot(t, res.curve, color="tab:red", alpha=0.5, lw=0.8)
                ax.plot(t[-1], res.curve[-1], "x", color="tab:red", ms=4)
                if res.predicted_final is not None:
                    ax.plot(outcome.max_epochs, res.predicted_final, "o", mfc="none", color="tab:red", ms=3, alpha=0.5)
            else:
                ax.plot(t, res.curve, color="tab:blue" if res.status == "completed" else "k", alpha=0.5, lw=0.8)
        elif res.final is not None:
            ax.plot(outcome.max_epochs, res.final, ".", color="tab:blue", alpha=0.4)
    ax.plot([], [], color="tab:blue", label="completed")
    ax.plot([], [], color="tab:red", marker="x", label="stopped (o: predicted final)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{outcome.dataset}: {len(outcome.runs)} runs" + ("" if has_curves else " (final accuracies only)"))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_progress(outcome: SearchOutcome, path: str | Path) -> None:
    """Best final accuracy of a completed run against epochs spent."""
    xs, ys, spent, best = [], [], 0, None
    done, stopped = [], []  # (epochs spent when the run ended, its final / last value)
    for r in outcome.runs:
        spent += r.result.cost_epochs
        if r.result.status == "completed" and r.result.final is not None:
            done.append((spent, r.result.final))
            best = r.result.final if best is None else max(best, r.result.final)
        elif r.result.status == "stopped" and r.result.curve:
            stopped.append((spent, r.result.curve[-1]))
        if best is not None:
            xs.append(spent)
            ys.append(best)
    fig = _figure((6, 4))
    ax = fig.subplots()
    # every run, not only the best so far: a flat best line alone hides what the search tried
    if done:
        ax.plot(*zip(*done), ".", color="tab:blue", alpha=0.5, label="run (final accuracy)")
    if stopped:
        ax.plot(*zip(*stopped), "x", color="tab:red", alpha=0.6, label="stopped run (last accuracy)")
    ax.step(xs, ys, where="post", color="k", label="best so far")
    if done or stopped:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("epochs spent")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{outcome.dataset}: search progress")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
