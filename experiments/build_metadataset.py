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
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import jax
import numpy as np

from nax import __version__, data, journal, jsonio, space, train
from nax.provenance import provenance

S = space.nb201

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
}


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


def run(
    cfg: Config,
    out: pathlib.Path,
    *,
    max_runs: int | None = None,
    data_dir=None,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> dict:
    """Train what the journals in ``out`` lack (at most ``max_runs`` now), then write the tables.

    ``shard=(i, n)`` trains only every n-th missing run starting at i and writes its own
    journal, so n processes (one per core) can build one meta-dataset together.
    """
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
    missing = [ds for ds in cfg.datasets if not data.source_available(ds, data_dir)]
    if missing:
        print(f"skipping datasets whose source is missing: {', '.join(missing)} (see `nax data list`)", file=sys.stderr)
        todo = [(ds, a) for ds, a in todo if ds not in missing]
    if max_runs is not None:
        todo = todo[:max_runs]

    splits = {ds: train.load_splits(ds, cfg.train, data_dir) for ds in cfg.datasets if ds not in missing}
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    images = 0
    bar = tqdm(todo, desc="meta-dataset", unit="run", disable=not progress, smoothing=0.05)
    with writer:
        for ds, a in bar:
            rec = train.train_architecture(S.from_string(a), splits[ds], cfg.train)
            writer.append(rec.to_dict())
            done.append(rec)
            images += rec.epochs_done * (len(splits[ds].train_labels) // cfg.train.batch_size) * cfg.train.batch_size
            bar.set_postfix(ds=ds, acc=f"{rec.final_val_accuracy:.3f}")
    seconds = time.perf_counter() - t0
    trainer = train.get_trainer(10, cfg.train) if splits else None
    stats = {
        "runs_total": len(done),
        "runs_now": len(todo),
        "seconds_now": round(seconds, 1),
        "train_images_per_s_now": round(images / seconds, 1) if seconds > 0 and todo else None,
        "compiles_train_step_this_process": trainer.trace_counts["train"] if trainer else 0,
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
    args = ap.parse_args(argv)
    cfg = CONFIGS[args.config]
    out = args.out or pathlib.Path(cfg.command.split("--out ")[1])
    shard = tuple(int(v) for v in args.shard.split("/")) if args.shard else None
    if shard is not None and not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
        raise SystemExit(f"--shard must be I/N with 0 <= I < N, got {args.shard}")
    stats = run(cfg, out, max_runs=args.max_runs, data_dir=args.data_dir, shard=shard)
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
