"""Posterior-predictive extrapolation of a batch of partial curves.

:func:`predict` fits the ``transfer`` model (or ``no_transfer`` when ``prior`` is None)
jointly on the query curves and any ``context`` curves of the same target dataset, with
masking for curves of different observed lengths, and returns a :class:`Prediction`.
:func:`predict_many` makes many such predictions (target datasets, cutoffs, candidate
priors) in one compiled program. The point prediction is :attr:`Prediction.point`, the
median of the predictive draws (see its docstring for why not the mean).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from nax.curves import basis, models
from nax.curves import inference as inference_lib
from nax.curves.calibration import Calibration
from nax.curves.inference import InferenceConfig
from nax.curves.observations import DatasetScale, dataset_scale, prepare
from nax.curves.padding import batch_bucket, fit_width, pad, row_bucket, seen_width  # noqa: F401 (fit_width: API)
from nax.curves.prediction import Prediction, compose_draws  # noqa: F401 (re-exported)
from nax.curves.prior import CurvePrior


@dataclasses.dataclass
class Query:
    """One prediction to make: the arguments of :func:`predict` for one target dataset.

    ``scale``: None (the natural scale), a :class:`DatasetScale`, or ``"dataset"`` (fitted
    on these values, :func:`nax.curves.observations.dataset_scale`). ``finished``: [M, T]
    complete runs of the target, used only to choose the transfer strength
    (:mod:`nax.curves.strength`); ``minimize`` None: the prior's direction.
    """

    values: np.ndarray
    mask: np.ndarray | None = None
    horizon: int | np.ndarray | None = None
    epochs: np.ndarray | None = None
    minimize: bool | None = None
    context: np.ndarray | None = None
    context_horizon: int | None = None
    scale: DatasetScale | str | None = None
    finished: np.ndarray | None = None

    def replace(self, **changes) -> Query:
        return dataclasses.replace(self, **changes)


def _inputs(q: Query, prior: CurvePrior | None):
    """The model-scale arrays of a query (its context appended) and its prepared rows."""
    minimize = q.minimize if q.minimize is not None else (prior.minimize if prior is not None else False)
    scale = q.scale
    if isinstance(scale, str):
        if scale != "dataset":
            raise ValueError(f"scale must be None, a DatasetScale or 'dataset', got {scale!r}")
        scale = dataset_scale(q.values, q.mask, minimize=minimize)
    query = prepare(q.values, q.mask, epochs=q.epochs, horizon=q.horizon, minimize=minimize, scale=scale)
    y, m, t = query.y, query.mask, query.t
    if q.context is not None and np.size(q.context):
        horizon = q.context_horizon if q.context_horizon is not None else int(query.horizon.max())
        ctx = prepare(q.context, None, horizon=horizon, minimize=minimize, scale=scale)
        width = max(y.shape[1], ctx.y.shape[1])
        widen = lambda a, w, c=0: np.pad(a, ((0, 0), (0, w - a.shape[1])), constant_values=c)
        y = np.concatenate([widen(y, width), widen(ctx.y, width)])
        m = np.concatenate([widen(m, width), widen(ctx.mask, width)])
        t = np.concatenate([widen(t, width, 1.0), widen(ctx.t, width, 1.0)])
    return query, (y, m, t), minimize, scale


def _prediction(query, result, model, prior, calibration, families, minimize, scale, seed, method) -> Prediction:
    n = query.num_curves
    z = models.curve_params(model, result.latents, prior=None if prior is None else prior.model_prior())[:, :n]
    if not bool(jnp.isfinite(z).all()):
        # report, never crash: non-finite draws are dropped; with none left the caller sees ok=False
        finite = np.asarray(jnp.isfinite(z).all(axis=(1, 2)))
        result.diagnostics["ok"] = False
        result.diagnostics["problems"].append(f"{int((~finite).sum())} non-finite draws dropped")
        z = z[finite] if finite.any() else jnp.zeros((1,) + z.shape[1:])
    # where each query curve was last seen, for the extrapolation noise
    last = np.argmax(np.cumsum(query.mask, axis=1), axis=1)
    rows_n = np.arange(n)
    if calibration is None and prior is not None:
        calibration = prior.calibration
    return Prediction(
        t_obs=query.t[rows_n, last].astype(np.float64),
        y_last=query.y[rows_n, last].astype(np.float64),
        calibration=calibration,
        z=z,
        horizon=query.horizon,
        families=families,
        minimize=minimize,
        seed=seed,
        model=model,
        method=method,
        diagnostics=result.diagnostics,
        seconds=result.seconds,
        scale=scale,
    )


def predict(
    prior: CurvePrior | None,
    values,
    mask=None,
    horizon=None,
    *,
    context=None,
    context_horizon=None,
    epochs=None,
    minimize: bool | None = None,
    inference: InferenceConfig = InferenceConfig(),
    seed: int = 0,
    calibration: Calibration | None = None,
    scale: DatasetScale | str | None = None,
) -> Prediction:
    """Predict where ``N`` partially observed runs of one target dataset will end.

    ``values``: [N, T] observed values (NaN/masked where unobserved; epochs 1..T unless
    ``epochs`` [T] is given); ``mask``: bool [N, T] (default: finite values);
    ``horizon``: epochs of full training, int or int [N] (default: last column epoch).
    ``context``: [M, Tc] other curves of the target dataset (complete or partial, NaN
    padded, epochs 1..Tc, horizon ``context_horizon`` defaulting to ``horizon``) that
    inform the dataset's level jointly. ``prior=None`` fits ``no_transfer`` instead.
    ``inference``: how (SVI, fast, or NUTS; steps, draws). Inference problems are in
    ``diagnostics``; ``seed`` seeds the fit and the predictive's noise draws.
    ``calibration``: the extrapolation noise to use instead of the prior's (one adapted to
    the target, :func:`nax.curves.calibration.adapt`); ignored for ``no_transfer``.
    ``scale``: see :class:`Query`.

    Decreasing curves (overfitting) are outside the model, whose expected curve is
    non-decreasing: such a run is predicted around its level, pulled towards the prior's
    typical final value. A constant curve is predicted to stay near its value.
    """
    q = Query(values, mask, horizon, epochs, minimize, context, context_horizon, scale)
    query, arrays, minimize, scale = _inputs(q, prior)
    # pad the batch with unobserved rows to a bucketed size: a search calls this with a
    # growing context, and every new batch shape would compile a new program (SVI only:
    # for NUTS the extra rows would be extra dimensions to sample)
    method = inference.method
    rows = row_bucket(len(arrays[0])) if method == "svi" else len(arrays[0])
    y, m, t = pad(arrays, rows, arrays[0].shape[1])
    families = prior.families if prior is not None else basis.DEFAULT_FAMILIES
    data = (jnp.asarray(y), jnp.asarray(m), jnp.asarray(t))
    model = "no_transfer" if prior is None else "transfer"
    args = data if prior is None else data + (prior.model_prior(),)
    result = inference_lib.fit(model, args, {"families": families}, inference, seed=seed)
    calibration = None if prior is None else calibration
    return _prediction(query, result, model, prior, calibration, families, minimize, scale, seed, method)


def predict_many(
    priors,
    queries,
    *,
    inference: InferenceConfig = InferenceConfig(),
    seed: int = 0,
    calibrations=None,
    chunk: int | None = None,
    width: int | None = None,
) -> list[Prediction]:
    """:func:`predict` for many :class:`Query` at once (target datasets, cutoffs, candidate
    priors), as few compiled programs as possible: one per model (``transfer`` for the
    queries with a prior, ``no_transfer`` for those without) and curve families, vmapped
    over the queries, with rows and epochs padded to buckets shared by the batch (epochs
    after the last one observed in the batch are dropped: they carry no likelihood).
    ``chunk``: run the fits in batches of exactly this many (the last padded), so that
    calls of different sizes - a strength choice's scoring fits, then its final ones -
    reuse one compiled program instead of compiling one per batch size (None: one batch
    per model, padded to :func:`batch_bucket`); ``width``: at least this many epoch columns
    (:func:`fit_width`), for the same reason.

    ``priors``: one :class:`CurvePrior` (or None) for all, or a list aligned with
    ``queries``; ``calibrations``: None or a list of per-query calibrations (as
    :func:`predict`'s, but also used by a ``no_transfer`` query). Every fit uses ``seed``, so a query equals its :func:`predict` when
    the padded shapes agree. SVI only. ``Prediction.seconds`` is each query's share of its
    batch.
    """
    queries = list(queries)
    if not isinstance(priors, (list, tuple)):
        priors = [priors] * len(queries)
    if len(priors) != len(queries):
        raise ValueError(f"{len(priors)} priors for {len(queries)} queries")
    calibrations = [None] * len(queries) if calibrations is None else list(calibrations)
    inference = inference.replace(method="svi")
    out: list[Prediction | None] = [None] * len(queries)
    batches: dict = {}
    for i, p in enumerate(priors):
        key = ("no_transfer", basis.DEFAULT_FAMILIES) if p is None else ("transfer", p.families)
        batches.setdefault(key, []).append(i)
    for (model, families), idx in batches.items():
        prepared = [_inputs(queries[i], priors[i]) for i in idx]
        rows = row_bucket(max(len(a[0]) for _, a, _, _ in prepared))
        # a 20 % prefix of a 52-epoch table is fitted on 16 columns, not 64 (the masked
        # columns add exact zeros to the ELBO; bucketed, so few widths compile)
        width = max(row_bucket(max(seen_width(a[1]) for _, a, _, _ in prepared)), width or 0)
        padded = [pad(a, rows, width) for _, a, _, _ in prepared]
        # the batch axis padded too (copies of the first fit, dropped): which candidates a
        # strength choice keeps varies from call to call, and each batch size would compile
        size = chunk or batch_bucket(len(padded))
        padded += [padded[0]] * (-(-len(padded) // size) * size - len(padded))
        args = tuple(np.stack([p[k] for p in padded]) for k in range(3))
        if model == "transfer":
            dicts = [priors[i].model_prior() for i in idx]
            dicts += [dicts[0]] * (len(padded) - len(dicts))
            args += ({k: np.stack([np.asarray(d[k]) for d in dicts]) for k in dicts[0]},)
        fits = []
        for start in range(0, len(padded), size):
            part = jax.tree.map(lambda a, at=slice(start, start + size): jnp.asarray(a[at]), args)
            fits += inference_lib.fit_many(model, part, (0,) * len(part), {"families": families}, inference, seed=seed)
        for i, (query, _, minimize, scale), fit in zip(idx, prepared, fits):
            out[i] = _prediction(query, fit, model, priors[i], calibrations[i], families, minimize, scale, seed, "svi")
    return out
