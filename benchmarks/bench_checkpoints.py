"""What checkpointing every epoch costs (seconds, bytes), and that pause/resume changes nothing.

For the ``metadata`` and ``cpu`` training presets on the bundled ``digits`` dataset (one
architecture, seed 0, the process's default devices):

1. the reference: an uninterrupted run without checkpoints;
2. the same run checkpointing after every epoch (``nax.checkpoints``): seconds per save,
   bytes per checkpoint, bytes on disk at the end (0: a completed run keeps none);
3. the run paused after half its epochs and resumed in a new ``RunCheckpoints``: seconds
   to restore, and whether the curve (train loss, validation accuracy and loss per epoch)
   and test accuracy equal the reference's bit for bit;
4. for ``metadata``: whether the reference reproduces the curve recorded for this
   architecture in ``nax/metadata/journal.jsonl`` (same preset, trained before the
   checkpoint code existed).

    python benchmarks/bench_checkpoints.py [--presets metadata cpu] [--json benchmarks/results/checkpoints.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO))  # benchmark the checkout this file is in
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def recorded_curve(arch: str, dataset: str) -> list | None:
    """The curve of ``arch`` on ``dataset`` in the shipped meta-dataset's journals, or None."""
    for path in sorted((REPO / "nax" / "metadata").glob("journal*.jsonl")):
        for line in path.read_text().splitlines()[1:]:
            rec = json.loads(line)
            if rec.get("arch") == arch and rec.get("dataset") == dataset:
                return [(m["train_loss"], m["val_accuracy"], m["val_loss"]) for m in rec["curve"]]
    return None


def measure_state(preset: str, num_classes: int, image_shape: tuple, repeats: int) -> dict:
    """Checkpoint cost on a state of the preset's shapes filled with random values (no
    training, no compilation: ``jax.eval_shape``): seconds to save (the training loop's
    share), to write (orbax, in the background), to restore; bytes on disk."""
    import jax

    from nax import checkpoints, models, space, train
    from nax.records import EpochMetrics
    from nax.steps import make_optimizer, make_steps

    cfg = train.preset(preset)
    enc = space.nb201.from_string(ARCH)
    steps = make_steps(models.build_supernet(num_classes, cfg.channels, cfg.cells_per_stage), make_optimizer(cfg), True)
    init = functools.partial(steps.init, image_shape=tuple(image_shape))
    shapes = jax.eval_shape(init, jax.random.key(0), jax.numpy.asarray(enc, jax.numpy.int32))
    rng = np.random.default_rng(0)  # random floats: incompressible, like trained weights
    leaves = [rng.standard_normal(x.shape).astype(x.dtype) for x in jax.tree.leaves(shapes)]
    curve = tuple(EpochMetrics(e, 0.5, 0.9, 0.4, 0.6) for e in range(1, cfg.epochs))
    save_s, write_s, restore_s, sizes = [], [], [], []
    with tempfile.TemporaryDirectory() as root:
        for i in range(repeats):
            ck = checkpoints.RunCheckpoints(root, "run")
            prog = checkpoints.Progress(i + 1, 10 * (i + 1), curve[: i + 1], 1.0, (0, 0))
            t0 = time.perf_counter()
            ck.save(leaves, prog, {"preset": preset})
            t1 = time.perf_counter()
            saved = ck.wait()
            t2 = time.perf_counter()
            save_s.append(t1 - t0)
            write_s.append(t2 - t1)
            sizes.append(saved.bytes)
            t0 = time.perf_counter()
            back, _ = checkpoints.RunCheckpoints(root, "run").restore(leaves, {"preset": preset})
            restore_s.append(time.perf_counter() - t0)
            assert all(np.array_equal(a, b) for a, b in zip(back, leaves))
        left = checkpoints.usage(root)
    med = lambda v: float(np.median(v))
    return {
        "preset": preset,
        "num_classes": num_classes,
        "image_shape": list(image_shape),
        "state_leaves": len(leaves),
        "state_bytes": int(sum(x.nbytes for x in leaves)),
        "repeats": repeats,
        "save_s_median": med(save_s),
        "write_s_median": med(write_s),
        "write_s_max": max(write_s),
        "restore_s_median": med(restore_s),
        "checkpoint_bytes": max(sizes),
        "root_bytes_after": left.bytes,
        "root_runs_after": left.runs,
        "load_after": os.getloadavg(),
    }


