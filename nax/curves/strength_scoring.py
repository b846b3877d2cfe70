"""The candidates of a transfer strength and how they are scored on the target's own data
(:mod:`nax.curves.strength` chooses or combines them; its docstring says why).

:class:`Candidate` and the grids fixed a priori (:data:`FULL_GRID`, :data:`SHAPE_GRID`,
:data:`MIXED_GRID`), :func:`default_grid` per query, the scoring task of a query
(:func:`scoring_task`: prequential on half prefixes, or on the target's finished runs) and
:func:`score_strengths`, every candidate of every query fitted on its task in one batch
(:class:`Scoring`, what both ``combine="choose"`` and ``"mix"`` start from).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nax.curves import spread as spread_lib
from nax.curves.inference import InferenceConfig
from nax.curves.predict import Prediction, Query, predict_many
from nax.curves.prior import CurvePrior


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One transfer strength: ``rho`` and ``scope`` for :meth:`CurvePrior.at_strength`,
    or ``independent`` curves (the ``no_transfer`` model, with the prior's calibration);
    ``scale``: the scale this candidate predicts the target on (None: the query's own,
    ``"dataset"``: the target's :class:`~nax.curves.observations.DatasetScale`)."""

    name: str
    rho: float | None
    scope: str = "full"
    independent: bool = False
    scale: str | None = None

    def prior(self, prior: CurvePrior) -> CurvePrior | None:
        return None if self.independent else prior.at_strength(self.rho, self.scope)

    def query(self, query: Query) -> Query:
        """``query`` as this candidate predicts it (on its scale)."""
        return query if self.scale is None or query.scale is not None else query.replace(scale=self.scale)

    def to_dict(self) -> dict:
        return {
            "chosen": self.name,
            "rho": self.rho,
            "scope": self.scope,
            "independent": self.independent,
            "scale": self.scale or "query",
        }


RHO1, RHO_HALF, RHO0 = Candidate("rho1", 1.0), Candidate("rho0.5", 0.5), Candidate("rho0", 0.0)
INDEPENDENT = Candidate("independent", None, independent=True)
SHAPE1, SHAPE_HALF = Candidate("shape_rho1", 1.0, "shape"), Candidate("shape_rho0.5", 0.5, "shape")
#: the grid for a target whose levels the sources share (same direction, natural scale)
FULL_GRID = (RHO1, RHO_HALF, RHO0, INDEPENDENT)
#: the grid for a target on its own dataset scale: only the shape can transfer
SHAPE_GRID = (SHAPE1, SHAPE_HALF, RHO0, INDEPENDENT)
#: the grid for a target of the other direction: the full grid on the model scale, and the
#: shape-only candidates on the target's dataset scale (the evidence decides between them)
MIXED_GRID = (
    RHO1,
    RHO_HALF,
    Candidate("shape_rho1", 1.0, "shape", scale="dataset"),
    Candidate("shape_rho0.5", 0.5, "shape", scale="dataset"),
    RHO0,
    INDEPENDENT,
)
#: fewest observed epochs of a curve for the prequential check (a part of it is refitted)
MIN_EPOCHS = 4
#: where the strength check cuts a curve of ``n`` observed epochs (:func:`check_keep`):
#: ``"half"`` keeps ``max(n // 2, 1)`` (the rule as first designed; the spread check of
#: :mod:`nax.curves.spread` always uses it); ``"min_epochs"`` keeps at least
#: ``min(n - 1, MIN_EPOCHS)``, i.e. ``max(n // 2, min(n - 1, MIN_EPOCHS))``. Why (issue 13,
#: helper H13; benchmarks/NOTES.md section 6, "The check's evidence"): the candidates' errors
#: do not fall alike as epochs accrue. Independent curves (each its own parameters under a
#: vague prior) are unidentified from 2-3 epochs and fine from 4-6 (meta-dataset loss
#: curves: no_transfer's MAE 0.82 / 0.14 / 0.03 from 2 / 4 / 6 of 12 epochs), pooled or
#: transferred ones much less so; a check that refits a 6-epoch prefix on 3 epochs judges
#: ``independent`` where it will not be used. Never asking a candidate to extrapolate from
#: fewer than the epochs a curve needs to be judged at all (:data:`MIN_EPOCHS`) removes that,
#: and leaves the half cut (its horizon in the ratio of the final one) for longer prefixes.
CUTS = ("half", "min_epochs")
#: the default cut: ``"half"``. ``"min_epochs"`` failed its pre-registered rule (NOTES
#: section 6, "The check's evidence": cross-family mean 0.1637 -> 0.1565, but Baker +0.0032,
#: where a 4-of-5-epoch check on 49-epoch curves is one epoch ahead), so it is an option
CHECK_CUT = "half"
#: fewest finished runs of the target for the choice on their final values
MIN_FINISHED = 2


