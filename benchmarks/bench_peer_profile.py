"""Where the time of nax's forward + backward goes on this CPU, per compiled operation (issue 16, item 3).

One process pinned to one core traces ``--reps`` calls of the jitted ``value_and_grad`` of
``bench_peer.py``'s network (nax specialised) with ``jax.profiler`` and sums the XLA:CPU thunk
durations of the trace per kind of operation, read from the optimised HLO:

* ``conv_forward``, ``conv_input_grad``, ``conv_kernel_grad``: convolutions, told apart by their
  window (a kernel gradient's window is the image) and their ``transpose(jvp(...))`` metadata;
  ``library`` says which ran in YNNPACK (``ynn_fusion``) and which in XLA's own (Eigen) kernel;
* ``transpose``: loop fusions that transpose an image-sized array (the layouts the kernel
  gradients need: channels first, or batch next to the channels);
* ``batch_norm_and_elementwise``: every other fusion (batch-norm statistics and their
  gradients, ReLU masks, additions, the optimiser is not in this program).

Per kind: milliseconds per call (trace wall time on the one core, so a loaded machine inflates
all kinds alike; read the shares) and the number of operations. ``--per-edge`` also profiles the
cell as it was before its conv edges were grouped (``bench_peer_gap.PerEdgeCell``).

    python benchmarks/bench_peer_profile.py [--presets cpu] [--json benchmarks/results/peer_profile.json]
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import pathlib
import re
import sys
import tempfile
import time

os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1])  # one core, before jax starts threads
_flags = os.environ.get("XLA_FLAGS", "").split()
os.environ["XLA_FLAGS"] = " ".join(f for f in _flags if "force_host_platform_device_count" not in f)
HERE = pathlib.Path(__file__).resolve().parent
sys.path[1:1] = [str(HERE.parent), str(HERE)]

import bench_peer as bp  # noqa: E402
import bench_peer_gap as gap  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from nax import space, train  # noqa: E402


def _kinds(hlo: str) -> dict[str, tuple[str, str]]:
    """Instruction name -> (kind, library) for every top-level instruction of the HLO text."""
    bodies = {m.group(1): m.group(2) for m in re.finditer(r"^(%\S+) .*?\{\n(.*?)\n\}", hlo, re.S | re.M)}
    out = {}
    for line in hlo.splitlines():
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (\S+)", line)
        if not m:
            continue
        called = re.search(r"calls=(%[\w.\-]+)", line)
        full = line + "\n" + (bodies.get(called.group(1), "") if called else "")
        lib = "ynnpack" if "__ynn_fusion" in line else "xla"
        convs = [x for x in full.splitlines() if " convolution(" in x]
        if convs:
            window = re.search(r"window=\{size=(\S+?)[ }]", convs[0]).group(1)
            if window not in ("1x1", "3x3"):
                kind = "conv_kernel_grad"
            elif "transpose(jvp" in full:
                kind = "conv_input_grad"
            else:
                kind = "conv_forward"
        elif " transpose(" in full and re.search(r"= f32\[\d+,\d+,\d+,\d+\]", line):
            kind = "transpose"
        else:
            kind = "batch_norm_and_elementwise"
        out[m.group(1)] = (kind, lib)
    return out


def profile(preset: str, reps: int, cell=None) -> dict:
    cfg = bp._config(preset)
    _, shape, batch = bp.PRESETS[preset]
    enc = space.nb201.from_string(bp.ARCH)
    xs, ys = bp._batches(preset)
    tr = train.Trainer(bp.NUM_CLASSES, cfg, enc)
    st = tr.init(jax.random.key(0), enc, shape)
    x, y = jnp.asarray(xs[0]), jnp.asarray(ys[0])

    def loss_grad(st, x, y):
        def loss(p):
            logits, nv = tr.model.apply(
                {"params": p, "batch_stats": st["batch_stats"]}, x, train=True, mutable=["batch_stats"]
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), nv

        return jax.value_and_grad(loss, has_aux=True)(st["params"])

    with gap._cell(cell):
        fn = jax.jit(loss_grad)
        kinds = _kinds(fn.lower(st, x, y).compile().as_text())
        for _ in range(2):
            jax.block_until_ready(fn(st, x, y))
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(reps):
                jax.block_until_ready(fn(st, x, y))
        (path,) = glob.glob(f"{d}/**/*.trace.json.gz", recursive=True)
        events = [e for e in json.load(gzip.open(path))["traceEvents"] if e.get("ph") == "X"]
    ms, count = collections.Counter(), collections.Counter()
    for e in events:
        if e["name"] in kinds:
            kind, lib = kinds[e["name"]]
            key = f"{kind}/{lib}" if kind.startswith("conv") else kind
            ms[key] += e["dur"] / 1e3 / reps
            count[key] += 1 / reps
    total = sum(ms.values())
    return {
        "preset": preset,
        "batch": batch,
        "cell": "per_edge" if cell else "grouped",
        "total_ms": round(total, 2),
        "ms": {k: round(v, 2) for k, v in ms.most_common()},
        "share": {k: round(v / total, 3) for k, v in ms.most_common()},
        "ops": {k: round(count[k]) for k, _ in ms.most_common()},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["cpu"], choices=list(bp.PRESETS))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--per-edge", action="store_true", help="also the cell before its conv edges were grouped")
    ap.add_argument("--json", type=pathlib.Path, default=HERE / "results" / "peer_profile.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = {"profiles": [], "setup": {"threads": 1, "reps": args.reps, "timer": "jax.profiler trace, thunk wall time"}}
    for p in args.presets:
        for cell in [None, gap.PerEdgeCell] if args.per_edge else [None]:
            out["profiles"].append(profile(p, args.reps, cell))
            print(out["profiles"][-1], flush=True)
    from nax import jsonio
    from nax.provenance import provenance

    out["setup"].update(load_avg=os.getloadavg(), wall_s=round(time.perf_counter() - t0, 1))
    out["provenance"] = provenance(paths=["nax", "benchmarks/bench_peer_profile.py", "benchmarks/bench_peer_gap.py"])
    args.json.write_text(jsonio.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
