"""GPU evidence for many architectures per program: img/s for K = 1, 8, 64 at the nb201 preset.

At NAS-Bench-201's size (C=16, N=5, 32x32x3) one cell is far too small to fill a GPU;
``nax.population`` steps K cells per program. This script times, interleaved, the
specialised network of one cell, the compile-once form ``train_architecture`` uses, and
populations of K = 1, 8, 64 cells (``bench_population.measure``), and writes
``benchmarks/results/gpu.json`` with the ratios ``population_64_over_population_1``
(target >= 10) and ``compile_once_over_specialised``. Batch 64 per cell (the batch of
issue 16's nb201 measurement): K = 64 x 256 images of the one-hot supernet's activations
would not fit one device. A K that runs out of memory is recorded as an error row.

Budget: five compilations of the nb201 network and 2 rounds x 5 contenders x 3 s,
under 5 minutes on one GPU (compile times are in the JSON).

    python benchmarks/bench_gpu.py                 # on a GPU machine: benchmarks/results/gpu.json
    python benchmarks/bench_gpu.py --smoke --out /tmp/gpu_smoke.json   # any machine, seconds
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import bench_population  # noqa: E402

DEFAULTS = {
    "presets": ["nb201"],
    "ks": [1, 8, 64],
    "batch": 64,
    "rounds": 2,
    "min_seconds": 3.0,
    "out": pathlib.Path("benchmarks/results/gpu.json"),
}


def main(argv=None) -> dict:
    return bench_population.run(argv, defaults=DEFAULTS, doc=__doc__)


if __name__ == "__main__":
    main()
