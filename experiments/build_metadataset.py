"""Build nax's own learning-curve meta-dataset: the same NB201 cells on every bundled dataset.

Every architecture is trained with one compiled program (the supernet form of
``nax.models``: the encoding is an input), so the whole run compiles once per image
shape. Each finished run is appended to ``<out>/journal.jsonl`` (fsync'd); a rerun skips
what the journal already holds, so a killed run resumes where it stopped and nothing is
trained twice. At the end the journal is turned into one curve table per dataset
(``<out>/<dataset>.csv``, columns ``acc_<epoch>``, ``train_loss_<epoch>``,
``epoch_s_<epoch>``) and one architecture table (``<out>/archs.csv``).

    python experiments/build_metadataset.py --config quick   # CPU test-sized (seconds)
    python experiments/build_metadataset.py --config full    # the shipped nax/metadata (about an hour on 2 cores)
    python experiments/build_metadataset.py --config gpu --population 64   # NB201 size on a GPU (README)

``--population K`` trains K cells per program (``nax.population``; same records within float
tolerance); slower on the 2-core CPU (``benchmarks/results/population.json``): default 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time

import jax
import numpy as np

from nax import __version__, data, journal, jsonio, population, space, train
from nax.provenance import provenance

S = space.nb201

#: TFDS catalog datasets of the gpu config, where prepared offline (``tfds build NAME`` once, online)
CATALOG = ("cifar10", "cifar100", "svhn_cropped")
#: examples cut from a catalog dataset's train split for validation (stratified, seeded as nax.data's splits)
CATALOG_VALIDATION = 5000

#: cells always included: the extremes of the space (all one op; disconnected; NB201's best)
HAND_PICKED = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|",  # disconnected, full of convs
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
)


@dataclasses.dataclass(frozen=True)
class Config:
    """What the meta-dataset is. ``command`` reproduces it."""

    name: str
    datasets: tuple[str, ...]
    num_archs: int  # random cells besides HAND_PICKED
    arch_seed: int
    train: train.TrainConfig
    command: str

    def archs(self) -> list[str]:
        rand = S.sample(jax.random.key(self.arch_seed), self.num_archs * 2)
        out = list(HAND_PICKED)
        for e in rand:
            s = S.to_string(e)
            if s not in out:
                out.append(s)
            if len(out) == len(HAND_PICKED) + self.num_archs:
                break
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["train"] = self.train.to_dict()
        return d


CONFIGS = {
    # the shipped meta-dataset: CPU-sized networks on stratified subsets at a common 8x8
    # (on 2 shared CPU cores the per-step cost at 8x8 is a tenth of that at 16x16)
    "full": Config(
        name="full",
        datasets=data.NAMES,
        num_archs=150,
        arch_seed=2019,
        train=train.PRESETS["metadata"],
        command="python experiments/build_metadataset.py --config full --out nax/metadata",
    ),
    # seconds on a laptop: for tests and smoke runs
    "quick": Config(
        name="quick",
        datasets=("digits", "mnist5k"),
        num_archs=3,
        arch_seed=2019,
        # the full config's training, shrunk: fewer epochs and images
        train=train.PRESETS["metadata"].replace(
            epochs=3, batch_size=64, train_limit=256, val_limit=128, eval_batch_size=256
        ),
        command="python experiments/build_metadataset.py --config quick --out runs/metadataset-quick",
    ),
    # for a GPU: NAS-Bench-201's network (C=16, N=5) and optimiser for its 12-epoch schedule,
    # images padded or resized to 32x32; bundled datasets whole plus the prepared catalog ones
    "gpu": Config(
        name="gpu",
        datasets=data.NAMES + CATALOG,
        num_archs=1000,
        arch_seed=2019,
        train=train.PRESETS["nb201"].replace(epochs=12, image_size=(32, 32), eval_batch_size=1000),
        command="python experiments/build_metadataset.py --config gpu --population 64 --out runs/metadataset-gpu",
    ),
}


# ---------------------------------------------------------------------------- catalog datasets
def tfds_dir(path=None) -> pathlib.Path:
    """Where prepared TFDS catalog datasets live: ``path``, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
    return pathlib.Path(path or os.environ.get("TFDS_DATA_DIR") or pathlib.Path.home() / "tensorflow_datasets")


