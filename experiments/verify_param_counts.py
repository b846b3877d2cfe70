"""Build every NAS-Bench-201 cell (C=16, N=5) and compare its parameter count with the table.

Counted from shapes alone (``jax.eval_shape``), for 10, 100 and 120 classes (cifar10,
cifar100, imagenet16-120). ``--mode full`` builds every whole network with
``nax.models.build`` (about 70 ms each on an idle 2-core machine: ~55 minutes for
46,875). ``--mode cells`` (default) builds each cell's Flax ``Cell`` module at the three
stage widths and adds the skeleton (stem, reductions, head) built once per class count:
network = skeleton + N x (cell at C + cell at 2C + cell at 4C). That identity is checked
in the same run by full builds of ``--full-sample`` cells, and in the test suite.
The table's ``params_mb`` is millions of parameters rounded to 6 decimals. For a few cells
the table's seed rows disagree with each other; a cell counts as matching when the built
count equals the value of its rows, and the report lists how many cells had
disagreeing rows and which of their values the built network equals.

    python experiments/verify_param_counts.py --config full --json benchmarks/results/param_counts.json
    python experiments/verify_param_counts.py --config quick --json runs/param_counts_quick.json   # 60 cells, seconds

The JSON also records the config, the command and the provenance (``nax.provenance``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import time

import numpy as np
import pandas as pd
from tqdm import tqdm

from nax import jsonio, models, space
from nax.provenance import provenance

CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet16-120": 120}
DEFAULT_TABLE = (
    pathlib.Path(os.environ.get("NAX_SHARED_DATA", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
    / "nb201"
    / "nb201_200epoch.csv"
)


@dataclasses.dataclass(frozen=True)
class Config:
    """Which cells are checked and how. ``limit`` None: all 15,625 cells (in enumeration
    order); ``seed`` picks the ``full_sample`` cells fully built to check the decomposition."""

    name: str
    limit: int | None = None
    mode: str = "cells"
    full_sample: int = 100
    seed: int = 0

    @property
    def command(self) -> str:
        return f"python experiments/verify_param_counts.py --config {self.name}"


CONFIGS = {
    "full": Config("full"),
    "quick": Config("quick", limit=60, full_sample=3),
}


def _full_count(enc, k: int) -> int:
    return models.param_count(models.build(enc, k, channels=16, cells_per_stage=5))


def _cell_counter():
    """Count = skeleton(k) + 5 * sum over stage widths of the built Cell module's parameters."""
    import functools

    import jax
    import jax.numpy as jnp

    skeleton = {k: _full_count(np.zeros(6, np.int32), k) for k in CLASSES.values()}  # all-'none' cells own nothing

    @functools.cache
    def cell_params(ops: tuple, c: int) -> int:
        cell = models.Cell(ops, c)
        x = jax.ShapeDtypeStruct((1, 8, 8, c), jnp.float32)
        shapes = jax.eval_shape(lambda key, x: cell.init(key, x, train=False), jax.random.key(0), x)
        return int(sum(np.prod(l.shape) for l in jax.tree.leaves(shapes.get("params", {}))))

    def count(enc, k):
        ops = tuple(models.OPS[i] for i in enc)
        return skeleton[k] + 5 * sum(cell_params(ops, 16 * 2**s) for s in range(3))

    return count


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="full")
    ap.add_argument("--table", type=pathlib.Path, default=DEFAULT_TABLE)
    ap.add_argument("--limit", type=int, default=None, help="override the config: check only the first N cells")
    ap.add_argument("--json", type=pathlib.Path, default=None)
    ap.add_argument("--mode", choices=("cells", "full"), default=None, help="override the config's mode")
    ap.add_argument(
        "--full-sample",
        type=int,
        default=None,
        help="override the config: cells fully built to check the decomposition (cells mode)",
    )
    args = ap.parse_args(argv)
    cfg = CONFIGS[args.config]
    overrides = {
        k: v
        for k, v in (("limit", args.limit), ("mode", args.mode), ("full_sample", args.full_sample))
        if v is not None
    }
    cfg = dataclasses.replace(cfg, **overrides)
    counter = _full_count if cfg.mode == "full" else _cell_counter()

    df = pd.read_csv(args.table)
    values = df.groupby(["arch", "dataset"]).params_mb.agg(lambda s: sorted(set(s))).to_dict()
    cells = space.nb201.enumerate()[: cfg.limit]
    report = {
        ds: {"cells": 0, "match": 0, "mismatch": [], "rows_disagree": 0, "rows_disagree_match_majority": 0}
        for ds in CLASSES
    }
    t0 = time.perf_counter()
    for enc in tqdm(cells, desc="building cells", unit="cell", mininterval=5):
        arch = space.nb201.to_string(enc)
        for ds, k in CLASSES.items():
            built = round(counter(enc, k) / 1e6, 6)
            table = values[(arch, ds)]
            r = report[ds]
            r["cells"] += 1
            if built in table:
                r["match"] += 1
            else:
                r["mismatch"].append({"arch": arch, "built": built, "table": table})
            if len(table) > 1:
                r["rows_disagree"] += 1
                rows = df[(df.arch == arch) & (df.dataset == ds)].params_mb
                r["rows_disagree_match_majority"] += int(rows.value_counts().index[0] == built)
    seconds = time.perf_counter() - t0
    decomposition_checked = 0
    if cfg.mode == "cells":
        rng = np.random.default_rng(cfg.seed)
        for enc in cells[rng.choice(len(cells), min(cfg.full_sample, len(cells)), replace=False)]:
            for k in CLASSES.values():
                assert counter(enc, k) == _full_count(enc, k), (space.nb201.to_string(enc), k)
                decomposition_checked += 1
        print(f"decomposition network = skeleton + cells verified on {decomposition_checked} full builds")
    print(f"\n{'dataset':<16}{'classes':>8}{'cells':>8}{'match':>8}{'mismatch':>10}{'rows disagree':>15}")
    for ds, r in report.items():
        print(f"{ds:<16}{CLASSES[ds]:>8}{r['cells']:>8}{r['match']:>8}{len(r['mismatch']):>10}{r['rows_disagree']:>15}")
    print(f"{seconds:.0f} s for {len(cells) * 3} built networks ({seconds / max(1, len(cells) * 3) * 1e3:.1f} ms each)")
    out = {
        "results": [
            {
                "dataset": ds,
                "num_classes": CLASSES[ds],
                **{k: (len(v) if k == "mismatch" else v) for k, v in r.items()},
                "mismatches": r["mismatch"][:20],
            }
            for ds, r in report.items()
        ],
        "seconds": seconds,
        "mode": cfg.mode,
        "decomposition_checked": decomposition_checked,
        "config": dataclasses.asdict(cfg),
        "command": cfg.command,
        "seed": cfg.seed,
        "table": args.table.name,
        **provenance(paths=("nax", "experiments/verify_param_counts.py")),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(jsonio.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
