"""Data benchmark: time to prepare and load each bundled dataset, and batch-iterator throughput.

Run: ``nice -n 10 python benchmarks/bench_data.py [--out benchmarks/results/data.json]``.
Datasets are prepared in a fresh temporary data dir (the Debian sources are taken from
the system or from ``$NAX_DATA_DIR/sources``), so the numbers include a full TFDS build.
Throughput is one full training epoch of ``data.batches`` (batch 128, shuffled), median
of ``--repeats`` epochs.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import shutil
import statistics
import tempfile
import time

from nax import data, jsonio


def _time_epoch(arrays: data.Arrays, batch_size: int, image_size, fit: str, repeats: int) -> tuple[float, int]:
    times, n = [], 0
    for epoch in range(repeats):
        t0 = time.perf_counter()
        n = sum(1 for _ in data.batches(arrays, batch_size, seed=0, epoch=epoch, image_size=image_size, fit=fit))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "data.json"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args(argv)

    results = []
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="nax_bench_data_"))
    try:
        src = data.sources.source_files("opencv_digits", data.data_dir())
        if src:
            (tmp / "sources" / "opencv_digits").mkdir(parents=True)
            shutil.copy(src[0], tmp / "sources" / "opencv_digits" / "digits.png")
        print(f"{'dataset':14s} {'prepare s':>9s} {'load train s':>12s} {'train images':>12s}")
        loaded = {}
        for name in data.NAMES:
            if not data.source_available(name, tmp):
                print(f"{name:14s} skipped: source missing ({data.info(name).install})")
                continue
            t0 = time.perf_counter()
            data.prepare(name, tmp)
            t_prep = time.perf_counter() - t0
            t0 = time.perf_counter()
            loaded[name] = data.load(name, "train", data_dir=tmp)
            t_load = time.perf_counter() - t0
            print(f"{name:14s} {t_prep:9.2f} {t_load:12.2f} {len(loaded[name]):12,d}")
            results.append(
                {
                    "kind": "prepare",
                    "dataset": name,
                    "prepare_s": t_prep,
                    "load_train_s": t_load,
                    "train_examples": len(loaded[name]),
                }
            )

        print(f"\n{'dataset':14s} {'image':>7s} {'fit':>6s} {'batches/s':>10s} {'images/s':>10s} {'epoch s':>8s}")
        for name, arrays in loaded.items():
            h, w = arrays.images_NHWC.shape[1:3]
            cases = [(None, "auto"), ((32, 32), "auto")]
            if (h, w) != (28, 28):
                cases.append(((28, 28), "resize"))
            for size, fit in cases:
                sec, n_batches = _time_epoch(arrays, args.batch_size, size, fit, args.repeats)
                hw = size or (h, w)
                mode = "none" if size is None else ("pad" if fit == "auto" and hw[0] >= h and hw[1] >= w else "resize")
                row = {
                    "kind": "batches",
                    "dataset": name,
                    "image": f"{hw[0]}x{hw[1]}",
                    "fit": mode,
                    "batch_size": args.batch_size,
                    "batches_per_s": n_batches / sec,
                    "images_per_s": n_batches * args.batch_size / sec,
                    "epoch_s": sec,
                }
                results.append(row)
                print(
                    f"{name:14s} {row['image']:>7s} {mode:>6s} {row['batches_per_s']:10.0f} "
                    f"{row['images_per_s']:10.0f} {sec:8.3f}"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.platform(), "python": platform.python_version(), "repeats": args.repeats}
    out.write_text(jsonio.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