def available(name: str, data_dir=None, catalog_dir=None) -> bool:
    """Whether ``name`` can be loaded here without the network (a bundled source or a prepared catalog dataset)."""
    if name in data.NAMES:
        return data.source_available(name, data_dir)
    return any((tfds_dir(catalog_dir) / name).glob("*/dataset_info.json"))


def catalog_splits(name: str, cfg: train.TrainConfig, catalog_dir=None) -> train.Splits:
    """A prepared TFDS catalog dataset as ``Splits``, read offline (``download=False``).

    ``tfds.data_source`` reads array_record files without TensorFlow; a dataset prepared
    as TFRecord is read with ``tfds.load`` (needs the ``tfds-catalog`` extra). Validation is
    a stratified, seeded cut of ``CATALOG_VALIDATION`` train examples; test is the catalog's
    test split; images are normalised with the train part's per-channel statistics.
    """
    import tensorflow_datasets as tfds

    root = str(tfds_dir(catalog_dir))

    def read(split):
        try:
            src = tfds.data_source(name, split=split, data_dir=root, download=False)
            recs = src.__getitems__(list(range(len(src))))
            return np.stack([r["image"] for r in recs]), np.array([r["label"] for r in recs], np.int32)
        except Exception:  # not array_record: the TFRecord path (TensorFlow)
            d = tfds.as_numpy(tfds.load(name, split=split, data_dir=root, download=False, batch_size=-1))
            return np.asarray(d["image"]), np.asarray(d["label"], np.int32)

    (x, y), (xte, yte) = read("train"), read("test")
    val, rest = data.stratified_split(y, [CATALOG_VALIDATION, len(y) - CATALOG_VALIDATION], seed=2019)
    num_classes, xf = int(max(y.max(), yte.max())) + 1, x[rest].astype(np.float64)
    mean, std = tuple(xf.mean((0, 1, 2))), tuple(xf.std((0, 1, 2)))

    def arrays(images, labels, split):
        a = data.Arrays(images, labels, num_classes, np.arange(len(labels)), mean, std, name, split)
        limit = {"train": cfg.train_limit, "validation": cfg.val_limit}.get(split)
        a = a.subset(limit, 0) if limit else a
        ((xb, yb),) = data.batches(a, len(a), seed=0, shuffle=False, image_size=cfg.image_size, drop_remainder=False)
        return np.asarray(xb, np.float32), np.asarray(yb, np.int32)

    xtr, ytr = arrays(x[rest], y[rest], "train")
    xva, yva = arrays(x[val], y[val], "validation")
    xt, yt = arrays(xte, yte, "test") if cfg.evaluate_test else (None, None)
    return train.Splits(name, num_classes, xtr, ytr, xva, yva, xt, yt)


# ---------------------------------------------------------------------------- journal
def _header(cfg: Config) -> dict:
    # through the JSON encoding, so it compares equal to a header read back from a journal
    return json.loads(jsonio.dumps({"kind": "nax-metadataset", "nax_version": __version__, "config": cfg.to_dict()}))


def read_journal(path: pathlib.Path) -> tuple[dict | None, list[train.RunRecord]]:
    """Header and records (``nax.journal``: a torn last line is dropped with a warning)."""
    if not path.exists():
        return None, []
    lines = journal.read(path)
    if not lines:
        return None, []
    return lines[0], [train.RunRecord.from_dict(d) for d in lines[1:]]


