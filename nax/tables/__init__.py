"""Curve tables and architecture tables: load, validate, save.

Two CSV formats (``docs/design.md``, "Formats"), one module each, read by one CSV reader
(``csvio``):

* **Curve table** (``curves``): one row per training run, per-epoch values in columns
  ``<prefix><epoch>`` (default ``acc_``), other columns metadata; a :class:`CurveTable`.
* **Architecture table** (``archs``): long format ``arch,dataset,accuracy`` (or ``score``)
  plus optional columns (``seed``, ``train_time_s``, ...); an :class:`ArchTable`. Any
  finite real score is accepted with its direction declared (``lower_is_better``).

    from nax import tables
    ct = tables.load_curves("curves.csv")                    # accuracies in [0, 1]
    at = tables.load_archs("nb201.csv", aggregate="mean")    # percent, detected
    losses = tables.load_archs("loss.csv", lower_is_better=True)   # ranked reversed
"""

from nax.tables.archs import UNITS, ArchTable, load_archs, save_archs
from nax.tables.csvio import MISSING, TableWarning
from nax.tables.curves import CurveTable, concat, load_curves, save_curves

__all__ = [
    "TableWarning",
    "CurveTable",
    "ArchTable",
    "load_curves",
    "save_curves",
    "concat",
    "load_archs",
    "save_archs",
    "MISSING",
    "UNITS",
]
