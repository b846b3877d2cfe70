"""Training throughput and compile time of the three forms of the network, interleaved.

Contenders (same cell, same SGD step of the preset's ``TrainConfig``, same batches):

* ``specialised``: ``models.build(enc)``, one program per architecture;
* ``switch``: ``models.build_supernet(mix="switch")``: the encoding is an input of one
  program, each edge runs only its chosen op (``lax.switch``);
* ``onehot``: ``build_supernet(mix="onehot")``, what ``Trainer`` uses for ``form="supernet"``
  (the default): every op on every edge, mixed by one-hot weights.

Each is ``jax.jit(nax.steps.make_steps(...).train, donate_argnums=0)`` on one device (the
``Trainer``'s step; its shardings are trivial on one device), lowered and compiled ahead of
time (``compile_s``). Steps per round are calibrated once to about ``--round-s`` seconds;
then rounds run the contenders one after the other, order rotated each round, so load from
other processes falls on all alike; per round img/s, and the load average next to it.
Ratios are medians over rounds of the per-round ratio to ``specialised``. Inputs are
synthetic (normal images, uniform labels, fixed seed): throughput does not depend on pixels.
Presets and batches are those of ``bench_peer.py`` (nb201 at batch 64).

    python benchmarks/bench_train.py --quick            # metadata + cpu, 3 short rounds
    python benchmarks/bench_train.py                    # all presets, 5 rounds
    python benchmarks/bench_train.py --presets nb201 --rounds 3 --json /tmp/x.json
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(1, str(HERE.parent))  # benchmark the checkout this file is in
#: the strong cell of the earlier rows (5 conv3x3 edges and a skip) and a cell with every op kind
CELLS = {
    "conv": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "mixed": "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
}
NUM_CLASSES = 10
#: preset -> (nax.train preset, image shape HWC, batch), as bench_peer.py
PRESETS = {
    "metadata": ("metadata", (8, 8, 1), 128),
    "cpu": ("cpu", (28, 28, 1), 128),
    "nb201": ("nb201", (32, 32, 3), 64),
}
CONTENDERS = ("specialised", "switch", "onehot")
N_BATCHES = 4


def _stepper(preset: str, cell: str, contender: str):
    """(run(n) -> seconds, compile_s) for one contender; the state lives in a closure."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from nax import models, space, train
    from nax.steps import make_optimizer, make_steps

    name, shape, batch = PRESETS[preset]
    cfg = train.preset(name, batch_size=batch, image_size=None)
    enc = jnp.asarray(space.nb201.from_string(CELLS[cell]), jnp.int32)
    if contender == "specialised":
        model = models.build(np.asarray(enc), NUM_CLASSES, cfg.channels, cfg.cells_per_stage)
    else:
        model = models.build_supernet(NUM_CLASSES, cfg.channels, cfg.cells_per_stage, mix=contender)
    steps = make_steps(model, make_optimizer(cfg), supernet=contender != "specialised")
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((batch, *shape)).astype(np.float32) for _ in range(N_BATCHES)]
    ys = [rng.integers(0, NUM_CLASSES, batch).astype(np.int32) for _ in range(N_BATCHES)]
    state = jax.jit(steps.init, static_argnums=2)(jax.random.key(0), enc, shape)
    lr = np.float32(cfg.learning_rate)
    t0 = time.perf_counter()
    compiled = jax.jit(steps.train, donate_argnums=0).lower(state, xs[0], ys[0], enc, lr).compile()
    compile_s = time.perf_counter() - t0
    box = {"state": state}

    def run(n: int) -> float:
        t0 = time.perf_counter()
        m = None
        for i in range(n):
            box["state"], m = compiled(box["state"], xs[i % N_BATCHES], ys[i % N_BATCHES], enc, lr)
        jax.block_until_ready(m)  # one host sync per round, as the training loop dispatches ahead
        return time.perf_counter() - t0

    return run, compile_s


def bench(preset: str, cell: str, rounds: int, round_s: float) -> dict:
    batch = PRESETS[preset][2]
    runs, out = {}, {"preset": preset, "cell": cell, "batch": batch, "compile_s": {}, "steps": {}}
    for c in CONTENDERS:
        run, out["compile_s"][c] = _stepper(preset, cell, c)
        run(1)  # warm-up
        step_s = run(2) / 2
        out["steps"][c] = max(2, round(round_s / step_s))
        runs[c] = run
        print(f"{preset}/{cell}/{c}: compile {out['compile_s'][c]:.1f} s, {out['steps'][c]} steps/round", flush=True)
    per_round = []
    for r in range(rounds):
        order = CONTENDERS[r % 3 :] + CONTENDERS[: r % 3]
        row = {"load_before": round(os.getloadavg()[0], 2)}
        for c in order:
            row[c] = out["steps"][c] * batch / runs[c](out["steps"][c])
        row["load_after"] = round(os.getloadavg()[0], 2)
        per_round.append(row)
        print(f"  round {r}: " + ", ".join(f"{c} {row[c]:.1f}" for c in CONTENDERS) + f" (load {row['load_before']})")
    out["rounds"] = per_round
    out["img_s_median"] = {c: statistics.median(r[c] for r in per_round) for c in CONTENDERS}
    out["img_s_min"] = {c: min(r[c] for r in per_round) for c in CONTENDERS}
    out["over_specialised_median"] = {
        c: statistics.median(r[c] / r["specialised"] for r in per_round) for c in ("switch", "onehot")
    }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--cells", nargs="+", default=["conv"], choices=list(CELLS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--round-s", type=float, default=4.0, help="seconds per contender per round (calibrated)")
    ap.add_argument("--quick", action="store_true", help="metadata and cpu presets, 3 rounds of ~2 s")
    ap.add_argument("--json", type=pathlib.Path, default=HERE / "results" / "train.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.presets, args.rounds, args.round_s = ["metadata", "cpu"], 3, 2.0

    from nax import jsonio
    from nax.provenance import provenance

    t0 = time.perf_counter()
    results = [bench(p, c, args.rounds, args.round_s) for p in args.presets for c in args.cells]
    print(
        f"\n{'preset':<10}{'cell':<7}"
        + "".join(f"{c + ' img/s':>18}" for c in CONTENDERS)
        + "  switch/spec  onehot/spec"
    )
    for r in results:
        med = r["img_s_median"]
        ratio = r["over_specialised_median"]
        print(
            f"{r['preset']:<10}{r['cell']:<7}"
            + "".join(f"{med[c]:>18.1f}" for c in CONTENDERS)
            + f"{ratio['switch']:>13.2f}{ratio['onehot']:>13.2f}"
        )
    doc = {
        "results": results,
        "setup": {
            "command": "python benchmarks/bench_train.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "cells": CELLS,
            "rounds": args.rounds,
            "round_s": args.round_s,
            "wall_s": round(time.perf_counter() - t0, 1),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
        },
        "provenance": provenance(paths=["nax/models.py", "nax/steps.py", "benchmarks/bench_train.py"]),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(jsonio.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