# ---------------------------------------------------------------------------- tables
def write_tables(cfg: Config, records: list[train.RunRecord], out: pathlib.Path) -> dict[str, pathlib.Path]:
    """One curve table per dataset plus ``archs.csv`` (final validation and test accuracy)."""
    import pandas as pd

    paths = {}
    E = cfg.train.epochs
    arch_rows = []
    for ds in cfg.datasets:
        recs = sorted((r for r in records if r.dataset == ds), key=lambda r: r.arch)
        rows = []
        for r in recs:
            test = None if r.test_accuracy is None else round(r.test_accuracy, 6)
            row = {
                "arch": r.arch,
                "training_dataset": ds,
                "seed": r.seed,
                "status": r.status,
                "num_params": r.num_params,
                "test_accuracy": test,
                "wall_s": round(r.wall_s, 3),
            }
            for prefix, field, digits in (
                ("acc_", "val_accuracy", 6),
                ("train_loss_", "train_loss", 6),
                ("epoch_s_", "epoch_s", 4),
            ):
                for e in range(1, E + 1):
                    m = r.curve[e - 1] if e <= len(r.curve) else None
                    row[f"{prefix}{e}"] = round(getattr(m, field), digits) if m else np.nan
            rows.append(row)
            arch_rows.append(
                {
                    "arch": r.arch,
                    "dataset": ds,
                    "accuracy": round(r.final_val_accuracy, 6),
                    "test_accuracy": test,
                    "num_params": r.num_params,
                    "train_time_s": round(r.wall_s, 3),
                }
            )
        if rows:
            p = out / f"{ds}.csv"
            pd.DataFrame(rows).to_csv(p, index=False)
            paths[ds] = p
    if arch_rows:
        p = out / "archs.csv"
        pd.DataFrame(arch_rows).to_csv(p, index=False)
        paths["archs"] = p
    return paths


# ---------------------------------------------------------------------------- main
def _journal_path(out: pathlib.Path, shard: tuple[int, int] | None) -> pathlib.Path:
    return out / ("journal.jsonl" if shard is None else f"journal-{shard[0]}of{shard[1]}.jsonl")


def read_all(out: pathlib.Path, cfg: Config) -> list[train.RunRecord]:
    """Records of every journal in ``out`` (shards included), checked against ``cfg``."""
    want = _header(cfg)
    done = []
    for p in sorted(out.glob("journal*.jsonl")):
        header, recs = read_journal(p)
        if header is not None and header != want:
            raise ValueError(f"{p} was written by another config or nax version; use another --out or delete it")
        done += recs
    return done


def _groups(todo: list[tuple[str, str]], k: int):
    """``(dataset, [arch, ...])`` with up to ``k`` archs of one dataset each, in ``todo``'s order."""
    by_ds: dict[str, list[str]] = {}
    for ds, a in todo:
        by_ds.setdefault(ds, []).append(a)
    for ds, archs in by_ds.items():
        for i in range(0, len(archs), k):
            yield ds, archs[i : i + k]


