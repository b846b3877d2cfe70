"""Curve families and the folds of the curve benchmarks.

A *family* is a set of curve tables read the same way (``--family NAME=PATHS[:OPTIONS]``):
the four Baker et al. sets, the meta-dataset's accuracies, its training losses, the
LCBench tasks. Two protocols make folds of them:

* ``loo`` - leave one dataset out inside a family: each dataset of the family is a target,
  the family's other datasets its sources (the ``--train``/``--test`` benchmarks of one
  pool are this protocol with one unnamed family);
* ``cross-family`` - every dataset of one family is a target, the datasets of every
  *other* family are the sources. A family that holds the same runs as the target's under
  another metric (the same files read with another prefix: meta-dataset accuracies and
  losses) is left out of the target's sources: its curves are the target's runs, and
  would leak their outcome.

Sources whose direction (accuracy vs loss) differs from the target's need an explicit
declaration (``mixed_directions``); the prior is then fitted on every source on the
model's scale (accuracy as is, a loss as ``exp(-loss)``, :func:`on_model_scale`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nax import tables as tables_lib
from nax.curves.observations import to_model_scale


@dataclasses.dataclass(frozen=True)
class Family:
    """How to read one family's tables: value-column ``prefix``, the column naming each
    run's dataset (``dataset_column``, None: one dataset per file) and the direction."""

    name: str
    paths: tuple[str, ...]
    prefix: str = "acc_"
    dataset_column: str | None = "training_dataset"
    minimize: bool = False

    @property
    def direction(self) -> str:
        return "loss (lower is better)" if self.minimize else "accuracy (higher is better)"