def measure(preset: str, dataset: str) -> dict:
    import jax

    from nax import checkpoints, space, train

    class Timed(checkpoints.RunCheckpoints):
        """Times each save (the training loop's share: host copy, hash), each background
        write (orbax), each restore, and records each checkpoint's size."""

        def __init__(self, *a):
            super().__init__(*a)
            self.save_s, self.write_s, self.save_bytes, self.restore_s = [], [], [], []

        def save(self, *a, **kw):
            t0 = time.perf_counter()
            super().save(*a, **kw)
            self.save_s.append(time.perf_counter() - t0)

        def _write(self, *a, **kw):
            t0 = time.perf_counter()
            out = super()._write(*a, **kw)
            self.write_s.append(time.perf_counter() - t0)
            self.save_bytes.append(out.bytes)
            return out

        def resume(self, *a, **kw):
            t0 = time.perf_counter()
            out = super().resume(*a, **kw)
            self.restore_s.append(time.perf_counter() - t0)
            return out

    cfg = train.preset(preset)
    splits = train.load_splits(dataset, cfg)
    enc = space.nb201.from_string(ARCH)
    strip = lambda r: [(m.train_loss, m.val_accuracy, m.val_loss) for m in r.curve]
    train.train_architecture(enc, splits, cfg.replace(epochs=1, evaluate_test=False))  # compile outside the timings

    t0 = time.perf_counter()
    ref = train.train_architecture(enc, splits, cfg)
    ref_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as root:
        ck = Timed(root, "run")
        t0 = time.perf_counter()
        with_ck = train.train_architecture(enc, splits, cfg, checkpoints=ck)
        ck_s = time.perf_counter() - t0
        left = checkpoints.usage(root)

        half = cfg.epochs // 2
        first = Timed(root, "paused")
        paused = train.train_architecture(enc, splits, cfg, checkpoints=first, until_epoch=half)
        paused_usage = checkpoints.usage(root)
        second = Timed(root, "paused")
        resumed = train.train_architecture(enc, splits, cfg, checkpoints=second, resume=True)

    recorded = recorded_curve(ARCH, dataset) if preset == "metadata" else None
    state = train.get_trainer(splits.num_classes, cfg).init(jax.random.key(0), enc, splits.train_images.shape[1:])
    return {
        "preset": preset,
        "dataset": dataset,
        "arch": ARCH,
        "epochs": cfg.epochs,
        "devices": jax.local_device_count(),
        "state_leaves": len(jax.tree.leaves(state)),
        "state_bytes": sum(x.nbytes for x in jax.tree.leaves(state)),
        "epoch_s_mean": sum(m.epoch_s for m in ref.curve) / len(ref.curve),
        "run_s_without": ref_s,
        "run_s_with": ck_s,
        "saves": len(ck.save_s),
        "save_s_mean": sum(ck.save_s) / len(ck.save_s),
        "save_s_max": max(ck.save_s),
        "write_s_mean": sum(ck.write_s) / len(ck.write_s),
        "write_s_max": max(ck.write_s),
        "checkpoint_bytes": max(ck.save_bytes),
        "bytes_left_after_completion": left.bytes,
        "paused_status": paused.status,
        "paused_epochs": paused.epochs_done,
        "paused_root_bytes": paused_usage.bytes,
        "paused_root_runs": paused_usage.runs,
        "restore_s": second.restore_s[0],
        "resumed_from_epoch": second.resumed_epoch,
        "resumed_curve_identical": strip(resumed) == strip(ref) and resumed.test_accuracy == ref.test_accuracy,
        "checkpointed_curve_identical": strip(with_ck) == strip(ref),
        "reproduces_recorded_curve": None if recorded is None else strip(ref) == recorded,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=["metadata", "cpu"])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--repeats", type=int, default=7, help="saves per preset in the state-only measurement")
    p.add_argument("--state-only", action="store_true", help="only the checkpoint cost on random states (no training)")
    p.add_argument("--json", type=pathlib.Path, default=REPO / "benchmarks" / "results" / "checkpoints.json")
    args = p.parse_args(argv)

    from nax import jsonio
    from nax.provenance import provenance

    load_before = os.getloadavg()
    out = {
        "command": f"python benchmarks/bench_checkpoints.py --presets {' '.join(args.presets)} --dataset {args.dataset}"
        + (" --state-only" if args.state_only else ""),
        "state_only": [],
        "results": [],
        "load_before": load_before,
        "cpus": os.cpu_count(),
    }

    def write():  # after every measurement: a partial file if the machine runs out of time
        out["load_after"] = os.getloadavg()
        out.update(provenance(paths=["nax/checkpoints.py", "nax/train.py", "benchmarks/bench_checkpoints.py"]))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(jsonio.dumps(out, indent=1) + "\n")

    from nax import data

    info = data.info(args.dataset)
    for name in args.presets:
        from nax import train

        size = train.preset(name).image_size or info.image_shape[:2]
        r = measure_state(name, info.num_classes, (*size, info.image_shape[2]), args.repeats)
        out["state_only"].append(r)
        write()
        print(
            f"{name:>8} state ({r['state_bytes'] / 1e3:.0f} kB): save {r['save_s_median']:.3f} s,"
            f" background write {r['write_s_median']:.3f} s, restore {r['restore_s_median']:.3f} s,"
            f" {r['checkpoint_bytes'] / 1e3:.0f} kB on disk",
            flush=True,
        )
    if args.state_only:
        return
    for name in args.presets:
        r = measure(name, args.dataset)
        out["results"].append(r)
        write()
        print(
            f"{r['preset']:>8}: epoch {r['epoch_s_mean']:.2f} s, save {r['save_s_mean']:.3f} s (max {r['save_s_max']:.3f}),"
            f" background write {r['write_s_mean']:.3f} s,"
            f" {r['checkpoint_bytes'] / 1e3:.0f} kB, restore {r['restore_s']:.3f} s,"
            f" resumed identical {r['resumed_curve_identical']}, recorded {r['reproduces_recorded_curve']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
