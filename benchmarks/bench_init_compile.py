"""What compiling a run's init step costs, at XLA's default LLVM level and at level 1.

Every run compiles its init program once (a specialised run per architecture; the
compile-once form once per process), before its first epoch. On XLA:CPU that program
(random bits and truncated normals for every parameter, the optimiser's zeros) takes
longer to compile at the default level than the training step (5-8 s quiet, 26-40 s on one
loaded core), and 1.6-3 s at level 1 with bitwise the same variables (``tests/test_train.py``); ``nax.steps.
init_compiler_options`` now asks for level 1. Each measurement is a fresh process (no
in-memory or persistent cache), so it is what a new run pays:

    python benchmarks/bench_init_compile.py [--presets metadata cpu nb201] [--json benchmarks/results/init_compile.json]

Also times the train step's first call (compile) in the same process, for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO))  # benchmark the checkout this file is in
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"
SHAPES = {"metadata": (8, 8, 1), "cpu": (28, 28, 1), "nb201": (32, 32, 3)}


def measure(preset: str, form: str, level: str) -> dict:
    """In this process: seconds of the init step's first call (compile + run) and the train step's."""
    import jax
    import numpy as np

    from nax import space, train
    from nax.steps import make_steps

    cfg = train.preset(preset, form=form)
    enc = space.nb201.from_string(ARCH)
    tr = train.Trainer(10, cfg, enc)
    if level == "default":  # the init step as it was: no compiler options
        tr._init = jax.jit(make_steps(tr.model, tr.tx, tr.supernet).init, out_shardings=tr.repl, static_argnums=(2,))
    shape = SHAPES[preset]
    t0 = time.perf_counter()
    state = jax.block_until_ready(tr.init(jax.random.key(0), enc, shape))
    init_s = time.perf_counter() - t0
    x = np.zeros((cfg.batch_size, *shape), np.float32)
    y = np.zeros(cfg.batch_size, np.int32)
    t0 = time.perf_counter()
    jax.block_until_ready(tr.train_step(state, x, y, enc, cfg.learning_rate))
    return {"init_first_call_s": round(init_s, 2), "train_first_call_s": round(time.perf_counter() - t0, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--json", type=pathlib.Path, default=REPO / "benchmarks" / "results" / "init_compile.json")
    ap.add_argument("--measure", nargs=3, metavar=("PRESET", "FORM", "LEVEL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return 0
    from nax import jsonio
    from nax.provenance import provenance

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f)
    rows, load = [], [os.getloadavg()[0]]
    print(f"{'preset':9} {'form':12} {'init (default)':>15} {'init (level 1)':>15} {'train step':>11}")
    for preset in args.presets:
        for form in ("specialised", "supernet"):
            out = {}
            for level in ("default", "level1"):
                cmd = [sys.executable, __file__, "--measure", preset, form, level]
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                out[level] = json.loads(done.stdout.strip().splitlines()[-1])
                load.append(os.getloadavg()[0])
            row = {
                "preset": preset,
                "form": form,
                "init_default_s": out["default"]["init_first_call_s"],
                "init_level1_s": out["level1"]["init_first_call_s"],
                "train_first_call_s": out["level1"]["train_first_call_s"],
            }
            rows.append(row)
            print(
                f"{preset:9} {form:12} {row['init_default_s']:15.1f} {row['init_level1_s']:15.1f} "
                f"{row['train_first_call_s']:11.1f}"
            )
    result = {
        "rows": rows,
        "setup": {
            "arch": ARCH,
            "load_1min": [round(v, 2) for v in load],
            "cpu_affinity": sorted(os.sched_getaffinity(0)),
        },
        "provenance": provenance(["nax", "benchmarks/bench_init_compile.py"]),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(jsonio.dumps(result, indent=1) + "\n")
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
