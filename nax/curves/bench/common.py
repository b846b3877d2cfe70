"""What the curve benchmarks share: curve tables per dataset, truncation, the
leave-one-dataset-out priors (a target is never among its prior's sources) and the
record every benchmark JSON carries (configuration and ``nax.provenance``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nax import tables as tables_lib
from nax.curves import calibration
from nax.curves import prior as prior_lib
from nax.curves.bench.families import load_tables, on_model_scale
from nax.curves.fitting import PRIOR_INFERENCE, fit_prior
from nax.curves.inference import InferenceConfig
from nax.curves.prior import CurvePrior
from nax.provenance import provenance


def load_datasets(
    paths: Sequence[str],
    *,
    prefix="acc_",
    dataset_column="training_dataset",
    minimize=False,
) -> dict:
    """Curve tables of every dataset in ``paths``: name -> trimmed ``CurveTable`` (a table
    whose curves move against the declared direction is refused,
    :func:`nax.curves.bench.families.check_direction`)."""
    return load_tables(paths, prefix=prefix, dataset_column=dataset_column, minimize=minimize)


def complete_runs(table) -> tables_lib.CurveTable:
    """Runs observed up to the table's last epoch (only they have a true final value)."""
    return table.subset(table.mask[:, -1])


def truncate(table, cutoff: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep the epochs ``<= cutoff * horizon`` (at least the first one): values, mask [N, T], columns kept."""
    horizon = int(table.epochs[-1])
    k = max(1, int(np.searchsorted(table.epochs, round(cutoff * horizon), side="right")))
    mask = table.mask.copy()
    mask[:, k:] = False
    return np.where(mask, table.values, np.nan), mask, k


def subsample(table, max_curves: int | None, seed: int):
    if max_curves is None or table.n_runs <= max_curves:
        return table
    rng = np.random.default_rng(seed)
    return table.subset(np.sort(rng.choice(table.n_runs, max_curves, replace=False)))


def sources_for(target: str, names) -> tuple[str, ...]:
    """The source datasets of ``target``: every other dataset (leave one out)."""
    return tuple(sorted(n for n in names if n != target))


def require_sources(train: dict, test: dict) -> None:
    """Refuse a run in which some target would have no other source dataset: its
    transfer rows would silently be missing."""
    alone = [name for name in test if not sources_for(name, train)]
    if alone:
        raise ValueError(
            f"transfer needs at least one source dataset other than the target; "
            f"{', '.join(alone)} has none among --train ({', '.join(sorted(train)) or 'empty'})"
        )


class Priors:
    """Leave-one-dataset-out priors, fitted once per set of source datasets.

    ``cache_dir``: priors are also saved there (JSON) and reused by a later command with
    the same source curves (names and values), fit settings and prior format version (both benchmarks need the
    same priors, and a fit takes minutes on a loaded machine).
    """

    def __init__(
        self,
        train: dict,
        *,
        seed: int,
        max_curves: int | None,
        calibrate: bool,
        inference: InferenceConfig = PRIOR_INFERENCE,
        log=print,
        cache_dir=None,
    ):
        self.train, self.log, self.cache = train, log, {}
        self.seed, self.max_curves, self.calibrate, self.inference = seed, max_curves, calibrate, inference
        self.cache_dir = None if cache_dir is None else Path(cache_dir)

    def _path(self, sources) -> Path | None:
        if self.cache_dir is None:
            return None
        settings = {"cutoffs": calibration.CUTOFFS, "bounds": calibration.BOUNDS}
        fit = {
            "seed": self.seed,
            "num_steps": self.inference.num_steps,
            "max_curves": self.max_curves,
            "calibrate": self.calibrate,
        }
        if self.inference != PRIOR_INFERENCE.replace(num_steps=self.inference.num_steps):
            fit["inference"] = self.inference.to_dict()
        # what the sources hold, not only their names: two families may name their
        # datasets alike (the meta-dataset's accuracy and loss columns of the same runs)
        data = hashlib.sha256()
        for n in sources:
            t = self.train[n]
            data.update(np.ascontiguousarray(t.values, np.float64).tobytes())
            data.update(np.ascontiguousarray(t.epochs, np.int64).tobytes())
            data.update(b"min" if t.minimize else b"max")
        key = {"sources": sources, "data": data.hexdigest(), "version": prior_lib.VERSION, "calibration": settings}
        key = json.dumps({**key, **fit}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        name = f"prior_{'+'.join(sources)}_{digest}.json"
        if len(name) > 200:  # file names end at 255 bytes; the digest covers the sources
            name = f"prior_{len(sources)}_sources_{digest}.json"
        return self.cache_dir / name

    def for_target(self, target: str) -> CurvePrior | None:
        """The prior of ``target``: fitted on every other dataset of the pool."""
        return self.for_sources(sources_for(target, self.train))

    def for_sources(self, sources) -> CurvePrior | None:
        """The prior fitted on the datasets ``sources`` of the pool (None: no sources).
        Sources of both directions are fitted on the model's scale (``exp(-loss)``)."""
        sources = tuple(sorted(sources))
        if not sources:
            return None
        if sources not in self.cache:
            path = self._path(sources)
            if path is not None and path.exists():
                self.log(f"prior on {', '.join(sources)} from {path}")
                self.cache[sources] = CurvePrior.load(path)
                return self.cache[sources]
            self.log(f"fitting prior on {', '.join(sources)}")
            tabs = [self.train[n] for n in sources]
            if len({t.minimize for t in tabs}) > 1:
                tabs = [on_model_scale(t) for t in tabs]
            prior = fit_prior(
                tabs,
                seed=self.seed,
                inference=self.inference,
                max_curves=self.max_curves,
                calibrate=self.calibrate,
            )
            self.log(f"  {prior.info['seconds']:.1f} s, {_fit_summary(prior.info['diagnostics'])}")
            cal = prior.calibration
            if cal is not None:
                self.log(f"  calibration log_a {cal.log_a:.3f} b {cal.b:.3f} c {cal.c:.3f} ({cal.fit['seconds']:.0f}s)")
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                prior.save(path)
            self.cache[sources] = prior
        return self.cache[sources]

    def info(self) -> dict:
        return {
            " + ".join(k): {
                **v.info,
                "calibration": None if v.calibration is None else v.calibration.to_dict(),
            }
            for k, v in self.cache.items()
        }


def setup(
    train_paths,
    test_paths,
    *,
    prefix,
    dataset_column,
    minimize,
    transfer: bool,
    seed,
    max_train_curves,
    calibrate,
    prior_inference,
    prior_cache,
    log,
) -> tuple[dict, dict, Priors]:
    """Source and target datasets of a benchmark, and the leave-one-out priors of its sources
    (``transfer``: refuse a target without another source dataset)."""
    load = {"prefix": prefix, "dataset_column": dataset_column, "minimize": minimize}
    train, test = load_datasets(train_paths, **load), load_datasets(test_paths, **load)
    if transfer:
        require_sources(train, test)
    priors = Priors(
        train,
        seed=seed,
        max_curves=max_train_curves,
        calibrate=calibrate,
        inference=prior_inference,
        log=log,
        cache_dir=prior_cache,
    )
    return train, test, priors


def meta(command: str, args: dict) -> dict:
    """The record of a benchmark run: the command, its configuration (the entry's arguments,
    e.g. ``locals()`` at its start; settings and families as dicts, paths as strings, ``log``
    left out) and provenance."""
    config = {k: _plain(v) for k, v in args.items() if k != "log"}
    return {"command": command, "config": config, **provenance(paths=["nax"])}


def _plain(value):
    if isinstance(value, InferenceConfig):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)  # Refit, Family
    if isinstance(value, (list, tuple)) and value and all(dataclasses.is_dataclass(v) for v in value):
        return [dataclasses.asdict(v) for v in value]
    return value


def _fit_summary(diag: dict) -> str:
    """One readable line of a fit's diagnostics (the JSON keeps them all)."""
    parts = [
        f"{k.replace('_', ' ')} {v:.6g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
        for k, v in diag.items()
        if k not in ("ok", "problems")
    ]
    status = "ok" if diag.get("ok", True) else "PROBLEMS: " + "; ".join(map(str, diag.get("problems", [])))
    return ", ".join(parts + [status])
