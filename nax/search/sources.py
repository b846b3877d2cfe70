"""The tables a search reads and the datasets it transfers from.

A search reads either curve tables (by default the shipped meta-dataset, ``nax/metadata``)
or one architecture table (e.g. NAS-Bench-201's); its sources are the configured
transfer-from datasets, else every dataset of the tables but the target. ``config`` is a
``nax.search.config.SearchConfig`` (not imported: config imports this module).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from nax import space as space_lib
from nax import tables

METADATA_DIR = Path(__file__).resolve().parent.parent / "metadata"


def _table_kind(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"table {path} not found")
    with open(path, newline="") as fh:
        header = [h.strip() for h in next(csv.reader(fh), [])]
    if {"arch", "dataset"} <= set(header) and {"accuracy", "score"} & set(header):
        return "arch"
    return "curve"


def table_paths(config) -> list[Path]:
    """The tables of this search: given, or the shipped meta-dataset."""
    if config.tables:
        return [Path(t) for t in config.tables]
    # the curve tables (archs.csv holds the same final accuracies, derived from them)
    paths = [p for p in sorted(METADATA_DIR.glob("*.csv")) if _table_kind(p) == "curve"]
    if not paths:
        raise FileNotFoundError(
            f"no meta-dataset in {METADATA_DIR}; give --table CSV (a curve table or "
            "an architecture table such as NAS-Bench-201's)"
        )
    return paths


def load_tables(config):
    """``("curve", CurveTable)`` or ``("arch", ArchTable)`` of all the search's tables."""
    paths = table_paths(config)
    kinds = {_table_kind(p) for p in paths}
    if kinds == {"arch"}:
        if len(paths) != 1:
            raise ValueError("give one architecture table (or curve tables)")
        return "arch", tables.load_archs(
            paths[0], space=space_lib.get(config.space), lower_is_better=config.lower_is_better
        )
    if config.lower_is_better:
        raise ValueError(
            "--lower-is-better is for an architecture table of scores (losses); "
            "the search maximises the accuracies of curve tables"
        )
    if kinds != {"curve"}:
        raise ValueError("tables must be all curve tables or one architecture table")
    return "curve", tables.concat([tables.load_curves(p) for p in paths])


def final_accuracies(kind: str, table, space) -> tables.ArchTable:
    """An architecture table of final accuracies (a curve table's last observed values);
    a table of scores higher-is-better (a loss negated: the model ranks them)."""
    if kind == "arch":
        if table.unit != "score":
            return table
        return tables.ArchTable.from_encodings(
            table.encodings,
            table.datasets,
            table.oriented,
            space=space,
            meta=table.meta,
            unit="score",
            source=table.source,
        )
    if "arch" not in table.meta:
        raise ValueError(f"curve table {table.source} has no 'arch' column: cannot transfer selection from it")
    full = table.lengths == table.lengths.max() if len(table.lengths) else np.zeros(0, bool)
    sub = table.subset(full)
    return tables.ArchTable.from_encodings(
        space.from_strings([str(a) for a in sub.meta["arch"]]),
        sub.datasets,
        sub.final,
        space=space,
        source=table.source,
    )


def _datasets(kind: str, table) -> list[str]:
    return sorted(set(map(str, table.datasets)))


def sources_of(config, kind: str, table) -> list[str]:
    """The transfer-from datasets: as configured, else every table dataset but the target."""
    present = _datasets(kind, table)
    if config.transfer_from:
        missing = [d for d in config.transfer_from if d not in present]
        if missing:
            raise ValueError(f"transfer-from datasets {missing} are not in the tables; present: {', '.join(present)}")
        return list(config.transfer_from)
    return [d for d in present if d != config.dataset]
