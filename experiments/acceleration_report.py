"""The acceleration experiment's report: aggregates over seeds and targets, markdown tables,
figures, and the JSON (with ``nax.provenance``, encoded by ``nax.jsonio``)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from acceleration_config import SUITES, VARIANTS, Config, RealConfig
from matplotlib.figure import Figure  # an explicit figure: no global backend set from library code

from nax import jsonio


# ---------------------------------------------------------------------------- aggregation
def _mse(x) -> tuple[float, float]:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def aggregate(rows: Sequence[dict]) -> list[dict]:
    """Per (suite, target, variant): means ± standard errors over seeds, and speed-ups both as
    the ratio of mean epochs and as the mean of per-seed ratios."""
    out = []
    keys = sorted({(r["suite"], r["target"]) for r in rows}, key=lambda k: ((*SUITES, "table", "real").index(k[0]), k))
    for suite, target in keys:
        sub = [r for r in rows if r["suite"] == suite and r["target"] == target]
        base = {r["seed"]: r for r in sub if r["variant"] == "baseline"}
        for v in VARIANTS:
            vr = sorted((r for r in sub if r["variant"] == v), key=lambda r: r["seed"])
            if not vr:
                continue
            e = [r["epochs_to_target"] for r in vr]
            s = [r["seconds_to_target"] for r in vr]
            be = [base[r["seed"]]["epochs_to_target"] for r in vr]
            bs = [base[r["seed"]]["seconds_to_target"] for r in vr]
            diff = [100 * (r["accuracy_at_budget"] - base[r["seed"]]["accuracy_at_budget"]) for r in vr]
            agg = {
                "suite": suite,
                "target": target,
                "variant": v,
                "seeds": len(vr),
                "pool": vr[0]["pool"],
                "budget_epochs": vr[0]["budget_epochs"],
                "cap_epochs": vr[0]["cap_epochs"],
                "reached": int(sum(r["reached"] for r in vr)),
            }
            agg["epochs_to_target"], agg["epochs_to_target_se"] = _mse(e)
            agg["seconds_to_target"], agg["seconds_to_target_se"] = _mse(s)
            agg["speedup_epochs_ratio_of_means"] = float(np.mean(be) / np.mean(e))
            agg["speedup_epochs_mean_ratio"], agg["speedup_epochs_mean_ratio_se"] = _mse(
                [r["speedup_epochs"] for r in vr]
            )
            agg["speedup_seconds_ratio_of_means"] = float(np.mean(bs) / np.mean(s))
            agg["speedup_seconds_mean_ratio"], _ = _mse([r["speedup_seconds"] for r in vr])
            agg["accuracy_at_budget"], agg["accuracy_at_budget_se"] = _mse([r["accuracy_at_budget"] for r in vr])
            agg["accuracy_diff_points"], agg["accuracy_diff_points_se"] = _mse(diff)
            agg["stopped_fraction"] = float(sum(r["runs_stopped"] for r in vr) / max(1, sum(r["runs"] for r in vr)))
            if all("trials" in r for r in vr):
                agg["trials"] = float(np.mean([r["trials"] for r in vr]))
                agg["full_runs"] = float(np.mean([r["full_runs"] for r in vr]))
            out.append(agg)
    return out


def versus_multifidelity(rows: Sequence[dict], variant: str = "freeze_thaw") -> list[dict]:
    """Per (suite, target): ``variant`` against the better of Hyperband and ASHA there (the
    one with fewer mean epochs to the target): the ratio of their mean epochs to target
    (> 1: ``variant`` sooner) and the mean per-seed difference of accuracy at B (points),
    both over the seeds ``variant`` ran; and per suite, the means over targets."""
    out = []
    for suite, target in sorted({(r["suite"], r["target"]) for r in rows if r["variant"] == variant}):
        sub = [r for r in rows if (r["suite"], r["target"]) == (suite, target)]
        mine = {r["seed"]: r for r in sub if r["variant"] == variant}
        seeds = sorted(mine)
        by = {
            m: {r["seed"]: r for r in sub if r["variant"] == m}
            for m in ("hyperband", "asha")
            if all(s in {r["seed"] for r in sub if r["variant"] == m} for s in seeds)
        }
        if not by:
            continue
        mean = lambda rs, k: float(np.mean([r[k] for r in rs]))
        epochs = {m: mean([by[m][s] for s in seeds], "epochs_to_target") for m in by}
        best = min(epochs, key=lambda m: (epochs[m], m))
        diff = [100 * (mine[s]["accuracy_at_budget"] - by[best][s]["accuracy_at_budget"]) for s in seeds]
        out.append(
            {
                "suite": suite,
                "target": target,
                "variant": variant,
                "seeds": len(seeds),
                "best_multifidelity": best,
                "best_multifidelity_epochs": epochs[best],
                "epochs": mean([mine[s] for s in seeds], "epochs_to_target"),
                "speedup_vs_best_multifidelity": epochs[best] / mean([mine[s] for s in seeds], "epochs_to_target"),
                "accuracy_diff_points_vs_best_multifidelity": float(np.mean(diff)),
            }
        )
    for suite in SUITES:
        a = [r for r in out if r["suite"] == suite and r["target"] != "overall"]
        if a:
            m = lambda k, a=a: float(np.mean([r[k] for r in a]))
            out.append(
                {
                    "suite": suite,
                    "target": "overall",
                    "variant": variant,
                    "targets": len(a),
                    "speedup_vs_best_multifidelity": m("speedup_vs_best_multifidelity"),
                    "accuracy_diff_points_vs_best_multifidelity": m("accuracy_diff_points_vs_best_multifidelity"),
                    "worst_speedup_vs_best_multifidelity": float(min(r["speedup_vs_best_multifidelity"] for r in a)),
                }
            )
    return out


def overall(agg: Sequence[dict]) -> list[dict]:
    """Per (suite, variant): the means over targets of the per-target figures."""
    out = []
    for suite in SUITES:
        for v in VARIANTS:
            a = [r for r in agg if r["suite"] == suite and r["variant"] == v]
            if not a:
                continue
            m = lambda k, a=a: float(np.mean([np.nan if r[k] is None else r[k] for r in a]))
            out.append(
                {
                    "suite": suite,
                    "target": "overall",
                    "variant": v,
                    "targets": len(a),
                    "speedup_epochs_ratio_of_means": m("speedup_epochs_ratio_of_means"),
                    "speedup_epochs_mean_ratio": m("speedup_epochs_mean_ratio"),
                    "speedup_seconds_ratio_of_means": m("speedup_seconds_ratio_of_means"),
                    "accuracy_diff_points": m("accuracy_diff_points"),
                    "worst_accuracy_diff_points": float(min(r["accuracy_diff_points"] for r in a)),
                    "reached_fraction": float(sum(r["reached"] for r in a) / sum(r["seeds"] for r in a)),
                }
            )
    return out


# ---------------------------------------------------------------------------- tables and figures
def _fmt(m, s, nd=1):
    if m is None or not np.isfinite(m):
        return "-"
    return f"{m:.{nd}f} ± {s:.{nd}f}" if s is not None and np.isfinite(s) else f"{m:.{nd}f}"


def _pct(x):
    return None if x is None else 100 * x


def versus_markdown(vs: Sequence[dict], who: str = "freeze-thaw's") -> str:
    """A variant (freeze-thaw unless ``who`` names another) against the better of Hyperband
    and ASHA, per target and per suite."""
    if not vs:
        return ""
    head = (
        f"| suite | target | better of HB/ASHA | its epochs to target | {who} | speed-up vs it | "
        "Δ acc. at B vs it (points) |\n|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in vs:
        if r["target"] == "overall":
            lines.append(
                f"| **{r['suite']}** | **mean of {r['targets']}** | | | | **{r['speedup_vs_best_multifidelity']:.2f}** "
                f"(worst {r['worst_speedup_vs_best_multifidelity']:.2f}) | "
                f"**{r['accuracy_diff_points_vs_best_multifidelity']:+.2f}** |"
            )
        else:
            lines.append(
                f"| {r['suite']} | {r['target']} | {r['best_multifidelity']} | {r['best_multifidelity_epochs']:.1f} | "
                f"{r['epochs']:.1f} | {r['speedup_vs_best_multifidelity']:.2f} | "
                f"{r['accuracy_diff_points_vs_best_multifidelity']:+.2f} |"
            )
    return head + "\n".join(lines) + "\n"


def target_markdown(agg: Sequence[dict], suite: str, target: str) -> str:
    a = [r for r in agg if r["suite"] == suite and r["target"] == target]
    unit = {"baker": "recorded curves", "lcbench": "configurations"}.get(suite, "cells")
    head = (
        f"### {suite}: {target} ({a[0]['pool']} {unit}, budget B = {a[0]['budget_epochs']:g} epochs, "
        f"cap {a[0]['cap_epochs']:g}, {a[0]['seeds']} seeds)\n\n"
        "| variant | reached | epochs to target | seconds to target | speed-up (ratio of means) | "
        "speed-up (mean of ratios) | acc. at B (%) | Δ acc. vs baseline (points) | runs stopped | "
        "trials / full runs |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['variant']} | {r['reached']}/{r['seeds']} | {_fmt(r['epochs_to_target'], r['epochs_to_target_se'])} | "
        f"{_fmt(r['seconds_to_target'], r['seconds_to_target_se'])} | {r['speedup_epochs_ratio_of_means']:.2f} | "
        f"{_fmt(r['speedup_epochs_mean_ratio'], r['speedup_epochs_mean_ratio_se'], 2)} | "
        f"{_fmt(_pct(r['accuracy_at_budget']), _pct(r['accuracy_at_budget_se']), 2)} | "
        f"{_fmt(r['accuracy_diff_points'], r['accuracy_diff_points_se'], 2)} | {100 * r['stopped_fraction']:.0f}% | "
        f"{_fmt(r.get('trials'), None)} / {_fmt(r.get('full_runs'), None)} |"
        for r in a
    ]
    return head + "\n".join(lines) + "\n"


def overall_markdown(ov: Sequence[dict]) -> str:
    head = (
        "| suite | variant | targets | speed-up epochs (ratio of means) | speed-up epochs (mean of ratios) | "
        "speed-up seconds (ratio of means) | Δ acc. at B (points, mean) | worst target Δ | reached |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    return (
        head
        + "\n".join(
            f"| {r['suite']} | {r['variant']} | {r['targets']} | {r['speedup_epochs_ratio_of_means']:.2f} | "
            f"{r['speedup_epochs_mean_ratio']:.2f} | {_fmt(r['speedup_seconds_ratio_of_means'], None, 2)} | "
            f"{r['accuracy_diff_points']:+.2f} | {r['worst_accuracy_diff_points']:+.2f} | {100 * r['reached_fraction']:.0f}% |"
            for r in ov
        )
        + "\n"
    )


def plot_target(curves_by_variant: dict, grid: np.ndarray, budget: float, title: str, path: Path) -> None:
    """Best accuracy against epochs spent, mean ± standard error over seeds per variant."""
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for v, c in curves_by_variant.items():
        c = 100 * c
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # grid points before any seed's first run
            m = np.nanmean(c, axis=0)
            n = np.sum(np.isfinite(c), axis=0)
            se = np.nanstd(c, axis=0, ddof=1) / np.sqrt(np.maximum(n, 1))
        ax.plot(grid, m, label=v)
        ax.fill_between(grid, m - se, m + se, alpha=0.2)
    ax.axvline(budget, color="k", ls=":", lw=0.8, label="budget B")
    ax.set_xlabel("epochs spent")
    ax.set_ylabel("best validation accuracy (%)")
    lo = np.nanpercentile(100 * np.concatenate([c.ravel() for c in curves_by_variant.values()]), 10)
    if np.isfinite(lo):
        ax.set_ylim(bottom=lo)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------------------- files
#: the variants compared with the better of Hyperband and ASHA, and their sections' titles
VERSUS = {
    "freeze_thaw": "Freeze-thaw",
    "freeze_thaw_rungs": "Freeze-thaw with jobs on the halving rungs (freeze_thaw_rungs)",
    "asha_selection": "ASHA with transferred proposals (asha_selection)",
    "asha_transfer": "ASHA with transferred proposals and promotions (asha_transfer)",
}


def write_outputs(out: Path, cfg: Config, rows, agg, ov, plots: dict, prov: dict) -> dict:
    """``<stem>.json`` and ``<stem>.md`` of a run of ``cfg`` (``plots``: (suite, target) -> PNG name)."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {"config": dataclasses.asdict(cfg), "command": cfg.command, "seeds": list(range(cfg.seeds)), **prov}
    extra = {f"{v}_vs_multifidelity": vs for v in VERSUS if (vs := versus_multifidelity(rows, v))}
    payload = jsonio.clean({**meta, "results": rows, "aggregate": agg, "overall": ov, **extra})
    (out / f"{cfg.stem}.json").write_text(jsonio.dumps(payload, indent=1) + "\n")
    md = [
        f"# Acceleration by transfer ({cfg.name})\n",
        f"Command: `{cfg.command}`; nax {meta['nax_version']}, "
        f"commit {meta['git_commit']}{' (uncommitted changes)' if meta['git_dirty'] else ''}.\n",
        "## Overall (means over targets)\n",
        overall_markdown(payload["overall"]),
    ]
    for v, title in VERSUS.items():
        if f"{v}_vs_multifidelity" in payload:
            who = "freeze-thaw's" if v.startswith("freeze_thaw") else f"{v}'s"
            vs = versus_markdown(payload[f"{v}_vs_multifidelity"], who)
            md += [f"\n## {title} vs the better of Hyperband and ASHA\n", vs]
    md += ["\n## Per target\n"]
    md += [target_markdown(payload["aggregate"], s, t) + f"\n![{s} {t}]({p})\n" for (s, t), p in plots.items()]
    (out / f"{cfg.stem}.md").write_text("\n".join(md))
    return payload


def write_real_outputs(out: Path, rc: RealConfig, train_config: dict, rows, agg, plots: dict, prov: dict) -> dict:
    """``acceleration_real.json`` and ``.md``: table replay and real training side by side."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {"config": {**dataclasses.asdict(rc), "train": train_config}, "command": rc.command, **prov}
    payload = jsonio.clean({**meta, "results": rows, "aggregate": agg})
    (out / "acceleration_real.json").write_text(jsonio.dumps(payload, indent=1) + "\n")
    md = [
        f"# Acceleration: table replay vs real training on {rc.target}\n",
        f"Command: `{rc.command}`; nax {meta['nax_version']}, commit {meta['git_commit']}.\n",
    ]
    md += [target_markdown(payload["aggregate"], s, t) + f"\n![{s} {t}]({p})\n" for (s, t), p in plots.items()]
    (out / "acceleration_real.md").write_text("\n".join(md))
    return payload
