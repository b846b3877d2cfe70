"""What a finished search leaves behind: ``summary.json``, ``curves.png``, ``progress.png``.

Accuracies in the summary are rounded to the resolution of the validation set they were
measured on (:func:`accuracy_decimals`); the journal keeps them as measured. Plots use
``matplotlib.figure.Figure`` directly (no pyplot state, no backend switch), so the library
sits beside any user's matplotlib set-up.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nax import jsonio
from nax.search import evaluators as ev_lib
from nax.search.loop import Budget, SearchOutcome

#: most decimals a table's accuracies are shown with
MAX_DECIMALS = 6
ACCURACY_KEYS = ("best_accuracy", "best_score")


def accuracy_decimals(evaluator) -> tuple[int | None, str]:
    """Decimals that resolve the validation set (steps of 1/n_val), and where n_val came from.

    ``ceil(log10(n_val))`` decimals keep every two accuracies k/n_val apart and drop the
    float32 noise (0.934, not 0.9340000152587891, for 467 of 500). A table does not record
    its validation set size: None, and the summary keeps the decimals the table is written
    with (:func:`written_decimals`)."""
    if isinstance(evaluator, ev_lib.TrainingEvaluator):
        if isinstance(evaluator.dataset, str) and evaluator._splits is None:
            from nax import data  # noqa: PLC0415  (its static sizes: no files are read)

            n = data.info(evaluator.dataset).split_sizes["validation"]
            n = min(n, evaluator.cfg.val_limit) if evaluator.cfg.val_limit else n
        else:
            n = len(evaluator.splits().val_labels)
        return max(1, math.ceil(math.log10(n))), f"validation set of {n} examples"
    return None, f"as the table writes them (at most {MAX_DECIMALS})"


def written_decimals(values) -> int:
    """The fewest decimals (at most ``MAX_DECIMALS``) that write every value exactly."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    for d in range(MAX_DECIMALS + 1):
        if np.all(np.abs(np.round(v, d) - v) < 1e-9):
            return d
    return MAX_DECIMALS


def write_outputs(
    outcome: SearchOutcome,
    out: str | Path,
    extra: dict | None = None,
    *,
    decimals: int | None = None,
    budget: Budget | None = None,
    value_name: str = "validation accuracy",
) -> dict:
    """``summary.json``, ``curves.png`` and ``progress.png`` in ``out``; returns the summary.

    ``decimals``: round the summary's accuracies so (None: as the table writes them);
    ``budget``: marked in progress.png; ``value_name``: what the runs' values are."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {**outcome.summary(), **(extra or {})}
    if decimals is None:
        decimals = written_decimals(r.result.final for r in outcome.runs)
    summary["accuracy_decimals"] = decimals
    summary.update({k: round(float(summary[k]), decimals) for k in ACCURACY_KEYS if summary.get(k) is not None})
    (out / "summary.json").write_text(jsonio.dumps(summary, indent=2) + "\n")
    plot_curves(outcome, out / "curves.png", decimals=decimals, value_name=value_name)
    plot_progress(outcome, out / "progress.png", budget=budget, decimals=decimals, value_name=value_name)
    return summary


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _window(values, best) -> tuple[float, float]:
    """The y-range that matters: from a little below the lower decile of the finals to the best.

    A few poor runs would otherwise squeeze every good one into a strip at the top."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if len(v) == 0:
        return 0.0, 1.0
    top = float(max(v.max(), best if best is not None else -np.inf))
    low = float(np.quantile(v, 0.1)) if len(v) >= 5 else float(v.min())
    span = max(top - low, 0.01)
    lo, hi = low - 0.35 * span, top + 0.12 * span
    if 0 <= v.min() and top <= 1:  # accuracies: stay within [0, 1]
        lo, hi = max(0.0, lo), min(1.0, hi)
    return lo, hi


def _best_label(best, decimals: int) -> str:
    return f"best: run {best.run}, {best.result.final:.{decimals}f}"