def fallback(candidates) -> Candidate:
    """The a-priori choice without evidence: the grid's strongest transfer (its first)."""
    return candidates[0]


def default_grid(prior: CurvePrior, query: Query) -> tuple[tuple[Candidate, ...], Query]:
    """The candidate grid of ``query`` and the query with its direction resolved: the shape
    grid when the target already has a dataset scale; the mixed grid (model scale and
    shape-only on the dataset scale) when it runs in another direction than the prior's
    sources; else the full grid. Each candidate's :meth:`Candidate.query` is the query
    as that candidate predicts it."""
    minimize = prior.minimize if query.minimize is None else query.minimize
    if query.scale is not None:
        return SHAPE_GRID, query.replace(minimize=minimize)
    if minimize != prior.minimize:
        return MIXED_GRID, query.replace(minimize=minimize)
    return FULL_GRID, query.replace(minimize=minimize)


def _observed_counts(values, mask) -> np.ndarray:
    values = np.asarray(values, np.float64)
    mask = np.isfinite(values) if mask is None else np.asarray(mask, bool)
    return mask, mask.sum(axis=1)


def check_keep(counts, cut: str = "half") -> np.ndarray:
    """Epochs each curve keeps in the check fit, from its observed ``counts`` (:data:`CUTS`)."""
    counts = np.asarray(counts)
    if cut == "half":
        return np.maximum(counts // 2, 1)
    if cut == "min_epochs":
        return np.maximum(np.maximum(counts // 2, np.minimum(counts - 1, MIN_EPOCHS)), 1)
    raise ValueError(f"cut must be one of {CUTS}, not {cut!r}")


def scoring_task(query: Query, min_epochs: int = MIN_EPOCHS, cut: str = "half"):
    """What the candidates of ``query`` are judged on: ``(fit query, rows, epochs, truth,
    rule)`` with ``truth`` [len(rows)] the values (table units) the fit's curves ``rows``
    must predict at ``epochs`` [len(rows)], or None when there is no evidence.
    ``min_epochs``: fewest observed epochs of a scored curve; the fit query (every curve
    cut at half its observed epochs) does not depend on it, so the spread check
    (:mod:`nax.curves.spread`, 2 epochs) scores more curves of the same fit. ``cut``: how
    much of each prefix the fit keeps (:func:`check_keep`; the finished-runs task has its own)."""
    values = np.asarray(query.values, np.float64)
    values = values[None] if values.ndim == 1 else values
    mask, counts = _observed_counts(values, query.mask)
    epochs = np.arange(1, values.shape[1] + 1) if query.epochs is None else np.asarray(query.epochs)
    # the scoring fit gets its own dataset scale, from the cut prefixes only
    scale = None if query.scale is None else "dataset"
    finished = None if query.finished is None else np.asarray(query.finished, np.float64)
    if finished is not None and finished.ndim == 2 and len(finished) >= MIN_FINISHED:
        # finished runs (epochs 1..horizon): cut where the query's typical prefix ends,
        # predicted with the query's prefixes as context, judged on their final values
        horizon = finished.shape[1]
        done = np.isfinite(finished[:, -1])
        if done.sum() >= MIN_FINISHED:
            cut = int(epochs[int(np.median(counts)) - 1])
            part = finished[done].copy()
            part[:, cut:] = np.nan
            ctx = np.full((len(values), horizon), np.nan)
            cols = epochs[epochs <= horizon] - 1
            ctx[:, cols] = np.where(mask, values, np.nan)[:, : len(cols)]
            fit = Query(part, None, horizon, None, query.minimize, ctx, horizon, scale)
            rows = np.arange(int(done.sum()))
            return fit, rows, np.full(len(rows), horizon), finished[done, -1], "finished"
    rows = np.nonzero(counts >= min_epochs)[0]
    if not len(rows):
        return None
    keep = check_keep(counts, cut)
    order = np.cumsum(mask, axis=1)
    half = mask & (order <= keep[:, None])
    last = np.argmax(order == counts[:, None], axis=1)  # column of each curve's last observation
    fit = Query(
        np.where(half, values, np.nan),
        half,
        query.horizon,
        query.epochs,
        query.minimize,
        query.context,
        query.context_horizon,
        scale,
    )
    return fit, rows, epochs[last[rows]], values[rows, last[rows]], "prequential"


def _score(pred: Prediction, rows, epochs, truth) -> float | None:
    if not pred.ok:
        return None
    at = pred.horizon.copy()
    at[rows] = epochs
    draws = pred.predict_at(at[:, None])[:, :, 0]  # [S, N], each row at its own epoch
    err = np.abs(np.median(draws[:, rows], axis=0) - truth)
    return float(np.mean(err)) if np.isfinite(err).all() else None


@dataclasses.dataclass
class Scoring:
    """The candidates' scoring fits of a batch of queries (:func:`score_strengths`), what
    both ways of using them start from (``combine="choose"`` and ``"mix"`` of
    :func:`predict_auto_many`): per query ``plans[i] = (grid, query, task, fits,
    check_tasks)`` (``fits``: the grid's scoring fits in grid order, None without a task;
    ``check_tasks``: candidate name -> its spread-check task) and ``records[i]`` (rule,
    scores, values scored, reason). ``inference``, ``seed``, ``chunk``, ``width``: how the
    fits were made (the final fits reuse them, so they share compiled programs); ``cut``:
    the strength check's cut (:data:`CUTS`; a query's scoring fits are also its spread check
    fits only where both cut every curve alike, :meth:`shares_check`)."""

    priors: list
    plans: list
    records: list
    inference: InferenceConfig
    seed: int
    chunk: int | None
    width: int | None
    cut: str = "half"
    #: per query: whether its scoring fits are also its spread check fits (every curve cut
    #: alike by both; None: all are)
    shared: list | None = None

    def shares_check(self, i: int) -> bool:
        """Whether query ``i``'s scoring fits can serve as its spread check fits."""
        return self.shared is None or bool(self.shared[i])


def score_strengths(
    priors, queries, *, candidates=None, inference=InferenceConfig(), seed=0, chunk=None, width=None, cut=None
):
    """Fit every candidate of every query on its scoring task, in one batch
    (:func:`predict_many`), and score it: a :class:`Scoring`. ``cut``: :data:`CUTS`
    (None: :data:`CHECK_CUT`)."""
    cut = CHECK_CUT if cut is None else cut
    check_keep(0, cut)  # refuse an unknown cut before any fit
    queries = list(queries)
    priors = list(priors) if isinstance(priors, (list, tuple)) else [priors] * len(queries)
    plans, batch_priors, batch_queries, batch_cals = [], [], [], []
    for prior, query in zip(priors, queries):
        if prior is None:
            raise ValueError("choosing a transfer strength needs a source prior")
        if candidates is None:
            grid, query = default_grid(prior, query)
        else:  # the direction resolved here: an independent candidate has no prior to take it from
            grid = tuple(candidates)
            query = query.replace(minimize=prior.minimize if query.minimize is None else query.minimize)
        # one scoring task per scale in the grid; rows, epochs and truth (table units) are
        # the same on every scale, so the candidates' scores compare
        key = (lambda c: None) if query.scale is not None else (lambda c: c.scale)
        tasks = {}
        for cand in grid:
            if key(cand) not in tasks:
                tasks[key(cand)] = scoring_task(cand.query(query), cut=cut)
        task = next(iter(tasks.values()))
        # the spread check's values: the same fits, scoring every curve of >= 2 epochs
        check_tasks = {}
        for cand in grid:
            if key(cand) not in check_tasks:
                check_tasks[key(cand)] = scoring_task(cand.query(query), spread_lib.MIN_CHECK_EPOCHS)
        first = len(batch_queries)
        if task is not None:
            for cand in grid:
                batch_priors.append(cand.prior(prior))
                batch_queries.append(tasks[key(cand)][0])
                batch_cals.append(prior.calibration if cand.independent else None)
        plans.append((grid, query, task, first, {c.name: check_tasks[key(c)] for c in grid}))
    preds = predict_many(
        batch_priors, batch_queries, inference=inference, seed=seed, calibrations=batch_cals, chunk=chunk, width=width
    )
    out_plans, records = [], []
    for grid, query, task, first, check_task in plans:
        record = {"rule": "fallback", "scores": {c.name: None for c in grid}, "values_scored": 0, "cut": cut}
        fits = None
        if task is None:
            record["reason"] = f"no curve with {MIN_EPOCHS} observed epochs and fewer than {MIN_FINISHED} finished runs"
        else:
            _, rows, epochs, truth, rule = task
            fits = preds[first : first + len(grid)]
            scores = {c.name: _score(fit, rows, epochs, truth) for c, fit in zip(grid, fits)}
            record.update(scores=scores, values_scored=int(len(rows)))
            if any(v is not None for v in scores.values()):
                record["rule"] = rule
            else:
                record["reason"] = "every candidate fit failed"
        out_plans.append((grid, query, task, fits, check_task))
        records.append(record)
    shared = [_same_cut(task, check_task) for _, _, task, _, check_task in out_plans]
    return Scoring(priors, out_plans, records, inference, seed, chunk, width, cut, shared)


def _same_cut(task, check_tasks) -> bool:
    """Whether a strength task's fit query is the spread check's (the same cut prefixes)."""
    checks = [c for c in check_tasks.values() if c is not None]
    if task is None or not checks:
        return True  # nothing to share or nothing to check
    # the finished-runs task (no mask) does not depend on the cut
    same = lambda a, b: (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
    return all(same(c[0].mask, task[0].mask) for c in checks)
