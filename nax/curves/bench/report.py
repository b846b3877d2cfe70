"""The tables ``nax curves benchmark`` and ``early-stop`` print: one row per dataset (and
threshold), one column group per method, from a benchmark's result rows."""

from __future__ import annotations

from collections.abc import Sequence


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def _methods(results) -> list[str]:
    seen = []
    for r in results:
        if r["method"] not in seen:
            seen.append(r["method"])
    return seen


def _num(v, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def extrapolation_tables(results: Sequence[dict], skipped: Sequence[dict] = ()) -> str:
    """Per fold (protocol and family, where the run has them) and cutoff: MAE of every
    method, then LPD / 90% coverage of the probabilistic ones, one row per dataset; then
    what was skipped and why."""
    out = []
    folds = list(dict.fromkeys((r.get("protocol"), r.get("family")) for r in results))
    for protocol, family in folds:
        fold_rows = [r for r in results if (r.get("protocol"), r.get("family")) == (protocol, family)]
        where = f" ({protocol}, target family {family})" if family is not None else ""
        for cutoff in sorted({r["cutoff"] for r in fold_rows}):
            rows = [r for r in fold_rows if r["cutoff"] == cutoff]
            methods = _methods(rows)
            prob = [m for m in methods if any(r["lpd"] is not None for r in rows if r["method"] == m)]
            datasets = list(dict.fromkeys(r["dataset"] for r in rows))
            by = {(r["dataset"], r["method"]): r for r in rows}
            for title, cols, cell in (
                ("MAE", methods, lambda r: _num(r["mae"], 4)),
                ("LPD / cov90", prob, lambda r: f"{_num(r['lpd'], 2)} / {_num(r['cov90'], 2)}"),
            ):
                if not cols:
                    continue
                seen = {r["dataset"]: r.get("epochs_observed", "") for r in rows}
                body = [[d, str(seen[d])] + [cell(by[d, m]) if (d, m) in by else "" for m in cols] for d in datasets]
                out.append(f"{title} at cutoff {cutoff:g}{where}\n" + _table(["dataset", "epochs", *cols], body))
    if skipped:
        at = lambda s: "" if s.get("cutoff") is None else f" at cutoff {s['cutoff']:g}"
        lines = [f"  {s['dataset']}{at(s)}: {s['reason']}" for s in skipped]
        out.append("skipped\n" + "\n".join(lines))
    return "\n\n".join(out)


def family_means(results: Sequence[dict], key: str = "mae") -> dict:
    """Mean of ``key`` over target datasets per (protocol, family, cutoff, method)."""
    acc: dict = {}
    for r in results:
        if r.get(key) is None:
            continue
        acc.setdefault((r.get("protocol"), r.get("family"), r["cutoff"], r["method"]), []).append(r[key])
    return {k: sum(v) / len(v) for k, v in acc.items()}


def early_stop_tables(results: Sequence[dict]) -> str:
    """Per threshold: epochs saved / regret (accuracy points) of every method, one row per
    dataset, and their mean."""
    out = []
    for threshold in sorted({r["threshold"] for r in results}):
        rows = [r for r in results if r["threshold"] == threshold]
        methods = _methods(rows)
        datasets = list(dict.fromkeys(r["dataset"] for r in rows))
        by = {(r["dataset"], r["method"]): r for r in rows}
        cell = lambda r: f"{r['epochs_saved']:.3f} / {100 * r['regret']:.2f}"
        body = [[d] + [cell(by[d, m]) if (d, m) in by else "" for m in methods] for d in datasets]
        mean = ["mean"]
        for m in methods:
            rs = [by[d, m] for d in datasets if (d, m) in by]
            mean.append(
                f"{sum(r['epochs_saved'] for r in rs) / len(rs):.3f} / "
                f"{100 * sum(r['regret'] for r in rs) / len(rs):.2f}"
            )
        out.append(
            f"epochs saved / regret (points) at delta {threshold:g}\n" + _table(["dataset", *methods], body + [mean])
        )
    return "\n\n".join(out)
