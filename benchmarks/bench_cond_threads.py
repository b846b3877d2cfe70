"""Does a convolution inside ``lax.cond`` use the second core? (the select form's 2-thread gap)

The select compile-once form runs an ungrouped edge's convolution and batch norm under
``lax.cond(is_conv, ...)`` (``cells._conv_bn``, K16d). ``peer.json`` shows it within 14-18 %
of the specialised form per CPU-second at one thread, but it gains far less from a second
thread (+17-30 % against +56-71 %). This isolates one edge: ReLU + 3x3 convolution + batch
norm, forward and backward (``jax.value_and_grad``), at the ``cpu`` (128x28x28x8) and ``nb201``
(64x32x32x16) shapes, in four forms:

- ``plain``: no conditional (``cells._conv``, JAX's own backward);
- ``cond``: ``lax.cond(True, cells._conv_bn, cells._no_conv, ...)``, as the select form runs it;
- ``cond_conv_only``: only the convolution (``cells._relu_conv``) inside the conditional, the
  batch norm outside;
- ``cond_split``: the convolution inside one conditional and its backward's two convolutions
  (input and kernel gradients) in two separate conditionals, the transposes outside.

Each form in a fresh process pinned to 1 and to 2 cores (XLA sizes its thread pool from the
affinity), median ms per step over ``--steps`` steps, ``--repeats`` processes each:

    python benchmarks/bench_cond_threads.py [--json benchmarks/results/cond_threads.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO))  # benchmark the checkout this file is in
SHAPES = {"cpu": (128, 28, 28, 8), "nb201": (64, 32, 32, 16)}
FORMS = ("plain", "cond", "cond_conv_only", "cond_split")


def _step(form: str):
    import jax
    import jax.numpy as jnp

    from nax.cells import _conv, _conv_bn, _no_conv, _relu_conv, batch_norm

    def raw(r, k, half):
        pad = ((half, half), (half, half))
        return jax.lax.conv_general_dilated(r, k, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    @jax.custom_vjp
    def split_conv(r, k, p):
        zero = lambda r, k: jnp.zeros((*r.shape[:-1], k.shape[-1]), r.dtype)
        return jax.lax.cond(p, lambda r, k: raw(r, k, k.shape[0] // 2), zero, r, k)

    def split_bwd(res, g):
        r, k, p = res
        half = k.shape[0] // 2
        flipped = jnp.transpose(k[::-1, ::-1], (0, 1, 3, 2))
        rt, gt = jnp.transpose(r, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3))
        dr = jax.lax.cond(p, lambda: raw(g, flipped, half), lambda: jnp.zeros(r.shape, r.dtype))
        dk_shape = (r.shape[-1], k.shape[0], k.shape[1], k.shape[-1])
        dkt = jax.lax.cond(p, lambda: raw(rt, gt, half), lambda: jnp.zeros(dk_shape, r.dtype))
        return dr, jnp.transpose(dkt, (1, 2, 0, 3)), None

    split_conv.defvjp(lambda r, k, p: (split_conv(r, k, p), (r, k, p)), split_bwd)
    zero = lambda h, k: jnp.zeros((*h.shape[:-1], k.shape[-1]), h.dtype)

    def loss(h, k, scale, bias, is_conv):
        if form == "plain":
            y = batch_norm(_conv(h, k), scale, bias, None)[0]
        elif form == "cond":
            y = jax.lax.cond(is_conv, _conv_bn, _no_conv, h, k, scale, bias, None)[0]
        elif form == "cond_conv_only":
            y = batch_norm(jax.lax.cond(is_conv, _relu_conv, zero, h, k), scale, bias, None)[0]
        else:
            y = batch_norm(split_conv(jax.nn.relu(h), k, is_conv), scale, bias, None)[0]
        return jnp.sum(y * y)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))


def measure(shape_name: str, form: str, steps: int) -> float:
    import jax
    import jax.numpy as jnp
    import numpy as np

    shape = SHAPES[shape_name]
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, shape[-1], shape[-1])) * 0.1, jnp.float32)
    scale, bias = jnp.ones(shape[-1]), jnp.zeros(shape[-1])
    f = _step(form)
    jax.block_until_ready(f(h, k, scale, bias, True))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(h, k, scale, bias, True))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=pathlib.Path, default=REPO / "benchmarks" / "results" / "cond_threads.json")
    ap.add_argument("--measure", nargs=2, metavar=("SHAPE", "FORM"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps({"ms": measure(*args.measure, args.steps)}))
        return 0
    from nax import jsonio
    from nax.provenance import provenance

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f)
    cores = sorted(os.sched_getaffinity(0))[:2]
    rows, load = [], [os.getloadavg()[0]]
    print(f"{'shape':6} {'form':15} {'1 thread ms':>12} {'2 threads ms':>13} {'2-thread speed-up':>18}")
    for shape in SHAPES:
        for form in FORMS:
            ms = {}
            for n in (1, 2):
                cmd = ["taskset", "-c", ",".join(map(str, cores[:n])), sys.executable, __file__]
                cmd += ["--measure", shape, form, "--steps", str(args.steps)]
                runs = []
                for _ in range(args.repeats):
                    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                    runs.append(json.loads(done.stdout.strip().splitlines()[-1])["ms"])
                ms[n] = runs
                load.append(os.getloadavg()[0])
            row = {
                "shape": shape,
                "form": form,
                "ms_1_thread": [round(v, 2) for v in ms[1]],
                "ms_2_threads": [round(v, 2) for v in ms[2]],
                "speedup_2_threads": round(statistics.median(ms[1]) / statistics.median(ms[2]), 2),
            }
            rows.append(row)
            print(
                f"{shape:6} {form:15} {statistics.median(ms[1]):12.1f} {statistics.median(ms[2]):13.1f} "
                f"{row['speedup_2_threads']:18.2f}"
            )
    result = {
        "rows": rows,
        "setup": {"shapes": SHAPES, "steps": args.steps, "repeats": args.repeats, "load_1min": load},
        "provenance": provenance(["nax", "benchmarks/bench_cond_threads.py"]),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(jsonio.dumps(result, indent=1) + "\n")
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
