"""``nax select benchmark``: transferred architecture selection, leave one dataset out.

It lives in the search layer because it runs simulated searches (``nax.search.simulate``,
through the search driver) on the characteristic model's rankings.

Protocol (issue 5). For each target dataset, the sources are the other given datasets;
each source contributes a random sample of ``N`` evaluated architectures; the target starts
with ``k`` random evaluations. On all cells of the target we report the ranking metrics of
each method's prediction and a simulated search that evaluates cells in the order the
method proposes. Methods:

* ``characteristics`` — the hierarchical model; its search updates with every result.
* ``target_only`` (k > 0) — the same model fitted on the target's evaluations alone.
* ``ridge_onehot``, ``ridge_pairwise``, ``ridge_characteristics`` (ridge on exactly the
  model's characteristics), ``gbm`` — pooled baselines on the source rows plus the ``k``
  target rows (normal scores within each dataset); their search follows their fixed
  ranking (they are not refitted after each result).
* ``random`` and ``evolution`` (regularized evolution, no transfer): search only.

``--dissimilar`` (or ``--target synthetic-dissimilar``) adds a synthetic target built from
the NAS-Bench-201 cells whose accuracy rewards what the sources punish
(``synthetic_dissimilar``), all real datasets as sources: a target unlike its sources must
not be drowned by them.

Scores of any sign and direction work (``lower_is_better``: a loss is ranked reversed);
everything downstream of ``_load`` sees values with higher better. The output carries
``nax.provenance`` (commit, dirty flag, versions) next to the config.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import threadpoolctl
import tqdm

from nax import jsonio, tables
from nax import space as space_lib
from nax.characteristics import baselines
from nax.characteristics import model as model_lib
from nax.characteristics.synthetic import SYNTHETIC, synthetic_dissimilar
from nax.provenance import provenance
from nax.search import simulate

#: the code a result of this benchmark depends on (its provenance's dirty flag)
CODE = ("nax/characteristics", "nax/search", "nax/tables", "nax/space.py", "nax/jsonio.py", "nax/provenance.py")
BASELINES = ("ridge_onehot", "ridge_pairwise", "ridge_characteristics", "gbm")
METHODS = ("characteristics", "target_only", *BASELINES, "random", "evolution")
RANKING = ("spearman", "kendall", "top1_precision")
SEARCH = ("evals_to_top1", "regret_at_50")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    table: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    samples_per_source: tuple[int, ...] = (50, 200, 1000)
    target_evals: tuple[int, ...] = (0, 10, 30)
    repeats: int = 5
    seed: int = 0
    search_steps: int = 300  # cap on proposals per simulated search
    dissimilar: bool = False
    figure: str | None = None
    lower_is_better: bool = False  # the table holds losses: ranked reversed
    methods: tuple[str, ...] = METHODS  # a subset reruns only those rows (each method has its own seeds)


def _load(cfg: BenchConfig):
    table = tables.load_archs(cfg.table, aggregate="mean", lower_is_better=cfg.lower_is_better)
    enc, names, acc = table.pivot()
    acc = -acc if table.lower_is_better else acc  # higher is better from here on
    names = [str(n) for n in names]
    for role, lst in (("source", cfg.sources), ("target", cfg.targets)):
        for n in lst:
            if n not in names and not (role == "target" and n == SYNTHETIC):
                raise ValueError(f"{role} dataset {n!r} has no rows in {cfg.table}; present: {', '.join(names)}")
    return table, enc, names, acc


def _source_sample(rng, enc, acc_col, n):
    have = np.flatnonzero(np.isfinite(acc_col))
    if len(have) < model_lib.MIN_ARCHS_PER_SOURCE:
        raise ValueError(f"a source has {len(have)} architectures; at least {model_lib.MIN_ARCHS_PER_SOURCE} needed")
    rows = rng.choice(have, size=min(n, len(have)), replace=False)
    return enc[rows], acc_col[rows]


def _one_setting(cfg, space, target, t_enc, t_acc, src_data, N, rep, ti, model_out=None):
    """All methods on one (target, N, repeat) for every k; returns rows (one per method, k)."""
    rng = np.random.default_rng([cfg.seed, ti, N, rep])
    sources = [s for s, _ in src_data]
    s_enc, s_acc, s_ds = [], [], []
    for s, (enc, acc) in src_data:
        e, a = _source_sample(rng, enc, acc, N)
        s_enc.append(e)
        s_acc.append(a)
        s_ds.append(np.full(len(e), s))
    s_enc, s_acc, s_ds = np.concatenate(s_enc), np.concatenate(s_acc), np.concatenate(s_ds)
    fit_table = tables.ArchTable.from_encodings(s_enc, s_ds, s_acc, unit="score")  # the model only ranks
    run = set(cfg.methods)
    t0 = time.perf_counter()
    model = (
        model_lib.fit(fit_table, sources, seed=rep, space=space)
        if model_out is not None or run & set(METHODS[:2])
        else None
    )
    fit_s = time.perf_counter() - t0
    if model_out is not None:
        model_out.append(model)
    s_scores = np.concatenate([model_lib.normal_scores(s_acc[s_ds == s]) for s in sources])
    s_order = np.concatenate([np.flatnonzero(s_ds == s) for s in sources])
    s_enc_sorted = s_enc[s_order]
    rows = []
    for k in cfg.target_evals:
        krng = np.random.default_rng([cfg.seed, ti, N, rep, k])
        init = krng.choice(len(t_enc), size=k, replace=False)
        obs = (t_enc[init], t_acc[init])
        base = dict(target=target, samples_per_source=N, target_evals=k, repeat=rep)
        # the hierarchical model, with and without the sources
        for method, transfer in (("characteristics", True), ("target_only", False)):
            if (not transfer and k == 0) or method not in run:
                continue
            t1 = time.perf_counter()
            post = model_lib.update(model, obs, transfer=transfer)
            mean, _ = model_lib.score(post, t_enc, return_std=False)
            score_s = time.perf_counter() - t1
            prop = simulate.model_guided(
                model, t_enc, t_acc, init, cfg.search_steps, transfer=transfer, min_steps=min(50, cfg.search_steps)
            )
            rows.append(
                dict(
                    base,
                    method=method,
                    **simulate.ranking_metrics(mean, t_acc),
                    **simulate.search_metrics(prop, init, t_acc),
                    fit_s=fit_s if transfer else None,
                    score_s=score_s,
                    tau=post.tau,
                    rho=post.rho,
                )
            )
        # pooled baselines: the sources' rows plus the target's own
        p_enc = np.concatenate([s_enc_sorted, t_enc[init]]) if k else s_enc_sorted
        p_y = np.concatenate([s_scores, model_lib.normal_scores(t_acc[init])]) if k else s_scores
        for name in [b for b in BASELINES if b in run]:
            t1 = time.perf_counter()
            pred = baselines.fit_pooled(name, p_enc, p_y, seed=rep, space=space)(t_enc)
            fit_b = time.perf_counter() - t1
            prop = simulate.static_order(pred, init, cfg.search_steps)
            rows.append(
                dict(
                    base,
                    method=name,
                    **simulate.ranking_metrics(pred, t_acc),
                    **simulate.search_metrics(prop, init, t_acc),
                    fit_s=fit_b,
                )
            )
        srng = np.random.default_rng([cfg.seed, ti, rep, k, 7])
        # a random order is free to extend: no cap, so evals_to_top1 is never censored; drawn even when
        # only evolution runs, whose key comes next from the same stream
        orders = {"random": simulate.random_order(srng, len(t_enc), init)}
        if len(t_enc) == space.size and "evolution" in run:
            cap, min_steps = max(3000, cfg.search_steps), min(50, cfg.search_steps)
            orders["evolution"] = simulate.regularized_evolution(
                srng, t_enc, t_acc, init, cap, space=space, min_steps=min_steps
            )
        for method, prop in orders.items():
            if method in run:
                none = dict(spearman=None, kendall=None, top1_precision=None)
                rows.append(dict(base, method=method, **none, **simulate.search_metrics(prop, init, t_acc)))
    return rows


def aggregate(raw: list[dict]) -> list[dict]:
    """Mean over repeats per (target, method, samples_per_source, target_evals), with sds."""
    df = pd.DataFrame(raw)
    keys = ["target", "method", "samples_per_source", "target_evals"]
    out = []
    for key, g in df.groupby(keys, sort=False):
        row = dict(zip(keys, key))
        row["samples_per_source"] = int(row["samples_per_source"])
        row["target_evals"] = int(row["target_evals"])
        for m in RANKING + SEARCH:
            v = pd.to_numeric(g[m], errors="coerce").to_numpy(dtype=float) if m in g else np.full(len(g), np.nan)
            ok = np.isfinite(v)
            row[m] = float(v[ok].mean()) if ok.any() else None
            row[f"{m}_sd"] = float(v[ok].std()) if ok.sum() > 1 else None
        e = pd.to_numeric(g["evals_to_top1"], errors="coerce").to_numpy(dtype=float)
        row["top1_found"] = float(np.isfinite(e).mean())
        for m in ("fit_s", "score_s", "tau", "rho"):
            if m in g and g[m].notna().any():
                row[m] = float(pd.to_numeric(g[m], errors="coerce").mean())
        row["repeats"] = len(g)
        out.append(row)
    return out


def run(cfg: BenchConfig, progress: bool = True) -> dict:
    """Run the benchmark grid; returns ``{"config", "results", "raw"}`` (``results`` aggregated)."""
    space = space_lib.nb201
    # taken at the start (a long run could otherwise record a later commit); dirty means the code
    # this benchmark runs was modified, not other work in the same checkout
    record = provenance(paths=CODE)
    table, enc, names, acc = _load(cfg)
    targets = list(dict.fromkeys(list(cfg.targets) + ([SYNTHETIC] if cfg.dissimilar else [])))
    jobs = []
    for ti, target in enumerate(targets):
        if target == SYNTHETIC:
            src = list(cfg.sources)
            t_enc, t_acc = space.enumerate(), synthetic_dissimilar(space, cfg.seed)
        else:
            src = [s for s in cfg.sources if s != target]
            col = acc[:, names.index(target)]
            have = np.isfinite(col)
            if not have.any():
                raise ValueError(f"target dataset {target!r} has no rows in {cfg.table}")
            t_enc, t_acc = enc[have], col[have]
        if not src:
            raise ValueError(f"target {target!r}: no source dataset left (sources: {list(cfg.sources)})")
        src_data = [(s, (enc, acc[:, names.index(s)])) for s in src]
        for N in cfg.samples_per_source:
            for rep in range(cfg.repeats):
                jobs.append((target, t_enc, t_acc, src_data, N, rep, ti))
    raw, models = [], []
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        for target, t_enc, t_acc, src_data, N, rep, ti in tqdm.tqdm(
            jobs, disable=not progress, file=sys.stderr, desc="select benchmark"
        ):
            keep = (
                [] if (cfg.figure and target == targets[0] and N == max(cfg.samples_per_source) and rep == 0) else None
            )
            raw += _one_setting(cfg, space, target, t_enc, t_acc, src_data, N, rep, ti, keep)
            if keep:
                models += keep
    if cfg.figure and models:
        plot_strengths(models[0], cfg.figure)
    return dict(config=dataclasses.asdict(cfg), provenance=record, results=aggregate(raw), raw=raw)


def timings(
    table_path: str,
    sources: Sequence[str],
    n: int = 1000,
    seed: int = 0,
    repeats: int = 3,
    lower_is_better: bool = False,
) -> dict:
    """Wall time (s) of a fit on ``len(sources) x n`` rows, scoring all cells, and target updates."""
    space = space_lib.nb201
    table = tables.load_archs(table_path, aggregate="mean", lower_is_better=lower_is_better)
    enc, names, acc = table.pivot()
    acc = -acc if lower_is_better else acc
    names = [str(x) for x in names]
    rng = np.random.default_rng(seed)
    e, a, d = [], [], []
    for s in sources:
        ee, aa = _source_sample(rng, enc, acc[:, names.index(s)], n)
        e.append(ee)
        a.append(aa)
        d.append(np.full(len(ee), s))
    t = tables.ArchTable.from_encodings(np.concatenate(e), np.concatenate(d), np.concatenate(a), unit="score")
    out = {}
    fit_s = []
    for r in range(repeats):
        t0 = time.perf_counter()
        model = model_lib.fit(t, list(sources), seed=r)
        fit_s.append(time.perf_counter() - t0)
    out[f"fit_{len(sources)}x{n}_s"] = min(fit_s)
    cells = space.enumerate()
    t0 = time.perf_counter()
    model_lib.score(model, cells)
    out["score_all_first_call_s"] = time.perf_counter() - t0  # builds the cached rotated features
    for label, kw in (("score_all_mean_s", dict(return_std=False)), ("score_all_mean_std_s", {})):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model_lib.score(model, cells, **kw)
            ts.append(time.perf_counter() - t0)
        out[label] = min(ts)
    tgt = [x for x in names if x not in sources] or names
    col = acc[:, names.index(tgt[0])]
    for k in (10, 100, 300):
        idx = rng.choice(np.flatnonzero(np.isfinite(col)), k, replace=False)
        ts, ss = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            post = model_lib.update(model, (enc[idx], col[idx]))
            ts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            model_lib.score(post, cells)
            ss.append(time.perf_counter() - t0)
        out[f"update_k{k}_s"] = min(ts)
        out[f"score_all_mean_std_after_k{k}_s"] = min(ss)
    return out


def plot_strengths(model: model_lib.CharacteristicModel, path: str, top: int = 12) -> None:
    """Bar chart of the ``top`` strongest and weakest population effects, 90% intervals."""
    from matplotlib.figure import Figure  # an explicit figure: no global backend set from library code

    df = model_lib.strengths(model)
    sel = pd.concat([df.head(top), df.tail(top)])
    fig = Figure(figsize=(10, 0.32 * len(sel) + 1.2))  # room for the long pair names
    ax = fig.subplots()
    y = np.arange(len(sel))[::-1]
    color = np.where(sel["mean"] > 0, "tab:blue", "tab:red")
    ax.barh(y, sel["mean"], xerr=1.645 * sel["sd"], color=color, alpha=0.8, error_kw=dict(lw=0.8))
    ax.set_yticks(y, sel["name"], fontsize=7)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel("population effect per unit (normal score of accuracy), 90% interval", fontsize=8)
    ax.set_title(f"Strongest and weakest characteristics (sources: {', '.join(model.sources)})", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=130)


def summary(results: list[dict], metric: str = "spearman", k: int = 0) -> pd.DataFrame:
    """``metric`` at ``k`` target evaluations: one row per (target, N), the model, the best
    pooled baseline (the best of all ``BASELINES`` in that row) and which one it is."""
    df = pd.DataFrame(results)
    df = df[(df["target_evals"] == k) & df["method"].isin(("characteristics", *BASELINES))]
    p = df.pivot_table(
        index=["target", "samples_per_source"], columns="method", values=metric, aggfunc="first", sort=False
    )
    out = {m: p[m] for m in ("characteristics",) if m in p.columns}  # a --methods subset may lack either
    base = p[[b for b in BASELINES if b in p.columns]]
    if base.shape[1]:
        out.update(best_baseline=base.max(axis=1), best_baseline_method=base.idxmax(axis=1))
    return pd.DataFrame(out, index=p.index).round(3)


def format_table(results: list[dict], markdown: bool = False) -> str:
    """The model against the best baseline (zero-shot Spearman), then Spearman, top-1% precision,
    evaluations to the top 1% and regret per target, N, k (rows) and method (columns)."""
    df = pd.DataFrame(results)
    best = summary(results)
    title = "zero-shot spearman, the model and the best pooled baseline"
    out = [_render(best.rename_axis(index=["target", "N"]).reset_index(), markdown, title)] if best.shape[1] else []
    for metric in ("spearman", "top1_precision", "evals_to_top1", "regret_at_50"):
        p = df.pivot_table(
            index=["target", "samples_per_source", "target_evals"],
            columns="method",
            values=metric,
            aggfunc="first",
            sort=False,
        )
        p = p[[m for m in METHODS if m in p.columns]].round(3)
        if p.empty:  # no method of this run reports the metric
            continue
        out.append(_render(p.rename_axis(index=["target", "N", "k"]).reset_index(), markdown, metric))
    return "\n\n".join(out)


def _render(df: pd.DataFrame, markdown: bool, title: str) -> str:
    if not markdown:
        return f"## {title}\n" + df.to_string(index=False)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * df.shape[1]]
    for row in df.itertuples(index=False):
        cells = ["" if pd.isna(v) else f"{v:g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return f"**{title}** (mean over repeats)\n\n" + "\n".join(lines)


def write_json(payload: dict, path: str) -> None:
    """The benchmark's JSON (strict: non-finite values as null, ``nax.jsonio``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(jsonio.dumps(payload, indent=1) + "\n")