def run(
    cfg: Config,
    out: pathlib.Path,
    *,
    max_runs: int | None = None,
    data_dir=None,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    population_size: int = 1,
    catalog_dir=None,
) -> dict:
    """Train what the journals in ``out`` lack (at most ``max_runs`` now), then write the tables.

    ``shard=(i, n)`` trains only every n-th missing run starting at i and writes its own
    journal, so n processes (one per core) can build one meta-dataset together.
    ``population_size=K`` trains up to K cells of one dataset per program (``nax.population``).
    """
    if population_size < 1:
        raise ValueError(f"population size must be >= 1, got {population_size}")
    out.mkdir(parents=True, exist_ok=True)
    done = read_all(out, cfg)
    jpath = _journal_path(out, shard)
    # a new journal, or this shard's own reopened with a torn last line cut off
    writer = (
        journal.Journal.reopen(jpath)
        if jpath.exists() and jpath.stat().st_size
        else journal.Journal.create(jpath, _header(cfg))
    )

    archs = cfg.archs()
    have = {(r.dataset, r.arch) for r in done}
    todo = [(ds, a) for a in archs for ds in cfg.datasets if (ds, a) not in have]
    if shard is not None:
        todo = todo[shard[0] :: shard[1]]
    missing = [ds for ds in cfg.datasets if not available(ds, data_dir, catalog_dir)]
    if missing:
        print(f"skipping datasets whose source is missing: {', '.join(missing)} (see `nax data list`)", file=sys.stderr)
        todo = [(ds, a) for ds, a in todo if ds not in missing]
    if max_runs is not None:
        todo = todo[:max_runs]

    splits = {
        ds: train.load_splits(ds, cfg.train, data_dir)
        if ds in data.NAMES
        else catalog_splits(ds, cfg.train, catalog_dir)
        for ds in cfg.datasets
        if ds not in missing
    }
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    images = 0
    bar = tqdm(total=len(todo), desc="meta-dataset", unit="run", disable=not progress, smoothing=0.05)
    with writer:
        for ds, group in _groups(todo, population_size):
            encs = [S.from_string(a) for a in group]
            if population_size == 1:  # train_architecture, the select form since b781a94: the shipped
                # journals (one-hot form) are reproduced up to float rounding, not bit for bit
                recs = [train.train_architecture(encs[0], splits[ds], cfg.train)]
            else:
                recs = population.train_population(encs, splits[ds], cfg.train)
            for rec in recs:
                writer.append(rec.to_dict())
                done.append(rec)
                images += (
                    rec.epochs_done * (len(splits[ds].train_labels) // cfg.train.batch_size) * cfg.train.batch_size
                )
                bar.set_postfix(ds=ds, acc=f"{rec.final_val_accuracy:.3f}")
                bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    trainer = train.get_trainer(10, cfg.train) if splits else None
    stats = {
        "runs_total": len(done),
        "runs_now": len(todo),
        "seconds_now": round(seconds, 1),
        "train_images_per_s_now": round(images / seconds, 1) if seconds > 0 and todo else None,
        "compiles_train_step_this_process": trainer.trace_counts["train"] if trainer else 0,
        "population": population_size,
    }
    paths = write_tables(cfg, read_all(out, cfg), out)
    stats["tables"] = {k: str(v) for k, v in paths.items()}
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="full")
    ap.add_argument("--out", type=pathlib.Path, default=None, help="output dir (default: the config's)")
    ap.add_argument("--max-runs", type=int, default=None, help="train at most this many runs now (resume later)")
    ap.add_argument("--data-dir", type=pathlib.Path, default=None)
    ap.add_argument(
        "--shard", default=None, metavar="I/N", help="train only shard I of N (run N processes, one per core)"
    )
    ap.add_argument(
        "--population", type=int, default=1, metavar="K", help="cells per compiled program (1: faster on CPU)"
    )
    ap.add_argument("--tfds-dir", type=pathlib.Path, default=None, help="prepared TFDS catalog datasets (gpu config)")
    args = ap.parse_args(argv)
    cfg = CONFIGS[args.config]
    out = args.out or pathlib.Path(cfg.command.split("--out ")[1])
    shard = tuple(int(v) for v in args.shard.split("/")) if args.shard else None
    if shard is not None and not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
        raise SystemExit(f"--shard must be I/N with 0 <= I < N, got {args.shard}")
    kw = {"population_size": args.population, "catalog_dir": args.tfds_dir}
    stats = run(cfg, out, max_runs=args.max_runs, data_dir=args.data_dir, shard=shard, **kw)
    stats["provenance"] = provenance(paths=("nax", "experiments/build_metadataset.py"))
    # one entry per invocation, so a resumed build still reports its total time
    path = out / ("run_stats.json" if shard is None else f"run_stats-{shard[0]}of{shard[1]}.json")
    sessions = json.loads(path.read_text()).get("sessions", []) if path.exists() else []
    sessions.append(stats)
    total = {
        "seconds": round(sum(s["seconds_now"] for s in sessions), 1),
        "runs": stats["runs_total"],
        "sessions": len(sessions),
    }
    path.write_text(
        jsonio.dumps(
            {
                "total": total,
                "sessions": sessions,
                "config": cfg.to_dict(),
                "command": cfg.command,
                "seed": cfg.arch_seed,
                "train_seed": cfg.train.seed,
            },
            indent=1,
        )
        + "\n"
    )
    print(jsonio.dumps({k: v for k, v in stats.items() if k != "provenance"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
