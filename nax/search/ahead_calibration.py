"""Calibrating freeze-thaw's look-ahead on the source datasets: the curve predictive Δ
epochs ahead, its spread rescaled to the errors it makes there.

Freeze-thaw (:mod:`nax.search.freeze_thaw`) values a paused trial by its expected
improvement at ``e + Δ``: the curve posterior's predictive of the accuracy Δ epochs past
its prefix. That predictive is calibrated for the *final* value (the extrapolation noise
of :mod:`nax.curves.calibration`, fitted on source prefixes predicting their finals) and
carries the curve model's observation noise; a few epochs ahead it was measured far too
wide (NOTES §8: on digits, predictive sd 4.2 / 3.6 / 2.6 points from epochs 3 / 6 / 9
while the truth's z-scores had sd 0.64 / 0.31 / 0.27), so every paused trial's expected
improvement beat a fresh proposal's and the policy finished almost every trial it started.

**The calibration (fixed before any measurement on a reported suite; its constants below):**

- *Where it is learned*: on the **source** datasets' curves only (transfer: never on the
  target), with the same prior, stopping-rule configuration, prediction code and draw
  composition the search uses (:func:`nax.search.freeze_thaw.curve_model`: its ``fit``
  and its draws under the prior's calibration, as at the start of a search).
- *Which steps*: the prefixes a freeze-thaw search predicts from, ``e = Δ, 2Δ, ... < H``
  (jobs are Δ epochs), each predicting ``e' = min(e + Δ, H)``; on a source of another
  horizon the same fractions of its run.
- *Prequential*: per source dataset, :data:`CONTEXT` of its complete runs are the context
  (as the target's completed runs are in a search) and :data:`QUERIES` others, cut at
  ``e``, are predicted jointly at ``e'`` (the search fits the stale paused trials jointly
  with the context; with more queries per fit the dataset's level is a little better known
  than in a search: an approximation, stated). Seeded subsample.
- *The statistic*: for each prediction, ``r = |y(e') - median| / h``, with ``h`` the
  half-width of the predictive's central :data:`LEVEL` interval; a predictive whose
  central interval is calibrated has ``r <= 1`` in a fraction ``LEVEL`` of cases.
- *The factor* per step: the weighted ``LEVEL`` quantile of ``r`` over the sources' queries
  (each source dataset weighs one in total), clipped to :data:`FACTOR_BOUNDS`; 1 (no
  change) with fewer than :data:`MIN_RESIDUALS` predictions at that step.
- *Within the target, as its runs arrive*: every resumed paused trial shows the value its
  prediction was about; its ratio ``r`` joins the step's pool. The factor is then the
  weighted ``LEVEL`` quantile of the sources' ratios, weighing :data:`SOURCE_WEIGHT`
  predictions in total, and the target's, one each: once the target has shown as many
  predictions at a step as one source dataset gave, it weighs as much as all the sources
  (the per-source factors differ by 2-3x, so the target's own should soon dominate).
- *Applied*: a paused trial's predictive draws at ``e'`` (composed under the search's
  current, possibly target-adapted, calibration) are rescaled around their median by the
  factor of the nearest step fraction ``e / H``: ``median + k (draw - median)``. The
  centre (and the adapted shift) is untouched; only the spread, so the decision rule
  itself (:mod:`nax.search.freeze_thaw_decision`) is unchanged. A fresh proposal's
  draws (the characteristic model's) are not rescaled.

Why a scale factor, and why the 90 % interval: the diagnosis is a spread several times
too wide at short range, a one-parameter defect per step; the interval quantile fixes
coverage directly (what the diagnosis measured) and is robust to the Student-t tails a
standard-deviation ratio would chase. Honest limits: the sources' queries are predicted
with a prior fitted on them (the same in-sample convention as the extrapolation noise's
own fit, :func:`nax.curves.fitting.fit_calibration`), which can make the factor smaller
than the target needs; ``fit['coverage_loo']`` records, per step, the coverage on each
source of the factor learned on the others (a check across datasets, still in-sample
for the prior).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from nax.curves import spread

#: central interval whose coverage the factor matches
LEVEL = 0.9
#: complete runs of a source dataset used as context (the diagnostic's 10; a search's
#: context grows from 0 to about 40 completed runs on the meta-dataset)
CONTEXT = 10
#: prefixes of a source dataset predicted per step
QUERIES = 30
#: fewest predictions at a step for a factor (else 1)
MIN_RESIDUALS = 20
#: total weight of the sources' ratios against the target's own (one each) within a search
SOURCE_WEIGHT = float(QUERIES)
#: the factor's box (a guard against a degenerate interval, not a tuned range)
FACTOR_BOUNDS = (0.05, 20.0)


class AheadCalibration(NamedTuple):
    """Spread factors of the predictive Δ epochs ahead, by prefix fraction ``e / H``.

    ``fractions``, ``factors``: one per step; ``level``: the interval matched; ``fit``:
    what they were learned from (per step: predictions, coverage on the sources before
    and after, leave-one-source-out coverage, each source's own factor)."""

    fractions: tuple[float, ...]
    factors: tuple[float, ...]
    level: float = LEVEL
    fit: dict | None = None
    ratios: tuple = ()  # per step: (ratios [n], weights [n] summing to 1) on the sources

    def step(self, epochs, horizon: int) -> np.ndarray:
        """Index of the step of the nearest fraction for prefixes of ``epochs`` (int or [N])."""
        e = np.asarray(epochs, np.float64)
        return np.abs(e[..., None] / horizon - np.asarray(self.fractions)).argmin(-1)

    def factor(self, epochs, horizon: int, seen=None) -> np.ndarray:
        """The factor for prefixes of ``epochs`` (int or [N]) of runs of ``horizon`` epochs:
        the step of the nearest fraction (1 without steps). ``seen``: the target's own
        ratios per step (:meth:`observe`), pooled with the sources'."""
        e = np.asarray(epochs, np.float64)
        if not self.fractions:
            return np.ones(e.shape)
        k = np.asarray(self.factors, np.float64)
        if seen is not None and self.ratios:
            k = np.array([self._pooled(i, seen[i]) if len(seen[i]) else k[i] for i in range(len(k))])
        return k[self.step(e, horizon)]

    def _pooled(self, i: int, own) -> float:
        src, w = self.ratios[i]
        r = np.concatenate([np.asarray(src, np.float64), np.asarray(own, np.float64)])
        w = np.concatenate([SOURCE_WEIGHT * np.asarray(w, np.float64), np.ones(len(own))])
        ok = np.isfinite(r)
        return float(np.clip(weighted_quantile(r[ok], w[ok], self.level), *FACTOR_BOUNDS))

    def rescale(self, draws_SxN, epochs_N, horizon: int, seen=None) -> np.ndarray:
        """Draws [S, N] of prefixes of ``epochs_N`` with their spread about each column's
        median multiplied by :meth:`factor`."""
        return rescale(draws_SxN, self.factor(epochs_N, horizon, seen))

    def ratio(self, draws_S, value: float) -> float:
        """The interval ratio of one prediction's draws [S] (or [S, 1]) for the value it was about."""
        return float(interval_ratios(np.reshape(draws_S, (-1, 1)), [value], self.level)[0])

    def empty_seen(self) -> tuple:
        """The target's ratios before it has shown any: one empty tuple per step."""
        return ((),) * len(self.fractions)

    def observe(self, seen: tuple, epochs: int, horizon: int, ratio: float) -> tuple:
        """``seen`` with the target's ratio of a prediction from a prefix of ``epochs``."""
        if not self.fractions or not np.isfinite(ratio):
            return seen
        i = int(self.step(epochs, horizon))
        return seen[:i] + (seen[i] + (float(ratio),),) + seen[i + 1 :]

    def to_dict(self) -> dict:
        return {"fractions": list(self.fractions), "factors": list(self.factors), "level": self.level, "fit": self.fit}


def steps(horizon: int, delta: int) -> list[tuple[int, int]]:
    """The (prefix, predicted epoch) pairs of a freeze-thaw search: ``(e, min(e + Δ, H))``
    for ``e = Δ, 2Δ, ... < H``."""
    if horizon < 2 or delta < 1:
        raise ValueError(f"need horizon >= 2 and delta >= 1, got {horizon}, {delta}")
    return [(e, min(e + delta, horizon)) for e in range(delta, horizon, delta)]


def interval_ratios(draws_SxN, truth_N, level: float = LEVEL) -> np.ndarray:
    """``|truth - median| / h`` per column of predictive draws [S, N], ``h`` the half-width
    of the draws' central ``level`` interval (<= 1: inside it)."""
    d = np.asarray(draws_SxN, np.float64)
    lo, med, hi = np.quantile(d, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=0)
    half = np.maximum((hi - lo) / 2, 1e-12)
    return np.abs(np.asarray(truth_N, np.float64) - med) / half


def weighted_quantile(x, weights, q: float) -> float:
    """The smallest ``x`` whose weighted cumulative share reaches ``q``."""
    x, w = np.asarray(x, np.float64), np.asarray(weights, np.float64)
    order = np.argsort(x)
    cum = np.cumsum(w[order]) / w.sum()
    return float(x[order][min(np.searchsorted(cum, q - 1e-12), len(x) - 1)])


def factor_from_ratios(ratios, weights=None, level: float = LEVEL) -> float:
    """The spread factor that makes the central ``level`` interval cover a share ``level``
    of these predictions: the weighted ``level`` quantile of their ratios, clipped."""
    r = np.asarray(ratios, np.float64)
    w = np.ones(len(r)) if weights is None else np.asarray(weights, np.float64)
    ok = np.isfinite(r)
    if ok.sum() < MIN_RESIDUALS:
        return 1.0
    return float(np.clip(weighted_quantile(r[ok], w[ok], level), *FACTOR_BOUNDS))


def rescale(draws_SxN, factor_N) -> np.ndarray:
    """Draws [S, N] with their spread around each column's median multiplied by ``factor``
    (the one rescaling of :mod:`nax.curves.spread`)."""
    return spread.rescale(draws_SxN, factor_N, axis=0)


def from_ratios(by_step: dict, level: float = LEVEL, horizon: int | None = None) -> AheadCalibration:
    """The calibration from each step's ratios: ``by_step[fraction] = [(source, ratios)]``;
    each source weighs one at a step. Records the coverage before (factor 1) and after on
    the sources, and each source's coverage under the factor of the others."""
    fractions, factors, pools, fit = [], [], [], {"level": level, "steps": []}
    for fr in sorted(by_step):
        groups = [(s, np.asarray(r, np.float64)) for s, r in by_step[fr] if len(r)]
        if not groups:
            continue
        r = np.concatenate([g for _, g in groups])
        w = np.concatenate([np.full(len(g), 1.0 / len(g)) for _, g in groups])
        k = factor_from_ratios(r, w, level)
        loo = {}
        for s, g in groups:
            others = [(o, x) for o, x in groups if o != s]
            if others:
                ro = np.concatenate([x for _, x in others])
                wo = np.concatenate([np.full(len(x), 1.0 / len(x)) for _, x in others])
                loo[s] = float(np.mean(g <= factor_from_ratios(ro, wo, level)))
        fractions.append(float(fr))
        factors.append(k)
        pools.append((r, w / w.sum()))
        fit["steps"].append(
            {
                "fraction": float(fr),
                "prefix_epochs": None if horizon is None else int(round(fr * horizon)),
                "predictions": int(len(r)),
                "factor": k,
                "coverage_before": float(np.average(r <= 1.0, weights=w)),
                "coverage_after": float(np.average(r <= k, weights=w)),
                "coverage_loo": loo,
                "factor_by_source": {s: factor_from_ratios(g, None, level) for s, g in groups},
            }
        )
    return AheadCalibration(tuple(fractions), tuple(factors), level, fit, tuple(pools))


def fit_ahead(
    prior,
    sources,
    horizon: int,
    delta: int,
    *,
    stop_config=None,
    context: int = CONTEXT,
    queries: int = QUERIES,
    level: float = LEVEL,
    seed: int = 0,
) -> AheadCalibration:
    """Learn the spread factors on the source curves ``sources`` (a ``CurveTable`` of the
    datasets ``prior`` was fitted on; columns epochs 1..T of each dataset's runs), for a
    target of ``horizon`` epochs searched in jobs of ``delta``. Predictions as the search
    makes them (:func:`nax.search.freeze_thaw.curve_model` of the stopping rule of
    ``prior`` under ``stop_config``)."""
    from nax.curves.stopping import StopConfig, stop_rule
    from nax.search.freeze_thaw_curves import curve_model, draws_of

    config = stop_config if stop_config is not None else StopConfig()
    rng = np.random.default_rng(seed)
    names = sorted(set(map(str, sources.datasets)))
    by_step: dict = {}
    for i, name in enumerate(names):
        # a concatenation of sets of different horizons is NaN-padded: each set's own last epoch
        table = sources.subset(np.asarray(sources.datasets).astype(str) == name)
        width = int(np.flatnonzero(table.mask.any(0)).max()) + 1 if table.mask.any() else 0
        table = table.subset(table.mask[:, width - 1]) if width else table
        n = table.values.shape[0]
        c = min(context, n // 3)
        q = min(queries, n - c)
        if q < 5 or width < 2:
            continue
        rows = rng.permutation(n)
        ctx, qry = table.values[rows[:c], :width], table.values[rows[c : c + q], :width]
        rule = stop_rule(prior, width, config)
        model = curve_model(rule)
        state = model.init(jax.random.key(seed))
        state = state._replace(rule=state.rule._replace(context=np.asarray(ctx, np.float64)))
        for e, e2 in steps(horizon, delta):
            fr = e / horizon
            es, e2s = max(1, round(fr * width)), min(width, round(e2 / horizon * width))
            if e2s <= es:
                continue
            fitted = model.fit(state, [row[:es] for row in qry], [e2s] * q, seed + i)
            draws = draws_of(state.rule, fitted, prior)
            ok = np.array([a.ok for a in fitted])
            r = interval_ratios(draws[:, ok], qry[ok, e2s - 1], level)
            by_step.setdefault(fr, []).append((name, r))
    return from_ratios(by_step, level, horizon)


__all__ = [
    "AheadCalibration",
    "CONTEXT",
    "FACTOR_BOUNDS",
    "LEVEL",
    "MIN_RESIDUALS",
    "QUERIES",
    "SOURCE_WEIGHT",
    "factor_from_ratios",
    "fit_ahead",
    "from_ratios",
    "interval_ratios",
    "rescale",
    "steps",
    "weighted_quantile",
]
