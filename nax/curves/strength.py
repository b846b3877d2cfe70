"""How strongly the source datasets should shape a target's predictions, chosen from the
target's own data.

A transferred prior helps a target like its sources and hurts one unlike them (issue 13:
cross-family, ``transfer`` lost to ``no_transfer`` at every cutoff). The strength ``rho``
(:meth:`nax.curves.prior.CurvePrior.at_strength`) is therefore chosen per target dataset
and prefix from a small grid fixed a priori, :data:`FULL_GRID` - the full prior (1), half
(1/2), within-target pooling (0) and independent curves (``no_transfer``) - or, for a
target whose levels are not comparable with the sources' (another direction or metric),
:data:`SHAPE_GRID`, the same on the target's own :class:`~nax.curves.observations.DatasetScale`
with only the curve shape transferred.

The rule is *prequential* (R13 notes: the choice by marginal likelihood of the prefixes
prefers the loosest prior and does not lower the MAE; this check of the extrapolation
itself was the best rule measured): every candidate is refitted on the target's prefixes
cut at half their observed epochs (:data:`CHECK_CUT`; the option ``cut="min_epochs"``
never refits a judged curve on fewer than :data:`MIN_EPOCHS`, since independent curves are
unidentified from 2-3 epochs - it failed its pre-registered rule, NOTES section 6), and the
one whose median draw best predicts the values at the last observed epochs (MAE, table
units) wins. When the target has at least
:data:`MIN_FINISHED` finished runs the candidates instead predict those runs' final values
from their prefixes cut where the query's are (rule ``"finished"``). When neither is
possible (no curve with :data:`MIN_EPOCHS` observed epochs) the candidate fixed a priori,
the grid's first (the full prior: no evidence to move away from the sources), is used - for
every grid but the explicit shape grid on the model scale, because a dataset scale set from
fewer than :data:`MIN_EPOCHS` epochs per curve has no level to stand on. No
final value of a query curve is ever seen. Every candidate of every query is one fit in a
single batched program (:func:`nax.curves.predict.predict_many`).

**Combining instead of choosing** (``predict_auto_many(..., combine="mix")``; issue 13,
helper C13d, rule fixed before it was measured; benchmarks/NOTES.md section 6, "Combining
strengths instead of choosing one"). On the committed matrix the hard choice was no better
on average than always using the full prior (cross-family mean MAE 0.1632 chosen vs 0.1625
full; leave-one-out 0.1019 vs 0.0962) and lost to ``no_transfer`` on 3 of 4 families
cross-family: the check (half prefix -> last observed epoch) is a short-horizon, noisy
signal for a long-horizon question, and with weights estimated from a weak signal a
simple average of the better forecasts beats picking one (Bates & Granger 1969; Smith &
Wallis 2009; Claeskens et al. 2016). The rule, both constants a priori: keep the better
half by score (:func:`better_half`: ``ceil(K / 2)`` of the K candidates with a score, ties
in grid order), each with equal weight; without evidence every candidate of the grid on
the model or the query's scale (:func:`fallback_mixture`), equal weights. Each kept
candidate is one final fit on the full prefixes, its spread recalibrated on its own check
fit; the result is a :class:`~nax.curves.mixture.MixturePrediction`. The same scoring
fits (:func:`score_strengths`) serve both combines. Default: ``"choose"``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from nax.curves import spread as spread_lib
from nax.curves.inference import InferenceConfig
from nax.curves.mixture import MixturePrediction
from nax.curves.observations import to_model_scale
from nax.curves.padding import batch_bucket, fit_width
from nax.curves.predict import Prediction, Query, predict_many
from nax.curves.prior import CurvePrior
from nax.curves.strength_scoring import (  # noqa: F401 - the grid and the scoring, re-exported
    CHECK_CUT,
    CUTS,
    FULL_GRID,
    INDEPENDENT,
    MIN_EPOCHS,
    MIN_FINISHED,
    MIXED_GRID,
    RHO0,
    RHO1,
    RHO_HALF,
    SHAPE1,
    SHAPE_GRID,
    SHAPE_HALF,
    Candidate,
    Scoring,
    default_grid,
    fallback,
    score_strengths,
    scoring_task,
)


def choose(
    priors,
    queries,
    *,
    candidates=None,
    inference: InferenceConfig = InferenceConfig(),
    seed: int = 0,
    chunk=None,
    width=None,
    cut=None,
):
    """The strength chosen for each query: a list of ``(candidate, query, record)`` where
    ``query`` is the query as it will be predicted (:meth:`Candidate.query`: on the
    target's dataset scale for a shape candidate of the mixed grid) and ``record`` (JSON-ready) has the choice, the rule (``"prequential"``,
    ``"finished"`` or ``"fallback"``), every candidate's score (MAE, table units; None:
    not scored or the fit failed) and the number of values scored. ``priors``: one
    :class:`CurvePrior` or a list aligned with ``queries``; ``candidates``: a fixed grid
    (default: :func:`default_grid` per query). All candidate fits run as one batch, in
    chunks of ``chunk`` fits on at least ``width`` epochs (:func:`nax.curves.predict.predict_many`).
    ``cut``: where the check cuts the prefixes (:data:`CUTS`; None: :data:`CHECK_CUT`)."""
    return _choose(
        priors, queries, candidates=candidates, inference=inference, seed=seed, chunk=chunk, width=width, cut=cut
    )[0]


def _choose(priors, queries, *, candidates, inference, seed, chunk, width, scoring=None, cut=None):
    """:func:`choose`, and for each query the chosen candidate's scoring fit with its task
    (``(prediction, task)``, None without one): the spread check reuses it."""
    if scoring is None:
        scoring = score_strengths(
            priors, queries, candidates=candidates, inference=inference, seed=seed, chunk=chunk, width=width, cut=cut
        )
    out, checks = [], []
    for i, ((grid, query, _task, fits, check_task), record) in enumerate(zip(scoring.plans, scoring.records)):
        chosen = fallback(grid)
        if record["rule"] != "fallback":
            scores = record["scores"]
            chosen = min((c for c in grid if scores[c.name] is not None), key=lambda c: scores[c.name])
        out.append((chosen, chosen.query(query), {**chosen.to_dict(), **record}))
        # the check fit is the chosen candidate's scoring fit when there was one on the same
        # cut prefixes (the check only scores more of its curves); else one more fit later
        shared = fits is not None and scoring.shares_check(i)
        checks.append((fits[grid.index(chosen)] if shared else None, check_task[chosen.name]))
    return out, checks


def better_half(grid, scores) -> tuple[Candidate, ...] | None:
    """The candidates ``combine="mix"`` keeps from their ``scores`` (name -> MAE or None):
    the ``ceil(K / 2)`` best of the K with a score (ties: grid order), in grid order; None
    when no candidate has a score (then :func:`fallback_mixture`)."""
    scored = [c for c in grid if scores.get(c.name) is not None]
    if not scored:
        return None
    best = sorted(scored, key=lambda c: scores[c.name])[: math.ceil(len(scored) / 2)]  # a stable sort
    return tuple(c for c in grid if c in best)


def fallback_mixture(grid, query: Query) -> tuple[Candidate, ...]:
    """The candidates ``combine="mix"`` keeps without evidence: every candidate of the grid
    that predicts on the model (or the query's own) scale - a dataset scale set from fewer
    than :data:`MIN_EPOCHS` epochs per curve has no level to stand on (the mixed grid's
    shape candidates on the dataset scale are left out unless the query has its scale)."""
    return tuple(c for c in grid if c.scale is None or query.scale is not None)


def check_factor(pred: Prediction | None, task, rule: str) -> tuple[float, dict]:
    """The spread factor (:mod:`nax.curves.spread`) of a query from its check fit ``pred``
    and ``task`` (:func:`scoring_task`'s tuple, or None), with its record."""
    if task is None or pred is None or not pred.ok:
        why = "no check values" if task is None else "the check fit failed"
        return 1.0, {"factor": 1.0, "rule": "fallback", "values": 0, "reason": why, "check": rule}
    _, rows, epochs, truth, _ = task
    at = pred.horizon.copy()
    at[rows] = epochs
    draws = pred.model_draws(at[:, None])[:, rows, 0]
    truth = pred.scale.to_model(truth) if pred.scale is not None else to_model_scale(truth, pred.minimize)
    k, record = spread_lib.factor(spread_lib.normalised_errors(draws, truth))
    return k, {**record, "check": rule}


def predict_auto_many(
    priors,
    queries,
    *,
    candidates=None,
    inference: InferenceConfig = InferenceConfig(),
    seed: int = 0,
    recalibrate: bool = True,
    combine: str = "choose",
    scoring: Scoring | None = None,
    cut: str | None = None,
) -> list:
    """Predict each query at the transfer strength chosen from its own data
    (:func:`choose`); each :class:`Prediction` carries the choice in ``strength``.
    ``recalibrate``: the predictive's spread is rescaled about its median by the factor
    of the target's prequential check (:mod:`nax.curves.spread`; ``Prediction.spread``,
    the record in ``strength["spread"]``): the chosen candidate's scoring fit, or one more
    fit of it on the half prefixes where the choice had none (curves of 2-3 epochs).

    ``combine="mix"``: instead of the best candidate, an equal-weight
    :class:`~nax.curves.mixture.MixturePrediction` of the better half by score
    (:func:`better_half`; without evidence every admissible candidate,
    :func:`fallback_mixture`), each component fitted on the full prefixes and, with
    ``recalibrate``, its spread recalibrated on its own check fit. ``scoring``: the
    :func:`score_strengths` of these priors and queries made with the same ``inference``
    and ``seed`` (e.g. shared by a ``"choose"`` and a ``"mix"`` call); None: made here.
    ``cut``: where the strength check cuts the prefixes (:data:`CUTS`; None:
    :data:`CHECK_CUT`); the spread check always cuts at half (one more fit per kept
    candidate where the two differ)."""
    if combine not in ("choose", "mix"):
        raise ValueError(f"combine must be 'choose' or 'mix', not {combine!r}")
    queries = list(queries)
    priors = list(priors) if isinstance(priors, (list, tuple)) else [priors] * len(queries)
    # the scoring fits (a few per query, on half prefixes) and the final ones (one per
    # candidate kept) in chunks of one size and one width: both calls run the same compiled
    # programs (compiles are most of a cold call; NOTES section 6, speed)
    if scoring is None:
        scoring = _batch_scoring(priors, queries, candidates, inference, seed, cut)
    elif len(scoring.plans) != len(queries) or scoring.seed != seed or scoring.inference != inference:
        raise ValueError("scoring was made for other queries, inference or seed")
    elif cut is not None and scoring.cut != cut:
        raise ValueError(f"scoring was made with cut {scoring.cut!r}, not {cut!r}")
    chunk, width = scoring.chunk, scoring.width
    if combine == "mix":
        return _mixed(priors, scoring, inference, seed, recalibrate)
    chosen, checks = _choose(
        priors,
        queries,
        candidates=candidates,
        inference=inference,
        seed=seed,
        chunk=chunk,
        width=width,
        scoring=scoring,
    )
    final_priors = [c.prior(p) for (c, _, _), p in zip(chosen, priors)]
    cals = [p.calibration if c.independent else None for (c, _, _), p in zip(chosen, priors)]
    final = [q for _, q, _ in chosen]
    preds = predict_many(
        final_priors, final, inference=inference, seed=seed, calibrations=cals, chunk=chunk, width=width
    )
    for pred, (_, _, record) in zip(preds, chosen):
        pred.strength = record
    if recalibrate:
        preds = _recalibrated(preds, priors, chosen, checks, inference, seed, chunk, width)
    return preds


def _batch_scoring(priors, queries, candidates, inference, seed, cut=None) -> Scoring:
    """:func:`score_strengths` in the chunks and width the final fits will share."""
    chunk, width = batch_bucket(max(len(queries), 1)), fit_width(queries)
    return score_strengths(
        priors, queries, candidates=candidates, inference=inference, seed=seed, chunk=chunk, width=width, cut=cut
    )


def predict_auto_each(
    priors,
    queries,
    combines=("choose", "mix"),
    *,
    candidates=None,
    inference: InferenceConfig = InferenceConfig(),
    seed: int = 0,
    recalibrate: bool = True,
    cut: str | None = None,
) -> dict:
    """:func:`predict_auto_many` for each of ``combines`` from one set of scoring fits:
    combine -> its predictions (the same as separate calls, at one scoring's cost)."""
    queries = list(queries)
    priors = list(priors) if isinstance(priors, (list, tuple)) else [priors] * len(queries)
    scoring = _batch_scoring(priors, queries, candidates, inference, seed, cut)
    kw = dict(candidates=candidates, inference=inference, seed=seed, recalibrate=recalibrate, scoring=scoring)
    return {c: predict_auto_many(priors, queries, combine=c, **kw) for c in combines}


def _mixed(priors, scoring: Scoring, inference, seed, recalibrate) -> list[MixturePrediction]:
    """``combine="mix"`` of :func:`predict_auto_many`: the kept candidates of every query
    as flat lists of components (final fits in one batch, then the spread of each
    recalibrated on its own check fit by :func:`_recalibrated`), grouped per query."""
    comps, comp_priors, comp_checks, owner, kept_all = [], [], [], [], []
    for i, ((grid, query, _task, fits, check_task), record) in enumerate(zip(scoring.plans, scoring.records)):
        kept = better_half(grid, record["scores"]) if record["rule"] != "fallback" else None
        kept = fallback_mixture(grid, query) if kept is None else kept
        kept_all.append(kept)
        for cand in kept:
            comps.append((cand, cand.query(query), {**cand.to_dict(), "rule": record["rule"]}))
            comp_priors.append(priors[i])
            fit = fits[grid.index(cand)] if fits is not None and scoring.shares_check(i) else None
            comp_checks.append((fit, check_task[cand.name]))
            owner.append(i)
    preds = predict_many(
        [c.prior(p) for (c, _, _), p in zip(comps, comp_priors)],
        [q for _, q, _ in comps],
        inference=inference,
        seed=seed,
        calibrations=[p.calibration if c.independent else None for (c, _, _), p in zip(comps, comp_priors)],
        chunk=scoring.chunk,
        width=scoring.width,
    )
    for pred, (_, _, record) in zip(preds, comps):
        pred.strength = record
    if recalibrate:
        preds = _recalibrated(preds, comp_priors, comps, comp_checks, inference, seed, scoring.chunk, scoring.width)
    out = []
    for i, (kept, record) in enumerate(zip(kept_all, scoring.records)):
        parts = [p for p, o in zip(preds, owner) if o == i]
        names = [c.name for c in kept]
        mix = {
            "chosen": "mix(" + "+".join(names) + ")",
            "combine": "mix",
            **record,
            "kept": names,
            "weights": {n: 1.0 / len(names) for n in names},
        }
        if recalibrate:
            mix["spread"] = {n: p.strength["spread"] for n, p in zip(names, parts)}
        out.append(MixturePrediction(tuple(parts), mix))
    return out


def _recalibrated(preds, priors, chosen, checks, inference, seed, chunk, width) -> list[Prediction]:
    # queries whose choice fitted nothing but that have check values: one fit each, in its
    # own call (the final fits' chunks stay as they were, so their draws do too)
    todo = [i for i, (fit, task) in enumerate(checks) if fit is None and task is not None]
    if todo:
        cands = [chosen[i][0] for i in todo]
        extra = predict_many(
            [c.prior(priors[i]) for c, i in zip(cands, todo)],
            [checks[i][1][0] for i in todo],
            inference=inference,
            seed=seed,
            calibrations=[priors[i].calibration if c.independent else None for c, i in zip(cands, todo)],
            chunk=chunk,
            width=width,
        )
        checks = list(checks)
        for i, fit in zip(todo, extra):
            checks[i] = (fit, checks[i][1])
    out = []
    for pred, (fit, task) in zip(preds, checks):
        rule = "none" if task is None else task[4]
        k, record = check_factor(fit, task, rule)
        if k != 1.0:
            strength = pred.strength
            pred = dataclasses.replace(pred, spread=np.full(len(pred.horizon), k))
            pred.strength = strength
        pred.strength = {**pred.strength, "spread": record}
        out.append(pred)
    return out


def predict_auto(
    prior: CurvePrior, values, mask=None, horizon=None, *, candidates=None, inference=InferenceConfig(), seed=0, **kw
) -> Prediction:
    """:func:`predict_auto_many` for one target (``kw``: the other :class:`Query` fields)."""
    query = Query(values, mask, horizon, **kw)
    return predict_auto_many(prior, [query], candidates=candidates, inference=inference, seed=seed)[0]


__all__ = [
    "CHECK_CUT",
    "CUTS",
    "FULL_GRID",
    "MIN_EPOCHS",
    "MIXED_GRID",
    "MIN_FINISHED",
    "SHAPE_GRID",
    "Candidate",
    "Scoring",
    "better_half",
    "fallback_mixture",
    "Query",
    "check_factor",
    "choose",
    "default_grid",
    "predict_auto",
    "predict_auto_each",
    "predict_auto_many",
    "score_strengths",
    "scoring_task",
]
