"""The family x cutoff tables of benchmarks/NOTES.md section 6 and the issue-13 targets,
from the JSONs of ``nax curves benchmark --family`` (rows carry ``protocol`` and ``family``).

``python -m nax.curves.bench.matrix A.json [B.json ...]`` prints them (markdown). Means are
over the target datasets of a family; the lowest MAE of a row is bold, whichever method
it is (a baseline's win as visible as the model's).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

METHODS = ("last_value", "pow3", "mmf", "svr", "no_transfer", "transfer_full", "transfer", "transfer_mix")
#: the reference of the issue's MAE target: transfer <= min of these + TOLERANCE
REFERENCE = ("no_transfer", "last_value", "svr", "pow3")
TOLERANCE = 0.002
COVERAGE = (0.85, 0.95)


def load(paths) -> list[dict]:
    rows = []
    for path in paths:
        rows += json.loads(Path(path).read_text())["results"]
    return rows


def _cells(rows):
    """(protocol, family, cutoff) -> method -> rows."""
    out: dict = {}
    for r in rows:
        out.setdefault((r["protocol"], r["family"], r["cutoff"]), {}).setdefault(r["method"], []).append(r)
    return out


def _mean(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def _cell(means, m, best) -> str:
    if m not in means:
        return ""
    return f"**{means[m]:.4f}**" if means[m] == best else f"{means[m]:.4f}"


def mae_table(rows, protocol: str) -> tuple[str, list[dict]]:
    """Markdown MAE table (family, cutoff x methods) and the target check of each row."""
    cells = _cells([r for r in rows if r["protocol"] == protocol])
    methods = [m for m in METHODS if any(m in c for c in cells.values())]
    head = ["family (targets)", "cutoff", *methods, "best reference", "transfer − (best reference + 0.002)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    checks = []
    for (_, family, cutoff), by in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        means = {m: _mean(by[m], "mae") for m in methods if m in by}
        best = min(means.values())
        ref = {m: means[m] for m in REFERENCE if m in means}
        ref_m = min(ref, key=ref.get)
        margin = means.get("transfer", np.nan) - (ref[ref_m] + TOLERANCE)
        n = len({r["dataset"] for r in by.get("last_value", [])})
        met = "met" if margin <= 0 else "missed"
        lines.append(
            f"| {family} ({n}) | {cutoff:.0%} | "
            + " | ".join(_cell(means, m, best) for m in methods)
            + f" | {ref_m} {ref[ref_m]:.4f} | {margin:+.4f} ({met}) |"
        )
        checks.append({"family": family, "cutoff": cutoff, "margin": float(margin), "means": means})
    return "\n".join(lines), checks


def calibration_table(rows, protocol: str) -> str:
    """Mean 90% coverage and LPD of no_transfer / transfer_full / transfer per family, cutoff
    (and ``transfer_unrecalibrated``, transfer before its spread was recalibrated, and
    ``transfer_mix`` (``_unrecalibrated``), the mixture of strengths, where a JSON has them)."""
    cells = _cells([r for r in rows if r["protocol"] == protocol])
    methods = ("no_transfer", "transfer_full", "transfer_unrecalibrated", "transfer", "transfer_mix_unrecalibrated",
               "transfer_mix")  # fmt: skip
    methods = [m for m in methods if any(m in c for c in cells.values())]
    head = ["family", "cutoff", *(f"{m} cov90 / LPD" for m in methods), "transfer cov90 in [0.85, 0.95]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (_, family, cutoff), by in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        vals = [f"{_mean(by[m], 'cov90'):.2f} / {_mean(by[m], 'lpd'):.2f}" if m in by else "" for m in methods]
        cov = _mean(by.get("transfer", []), "cov90")
        ok = "" if cov is None else ("yes" if COVERAGE[0] <= cov <= COVERAGE[1] else "no")
        lines.append(f"| {family} | {cutoff:.0%} | " + " | ".join(vals) + f" | {ok} |")
    return "\n".join(lines)


def lpd_share(rows, protocol: str, *, max_cutoff=0.2, method: str = "transfer") -> dict:
    """Share of (dataset, cutoff <= max_cutoff) where ``method``'s LPD >= no_transfer's, per family."""
    by = {(r["family"], r["dataset"], r["cutoff"], r["method"]): r["lpd"] for r in rows if r["protocol"] == protocol}
    out: dict = {}
    for (family, dataset, cutoff, m), lpd in by.items():
        if m != method or cutoff > max_cutoff + 1e-9:
            continue
        base = by.get((family, dataset, cutoff, "no_transfer"))
        if lpd is None or base is None:
            continue
        won, total = out.get(family, (0, 0))
        out[family] = (won + (lpd >= base), total + 1)
    return out


def coverage_means(rows, protocol: str, method: str = "transfer") -> dict:
    """Family -> mean over cutoffs of the mean 90 % coverage of ``method`` (the issue's
    per-family coverage target)."""
    cells = _cells([r for r in rows if r["protocol"] == protocol])
    out: dict = {}
    for (_, family, _), by in cells.items():
        cov = _mean(by.get(method, []), "cov90")
        if cov is not None:
            out.setdefault(family, []).append(cov)
    return {f: float(np.mean(v)) for f, v in sorted(out.items())}


def strength_counts(rows, protocol: str) -> dict:
    """(family, cutoff) -> Counter of the strength chosen for ``transfer`` (and the rule)."""
    out: dict = {}
    for r in rows:
        if r["protocol"] == protocol and r["method"] == "transfer" and r.get("strength") is not None:
            key = (r["family"], r["cutoff"])
            out.setdefault(key, Counter())[f"{r['strength']} ({r.get('strength_rule')})"] += 1
    return out


def seconds(rows, protocol: str) -> dict:
    """Mean seconds per curve of each model method per family (compile included)."""
    out: dict = {}
    for r in rows:
        if r["protocol"] == protocol and r["method"] in ("no_transfer", "transfer", "transfer_full", "transfer_mix"):
            out.setdefault((r["family"], r["method"]), []).append(r["sec_per_curve"])
    return {k: float(np.mean(v)) for k, v in out.items()}


BASELINES = ("last_value", "pow3", "mmf", "svr")


def readme_table(rows) -> str:
    """The README's curve-families table: per (family, protocol) and cutoff, MAE of
    ``transfer`` / ``no_transfer`` / the best baseline (named); the lowest of the three bold."""
    cells = _cells(rows)
    cutoffs = sorted({c for _, _, c in cells})
    keys = sorted({(f, p) for p, f, _ in cells}, key=lambda k: (k[0], k[1] != "cross-family"))
    head = ["target family (protocol)", *(f"{c:.0%}" for c in cutoffs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for family, protocol in keys:
        out = []
        for c in cutoffs:
            by = cells.get((protocol, family, c))
            if not by or "transfer" not in by:
                out.append("–")
                continue
            base = {m: _mean(by[m], "mae") for m in BASELINES if m in by}
            best = min(base, key=base.get)
            vals = [_mean(by["transfer"], "mae"), _mean(by["no_transfer"], "mae"), base[best]]
            low = min(vals)
            txt = [f"**{v:.3f}**" if v == low else f"{v:.3f}" for v in vals]
            out.append(f"{txt[0]} / {txt[1]} / {txt[2]} ({best})")
        n = len({r["dataset"] for r in rows if r["family"] == family and r["protocol"] == protocol})
        lines.append(f"| {family} ({protocol}, {n}) | " + " | ".join(out) + " |")
    return "\n".join(lines)


def main(paths) -> None:
    rows = load(paths)
    print(f"### README table\n\n{readme_table(rows)}\n")
    for protocol in dict.fromkeys(r["protocol"] for r in rows):
        table, checks = mae_table(rows, protocol)
        print(f"### {protocol}: MAE of the final value (mean over target datasets)\n\n{table}\n")
        met = sum(c["margin"] <= 0 for c in checks)
        print(f"transfer within best reference + 0.002: {met}/{len(checks)} (family, cutoff) cells\n")
        fams = sorted({c["family"] for c in checks})
        for m in ("transfer", "no_transfer", "transfer_full", "transfer_mix"):
            if not any(m in c["means"] for c in checks):
                continue
            avg = [np.mean([c["means"][m] for c in checks if c["family"] == f and m in c["means"]]) for f in fams]
            print(
                f"mean over families of {m}: {np.mean(avg):.4f} ({', '.join(f'{f} {a:.4f}' for f, a in zip(fams, avg))})"
            )
        print(f"\n{calibration_table(rows, protocol)}\n")
        share = lpd_share(rows, protocol)
        won, total = sum(w for w, _ in share.values()), sum(t for _, t in share.values())
        detail = ", ".join(f"{f} {w}/{t}" for f, (w, t) in sorted(share.items()))
        print(f"LPD(transfer) >= LPD(no_transfer) on {won}/{total} (dataset, cutoff <= 20 %): {detail}")
        raw = lpd_share(rows, protocol, method="transfer_unrecalibrated")
        if raw:
            won, total = sum(w for w, _ in raw.values()), sum(t for _, t in raw.values())
            print(f"(before the spread was recalibrated: {won}/{total})")
        mix = lpd_share(rows, protocol, method="transfer_mix")
        if mix:
            won, total = sum(w for w, _ in mix.values()), sum(t for _, t in mix.values())
            print(f"LPD(transfer_mix) >= LPD(no_transfer) on {won}/{total}")
        for m in ("transfer", "transfer_unrecalibrated", "transfer_mix", "transfer_mix_unrecalibrated"):
            cov = coverage_means(rows, protocol, m)
            if cov:
                inside = sum(COVERAGE[0] <= c <= COVERAGE[1] for c in cov.values())
                detail = ", ".join(f"{f} {c:.2f}" for f, c in cov.items())
                print(f"mean 90 % coverage of {m} per family: {detail} ({inside}/{len(cov)} in [0.85, 0.95])")
        print()
        for (family, cutoff), counts in sorted(strength_counts(rows, protocol).items()):
            print(f"- strength {family} {cutoff:.0%}: {dict(counts)}")
        print()
        for (family, method), s in sorted(seconds(rows, protocol).items()):
            print(f"- s/curve {family} {method}: {s:.3f}")
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
