"""Speed of the tables layer on the real files in ../shared/data.

Target (issue 3): loading the NAS-Bench-201 table (15,625 cells x 3 datasets x seeds,
118,257 rows) takes under one second.

    nice -n 10 python benchmarks/bench_tables.py [--repeats 5] [--json benchmarks/results/tables.json]

Prints one line per operation (best and median wall time over the repeats, and the
process CPU time of the best run, which is what a shared machine perturbs least) and
writes ``{"results": [...], "machine": {...}}``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nax import __version__, jsonio, tables
from nax.provenance import provenance

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.0


def shared_data() -> Path:
    return Path(os.environ.get("NAX_SHARED_DATA") or ROOT / ".." / "shared" / "data").resolve()


def timed(fn, repeats: int) -> dict:
    """Best and median wall seconds over ``repeats`` calls, and CPU seconds of the best."""
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    best = int(np.argmin(walls))
    return {"best_s": walls[best], "median_s": statistics.median(walls), "cpu_s_of_best": cpus[best]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "tables.json")
    args = ap.parse_args(argv)

    data = shared_data()
    if not data.is_dir():
        print(f"shared data folder {data} absent (set NAX_SHARED_DATA): nothing to measure")
        return 1
    nb201 = data / "nb201" / "nb201_200epoch.csv"
    results = []

    def record(op: str, path: Path, rows: int, fn) -> None:
        r = {"op": op, "file": path.name, "rows": rows, "repeats": args.repeats, **timed(fn, args.repeats)}
        results.append(r)
        print(
            f"{op:<22} {path.name:<32} {rows:>8} {r['best_s']:>8.3f} {r['median_s']:>8.3f} {r['cpu_s_of_best']:>8.3f}"
        )

    print(f"{'op':<22} {'file':<32} {'rows':>8} {'best_s':>8} {'median_s':>8} {'cpu_s':>8}")
    for path in sorted((data / "curves" / "baker2018").glob("*.csv")):
        ct = tables.load_curves(path)
        record("load_curves", path, ct.n_runs, lambda p=path: tables.load_curves(p))
    at = tables.load_archs(nb201)
    record("load_archs", nb201, at.n, lambda: tables.load_archs(nb201))
    record("load_archs mean", nb201, at.n, lambda: tables.load_archs(nb201, aggregate="mean"))
    record("pivot", nb201, at.n, at.pivot)
    record("pandas.read_csv only", nb201, at.n, lambda: pd.read_csv(nb201))
    with tempfile.TemporaryDirectory() as tmp:
        record("save_archs", nb201, at.n, lambda: tables.save_archs(at, Path(tmp) / "a.csv"))

    best = next(r for r in results if r["op"] == "load_archs")["best_s"]
    verdict = "meets" if best < TARGET_S else "MISSES"
    print(f"NB201 load: best {best:.3f} s — {verdict} the {TARGET_S:.0f} s target")
    machine = {
        "nax": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "cpus": os.cpu_count(),
        "loadavg_1min_at_end": os.getloadavg()[0],
        "platform": platform.platform(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = provenance(paths=["nax/tables", "nax/space.py", "benchmarks/bench_tables.py"])
    payload = {"results": results, "target_s": TARGET_S, "machine": machine, "provenance": record}
    args.json.write_text(jsonio.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