def parse_family(spec: str) -> Family:
    """``NAME=PATH[,PATH...][:OPTION[,OPTION...]]``; options ``prefix=P``, ``column=C``
    (the dataset column; ``column=`` for one dataset per file) and ``minimize``.
    Example: ``meta_loss=a.csv,b.csv:prefix=train_loss_,minimize``."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"--family takes NAME=PATH[,PATH...][:OPTIONS], got {spec!r}")
    paths, _, options = rest.partition(":")
    kw: dict = {}
    for opt in filter(None, options.split(",")):
        key, has_value, value = opt.partition("=")
        if key == "prefix" and has_value and value:
            kw["prefix"] = value
        elif key == "column" and has_value:
            kw["dataset_column"] = value or None
        elif key == "minimize" and not has_value:
            kw["minimize"] = True
        else:
            raise ValueError(f"--family {name}: unknown option {opt!r} (prefix=P, column=C, minimize)")
    files = tuple(p for p in paths.split(",") if p)
    for path in files:
        if not Path(path).exists():
            raise FileNotFoundError(f"no such curve table: {path} (family {name})")
    return Family(name, files, **kw)


#: a table declared as one direction whose curves move the other way in at least this
#: share of its complete runs is refused (a loss read as an accuracy, or the reverse)
WRONG_WAY_SHARE = 0.8


def check_direction(table, where: str) -> None:
    """Refuse a table whose curves mostly move against its declared direction: the mean of
    the last third of each complete run's epochs vs the mean of its first third."""
    done = table.values[table.mask[:, -1]]
    if table.n_epochs < 3 or len(done) < 2:
        return
    third = max(1, table.n_epochs // 3)
    change = done[:, -third:].mean(1) - done[:, :third].mean(1)
    wrong = np.mean(change > 0) if table.minimize else np.mean(change < 0)
    if wrong >= WRONG_WAY_SHARE:
        said, seen = ("a loss", "rise") if table.minimize else ("an accuracy", "fall")
        fix = "drop --minimize / ':minimize'" if table.minimize else "declare it with --minimize / ':minimize'"
        raise ValueError(
            f"{where}: read as {said}, but its values {seen} in {wrong:.0%} of complete runs; "
            f"if that is its direction, {fix}"
        )


def load_tables(paths, *, prefix="acc_", dataset_column="training_dataset", minimize=False, taken=()) -> dict:
    """Curve tables of every dataset in ``paths``: name -> ``CurveTable`` (direction
    checked, :func:`check_direction`). A name in ``taken`` is an error."""
    out = {}
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", tables_lib.TableWarning)
            table = tables_lib.load_curves(path, prefix=prefix, dataset_column=dataset_column, minimize=minimize)
        check_direction(table, str(path))
        for name, sub in table.by_dataset().items():
            if name in out or name in taken:
                raise ValueError(f"dataset {name!r} appears in more than one file ({path})")
            out[name] = sub
    return out


def load_families(families) -> tuple[dict, dict]:
    """(datasets, members): every family's datasets in one pool, name -> ``CurveTable``,
    and family name -> its dataset names. A dataset name already taken by an earlier
    family is prefixed with its family (``meta_loss:digits``)."""
    names = [f.name for f in families]
    if len(set(names)) != len(names):
        raise ValueError(f"family names must differ: {', '.join(names)}")
    pool, members = {}, {}
    for fam in families:
        tabs = load_tables(fam.paths, prefix=fam.prefix, dataset_column=fam.dataset_column, minimize=fam.minimize)
        members[fam.name] = []
        for name, table in tabs.items():
            key = f"{fam.name}:{name}" if name in pool else name
            pool[key] = table
            members[fam.name].append(key)
    return pool, members


def same_runs(a: Family, b: Family) -> bool:
    """Whether two families read the same files (the same runs under another metric)."""
    return bool({Path(p).resolve() for p in a.paths} & {Path(p).resolve() for p in b.paths})


def on_model_scale(table):
    """``table`` on the model's scale as an accuracy-like table: a loss becomes
    ``exp(-loss)`` in (0, 1], higher is better; an accuracy table is returned as is."""
    if not table.minimize:
        return table
    values = np.where(table.mask, to_model_scale(np.where(table.mask, table.values, 0.0), True), np.nan)
    return dataclasses.replace(table, values=values, minimize=False, source=f"exp(-{table.source or 'loss'})")


@dataclasses.dataclass
class Fold:
    """Targets of one protocol and family, each with its source datasets."""

    protocol: str
    family: str | None
    targets: tuple[str, ...]
    sources: dict  # target -> tuple of source dataset names
    excluded: tuple[str, ...] = ()  # families left out of the sources (same runs)


def loo_folds(families, members: dict, *, max_targets: int | None = None, seed: int = 0) -> list[Fold]:
    """Leave one dataset out inside each family (``max_targets``: a seeded subset of each
    family's datasets as targets; every other dataset stays a source)."""
    out = []
    for fam in families:
        names = sorted(members[fam.name])
        if len(names) < 2:
            raise ValueError(
                f"transfer needs at least one other source dataset: family {fam.name} has only "
                f"{', '.join(names)} (leave one out needs two datasets)"
            )
        targets = _pick(names, max_targets, seed)
        out.append(Fold("loo", fam.name, targets, {t: tuple(n for n in names if n != t) for t in targets}))
    return out


def cross_family_folds(
    families, members: dict, *, max_targets: int | None = None, mixed_directions: bool = False, seed: int = 0
) -> list[Fold]:
    """Each family as the target, every other family's datasets as its sources, except a
    family with the same runs (:func:`same_runs`). Sources of another direction than the
    target need ``mixed_directions``; otherwise a ValueError naming their files."""
    out = []
    for fam in families:
        excluded = tuple(o.name for o in families if o is not fam and same_runs(fam, o))
        others = [o for o in families if o is not fam and o.name not in excluded]
        if not others:
            raise ValueError(
                f"transfer needs at least one other source dataset: family {fam.name} has no other family "
                f"to take sources from{' (same runs: ' + ', '.join(excluded) + ')' if excluded else ''}"
            )
        against = [o for o in others if o.minimize != fam.minimize]
        if against and not mixed_directions:
            raise ValueError(
                f"the sources {', '.join(p for o in against for p in o.paths)} are {against[0].direction} "
                f"curves, the target family {fam.name} ({', '.join(fam.paths)}) is {fam.direction}; "
                "declare --mixed-directions to transfer between them (on the model's scale)"
            )
        sources = tuple(sorted(n for o in others for n in members[o.name]))
        targets = _pick(sorted(members[fam.name]), max_targets, seed)
        out.append(Fold("cross-family", fam.name, targets, {t: sources for t in targets}, excluded))
    return out


def select_folds(
    families,
    members: dict,
    *,
    protocols: Sequence[str] = ("cross-family", "loo"),
    max_targets: int | None = None,
    mixed_directions: bool = False,
    target_families: Sequence[str] | None = None,
    seed: int = 0,
    log=print,
) -> list[Fold]:
    """The folds of ``protocols`` (cross-family first), only those whose target family is in
    ``target_families`` when given (every family stays a source of the others); logs the
    families each fold leaves out of its sources."""
    folds = []
    if "cross-family" in protocols:
        folds += cross_family_folds(families, members, max_targets=max_targets, mixed_directions=mixed_directions,
                                    seed=seed)  # fmt: skip
    if "loo" in protocols:
        folds += loo_folds(families, members, max_targets=max_targets, seed=seed)
    if target_families is not None:
        folds = [f for f in folds if f.family in target_families]
    for fold in folds:
        if fold.excluded:
            log(f"{fold.family}: sources exclude {', '.join(fold.excluded)} (the same runs under another metric)")
    return folds


def fold_record(folds: Sequence[Fold]) -> list[dict]:
    """What a benchmark's record says of its folds: targets, sources, excluded families."""
    return [
        {
            "protocol": f.protocol,
            "family": f.family,
            "targets": list(f.targets),
            "excluded": list(f.excluded),
            "sources": sorted(set(s for v in f.sources.values() for s in v)),
        }
        for f in folds
    ]


def _pick(names, k, seed) -> tuple[str, ...]:
    if k is None or len(names) <= k:
        return tuple(names)
    return tuple(sorted(np.random.default_rng(seed).choice(names, k, replace=False).tolist()))
