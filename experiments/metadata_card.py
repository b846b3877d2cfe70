"""Data card for the meta-dataset: sanity statistics, a plot of the curves, and README.md.

Reads the curve tables written by ``build_metadataset.py`` (through ``nax.tables``) and
reports per dataset the accuracy spread across architectures, the Spearman rank
correlation of final accuracy between every pair of datasets, and the fraction of curves
still rising at the last epoch; draws ``curves.png`` (one panel per dataset).
``sanity.json`` also records the config, the command and the provenance
(``nax.provenance``) of the run.

    python experiments/metadata_card.py --config full                     # the shipped card, in nax/metadata
    python experiments/metadata_card.py --config quick --out runs/card-quick   # two datasets, seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

import numpy as np

from nax import jsonio, tables
from nax.provenance import provenance

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Config:
    """Which curve tables the card describes. ``datasets`` empty: every ``<name>.csv`` in
    ``dir`` but ``archs.csv``. The card is deterministic, so there is no seed."""

    name: str
    dir: str = "nax/metadata"
    datasets: tuple[str, ...] = ()
    #: where sanity.json and curves.png go; empty: ``dir`` itself
    out: str = ""

    @property
    def command(self) -> str:
        return f"python experiments/metadata_card.py --config {self.name}"

    def dataset_names(self) -> list[str]:
        if self.datasets:
            return list(self.datasets)
        return [p.stem for p in sorted((REPO / self.dir).glob("*.csv")) if p.stem != "archs"]


CONFIGS = {
    "full": Config("full"),
    "quick": Config("quick", datasets=("digits", "mnist5k"), out="runs/card-quick"),
}


def sanity(dir_: pathlib.Path, datasets: list[str]) -> dict:
    """Spread, rising fraction and pairwise Spearman of final validation accuracy."""
    from scipy.stats import spearmanr

    per, finals = {}, {}
    for ds in datasets:
        ct = tables.load_curves(dir_ / f"{ds}.csv")
        live = ct.final > 0.11  # cells with no input→output path sit at chance (0.1)
        f = ct.final
        last = ct.values[:, -1] - ct.values[:, -2]
        per[ds] = {
            "runs": int(ct.n_runs),
            "epochs": int(ct.n_epochs),
            "final_mean": float(np.mean(f)),
            "final_min": float(np.min(f)),
            "final_max": float(np.max(f)),
            "spread_p10_p90_connected": float(np.percentile(f[live], 90) - np.percentile(f[live], 10)),
            "spread_max_min_connected": float(f[live].max() - f[live].min()),
            "at_chance": int((~live).sum()),
            "rising_at_last_epoch": float(np.mean(last[live] > 0.002)),
        }
        archs = ct.meta["arch"]
        finals[ds] = dict(zip(archs, f))
    pairs = []
    for i, a in enumerate(datasets):
        for b in datasets[i + 1 :]:
            common = sorted(set(finals[a]) & set(finals[b]))
            x = [finals[a][k] for k in common]
            y = [finals[b][k] for k in common]
            pairs.append({"a": a, "b": b, "n": len(common), "spearman": float(spearmanr(x, y).statistic)})
    return {"per_dataset": per, "pairs": pairs}


def plot(dir_: pathlib.Path, datasets: list[str], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 3.0), sharey=True)
    for ax, ds in zip(np.atleast_1d(axes), datasets):
        ct = tables.load_curves(dir_ / f"{ds}.csv")
        order = np.argsort(ct.final)
        colors = plt.cm.viridis(np.linspace(0, 1, ct.n_runs))
        for c, i in zip(colors, order):
            ax.plot(ct.epochs, ct.values[i], color=c, lw=0.6, alpha=0.7)
        ax.set_title(f"{ds} ({ct.n_runs} cells)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("validation accuracy")
    fig.suptitle(
        "nax meta-dataset: NAS-Bench-201 cells trained on the bundled datasets (colour = final rank)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="full")
    ap.add_argument("--dir", type=pathlib.Path, default=None, help="the meta-dataset (default: the config's)")
    ap.add_argument("--out", type=pathlib.Path, default=None, help="output dir (default: the config's, else --dir)")
    args = ap.parse_args(argv)
    cfg = CONFIGS[args.config]
    if args.dir is not None:
        cfg = dataclasses.replace(cfg, dir=str(args.dir))
    if args.out is not None:
        cfg = dataclasses.replace(cfg, out=str(args.out))
    src = REPO / cfg.dir  # a relative dir is inside the checkout, wherever this runs from
    out = pathlib.Path(cfg.out) if cfg.out else src
    stats_path = src / "run_stats.json"
    if not stats_path.exists():
        print(f"{stats_path} missing: run experiments/build_metadataset.py first", file=sys.stderr)
        return 2
    datasets = cfg.dataset_names()
    s = sanity(src, datasets)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "config": dataclasses.asdict(cfg),
        "command": cfg.command,
        **provenance(paths=("nax", "experiments/metadata_card.py")),
    }
    (out / "sanity.json").write_text(jsonio.dumps({**s, **meta}, indent=1) + "\n")
    plot(src, datasets, out / "curves.png")
    print(f"{'dataset':<15}{'runs':>6}{'mean':>7}{'min':>7}{'max':>7}{'p90-p10':>9}{'chance':>8}{'rising':>8}")
    for ds, r in s["per_dataset"].items():
        print(
            f"{ds:<15}{r['runs']:>6}{r['final_mean']:>7.3f}{r['final_min']:>7.3f}{r['final_max']:>7.3f}"
            f"{r['spread_p10_p90_connected']:>9.3f}{r['at_chance']:>8}{r['rising_at_last_epoch']:>8.2f}"
        )
    for p in s["pairs"]:
        print(f"spearman {p['a']:>14} vs {p['b']:<14} {p['spearman']:.3f}  (n={p['n']})")
    print(f"wrote {out / 'sanity.json'} and {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