def plot_curves(
    outcome: SearchOutcome, path: str | Path, *, decimals: int = 4, value_name: str = "validation accuracy"
) -> None:
    """Completed runs zoomed on the range that matters, the best one highlighted and named;
    beside them the stopped runs with the final accuracy the transferred curve model predicted."""
    runs = outcome.runs
    best = outcome.best
    done = [r for r in runs if r.result.status == "completed"]
    stopped = [r for r in runs if r.result.status == "stopped" and r.result.curve]
    has_curves = any(r.result.curve for r in runs)
    fig = _figure((11, 4.6) if stopped else (7, 4.6))
    axes = fig.subplots(1, 2 if stopped else 1, squeeze=False)[0]
    ax = axes[0]
    finals = [r.result.final for r in done]
    lo, hi = _window(finals, None)
    cmap = _cmap("viridis")
    rank = {r.run: i / max(1, len(done) - 1) for i, r in enumerate(sorted(done, key=lambda r: r.result.final))}
    T = outcome.max_epochs
    if has_curves:
        for r in done:
            if r is not best and r.result.curve:
                ax.plot(
                    np.arange(1, len(r.result.curve) + 1), r.result.curve, color=cmap(rank[r.run]), lw=0.9, alpha=0.8
                )
        ax.set_xlabel("epoch")
        ax.set_xlim(1, T)
    else:  # an architecture table: final accuracies only
        ax.scatter([r.run for r in done], finals, c=[cmap(rank[r.run]) for r in done], s=14)
        ax.set_xlabel("run")
    if best is not None:
        xs = np.arange(1, len(best.result.curve) + 1) if has_curves else [best.run]
        ys = best.result.curve if has_curves else [best.result.final]
        ax.plot(
            xs,
            ys,
            color="crimson",
            lw=2.4,
            marker=None if has_curves else "*",
            ms=12,
            zorder=5,
            label=_best_label(best, decimals),
        )
        ax.legend(loc="lower right", fontsize=8)
    below = sum(f < lo for f in finals)
    ax.set_ylim(lo, hi)
    ax.set_ylabel(value_name)
    ax.set_title(
        f"{len(done)} completed runs (colour: final accuracy rank)"
        + (f"; {below} end below the axis" if below else ""),
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    if stopped:
        _plot_stopped(axes[1], stopped, best, T, decimals)
    fig.suptitle(
        f"{outcome.dataset}: {len(runs)} runs"
        + ("" if has_curves else " (final accuracies only)")
        + ("" if best is None else "\nbest architecture: " + _wrap(best.result.arch, 60 if stopped else 45)),
        fontsize=9,
    )
    fig.savefig(path, dpi=150)


def _wrap(arch: str, width: int) -> str:
    """A cell string on lines of at most ``width`` characters, broken between its stages."""
    lines, line = [], ""
    for part in arch.split("+"):
        piece = part if not line else "+" + part
        if line and len(line) + len(piece) > width:
            lines.append(line + "+")
            line = part
        else:
            line += piece
    return "\n".join(lines + [line])


def _plot_stopped(ax, stopped, best, T: int, decimals: int) -> None:
    for r in stopped:
        c = r.result.curve
        t = np.arange(1, len(c) + 1)
        ax.plot(t, c, color="tab:red", lw=0.9, alpha=0.7)
        ax.plot(t[-1], c[-1], "x", color="tab:red", ms=5)
        if r.result.predicted_final is not None:
            ax.plot([t[-1], T], [c[-1], r.result.predicted_final], ":", color="tab:red", lw=0.8, alpha=0.6)
            ax.plot(T, r.result.predicted_final, "o", mfc="white", color="tab:red", ms=4)
    if best is not None:
        ax.axhline(
            best.result.final, color="crimson", lw=1.2, ls="--", label=f"best final {best.result.final:.{decimals}f}"
        )
    ax.plot([], [], color="tab:red", marker="x", lw=0.9, label="observed until stopped")
    ax.plot([], [], ":o", color="tab:red", mfc="white", lw=0.8, label="predicted final (transferred curve model)")
    ax.set_xlim(1, T + 0.5)
    ax.set_xlabel("epoch")
    ax.set_title(f"{len(stopped)} run{'s' if len(stopped) != 1 else ''} stopped early", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)


def _cmap(name):
    from matplotlib import colormaps

    return colormaps[name]


def plot_progress(
    outcome: SearchOutcome,
    path: str | Path,
    *,
    budget: Budget | None = None,
    decimals: int = 4,
    value_name: str = "validation accuracy",
) -> None:
    """Best final accuracy so far against the budget spent (epochs, or minutes for a time
    budget), every run's result, and the budget marked."""
    minutes = budget is not None and budget.epochs is None
    spent, xs, ys, best = 0.0, [0.0], [None], None
    done, stopped, predicted = [], [], []
    for r in outcome.runs:
        spent += r.result.cost_s / 60 if minutes else r.result.cost_epochs
        if r.result.status == "completed" and r.result.final is not None:
            done.append((spent, r.result.final))
            best = r.result.final if best is None else max(best, r.result.final)
        elif r.result.status == "stopped" and r.result.curve:
            stopped.append((spent, r.result.curve[-1]))
            if r.result.predicted_final is not None:
                predicted.append((spent, r.result.predicted_final))
        xs.append(spent)
        ys.append(best)
    fig = _figure((7, 4.4))
    ax = fig.subplots()
    if done:
        ax.plot(*zip(*done), ".", color="tab:blue", ms=7, alpha=0.7, label="completed run (final accuracy)")
    lo, hi = _window([y for _, y in done], best)
    if predicted:  # the transferred predictions stay in view
        lo = min(lo, min(y for _, y in predicted) - 0.08 * (hi - lo))
    shown = [(x, y) for x, y in stopped if y >= lo]
    under = [(x, lo) for x, y in stopped if y < lo]  # drawn on the lower edge, pointing down
    if shown:
        ax.plot(*zip(*shown), "x", color="tab:red", alpha=0.7, label="stopped run (last accuracy)")
    if under:
        ax.plot(
            *zip(*under),
            "v",
            color="tab:red",
            alpha=0.7,
            clip_on=False,
            label=f"stopped run, last accuracy below the axis ({len(under)})",
        )
    if predicted:
        ax.plot(
            *zip(*predicted), "o", mfc="none", color="tab:red", ms=4, alpha=0.6, label="stopped run (predicted final)"
        )
    steps = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if steps:
        sx, sy = zip(*steps)
        ax.step(
            list(sx) + [spent],
            list(sy) + [sy[-1]],
            where="post",
            color="k",
            lw=1.6,
            label=f"best so far ({sy[-1]:.{decimals}f})",
        )
    if budget is not None:
        limit = budget.minutes if minutes else budget.epochs
        ax.axvline(limit, color="0.4", ls="--", lw=1.2)
        ax.annotate(
            f"budget {limit:g} {'min' if minutes else 'epochs'}",
            (limit, 1),
            xycoords=("data", "axes fraction"),
            xytext=(-4, -4),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize=8,
            color="0.3",
        )
        ax.set_xlim(0, max(limit, spent) * 1.03)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("training minutes charged" if minutes else "epochs spent")
    ax.set_ylabel(value_name)
    ax.set_title(f"{outcome.dataset}: search progress", fontsize=10)
    ax.grid(alpha=0.3)
    if done or stopped:
        ax.legend(fontsize=8, loc="best")
    fig.savefig(path, dpi=150)
