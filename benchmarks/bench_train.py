"""Training throughput and compile time, one device vs two, specialised vs supernet form.

For each dataset (mnist5k, fashion_mnist at their native 28x28), form (a network
specialised to one cell; the compile-once supernet whose encoding is an input) and number
of devices (1; 2 fake CPU devices via XLA_FLAGS, run in a subprocess because the device
count is fixed at start-up): compile time of the train step and steady-state training
images/second of the "cpu" preset (C=8, N=1, batch 128). Then the point of the
compile-once form: 20 different architectures trained one epoch each, specialised
(one compilation per architecture) vs supernet (one compilation in all).

    python benchmarks/bench_train.py [--steps 20] [--json benchmarks/results/train.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def worker(datasets: list[str], steps: int, twenty: bool) -> list[dict]:
    import jax

    from nax import space, train

    out = []
    for ds in datasets:
        cfg = train.preset("cpu", train_limit=128 * (steps + 1), val_limit=256, evaluate_test=False)
        splits = train.load_splits(ds, cfg)
        enc = space.nb201.from_string(ARCH)
        x, y = splits.train_images, splits.train_labels
        for form in ("specialised", "supernet"):
            c = cfg.replace(form=form)
            train._shared_trainer.cache_clear()
            tr = train.get_trainer(splits.num_classes, c, enc)
            st = tr.init(jax.random.key(0), enc, x.shape[1:])
            t0 = time.perf_counter()
            st, m = tr.train_step(st, x[:128], y[:128], enc, 0.1)
            jax.block_until_ready(m)
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for i in range(steps):
                b = slice(128 * (i + 1), 128 * (i + 2))
                st, m = tr.train_step(st, x[b], y[b], enc, 0.1)
            jax.block_until_ready(m)
            dt = time.perf_counter() - t0
            out.append(
                {
                    "dataset": ds,
                    "form": form,
                    "devices": jax.local_device_count(),
                    "image": list(x.shape[1:]),
                    "compile_s": round(compile_s, 2),
                    "images_per_s": round(steps * 128 / dt, 1),
                }
            )
            print(json.dumps(out[-1]), file=sys.stderr)
    if twenty:
        cfg = train.preset("cpu", epochs=1, train_limit=1280, val_limit=256, evaluate_test=False)
        splits = train.load_splits("mnist5k", cfg)
        encs = space.nb201.sample(jax.random.key(11), 20)
        for form in ("specialised", "supernet"):
            train._shared_trainer.cache_clear()
            t0 = time.perf_counter()
            for e in encs:
                train.train_architecture(e, splits, cfg.replace(form=form))
            out.append(
                {
                    "dataset": "mnist5k",
                    "form": form,
                    "devices": jax.local_device_count(),
                    "twenty_archs_one_epoch_s": round(time.perf_counter() - t0, 1),
                }
            )
            print(json.dumps(out[-1]), file=sys.stderr)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--datasets", nargs="+", default=["mnist5k", "fashion_mnist"])
    ap.add_argument("--json", type=pathlib.Path, default=pathlib.Path("benchmarks/results/train.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--twenty", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.datasets, args.steps, args.twenty)))
        return 0

    results = []
    for n_dev in (1, 2):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_dev}")
        cmd = [sys.executable, __file__, "--worker", "--steps", str(args.steps), "--datasets", *args.datasets]
        if n_dev == 1:
            cmd.append("--twenty")
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode:
            print(res.stderr, file=sys.stderr)
            return res.returncode
        results += json.loads(res.stdout.strip().splitlines()[-1])

    print(f"\n{'dataset':<14}{'form':<13}{'devices':>8}{'compile s':>11}{'images/s':>10}")
    for r in results:
        if "images_per_s" in r:
            print(
                f"{r['dataset']:<14}{r['form']:<13}{r['devices']:>8}{r['compile_s']:>11.2f}{r['images_per_s']:>10.0f}"
            )
    tw = {r["form"]: r["twenty_archs_one_epoch_s"] for r in results if "twenty_archs_one_epoch_s" in r}
    if tw:
        print(
            f"\n20 architectures x 1 epoch (mnist5k, 1,280 images): specialised {tw['specialised']:.1f} s, "
            f"supernet {tw['supernet']:.1f} s, ratio {tw['specialised'] / tw['supernet']:.1f}x"
        )
    from nax import jsonio

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(jsonio.dumps({"results": results, "cpus": os.cpu_count()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
