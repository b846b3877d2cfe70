"""The acceleration experiment's configurations and data: what each run measures, on which tables.

Budgets are fractions of the epochs that training every architecture of the target's pool
would take. The stopping rule is :func:`nax.curves.stopping.stop_rule`, built by
:func:`stop_config` from a configuration's ``stop_*`` fields.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np

from nax import curves, tables
from nax import provenance as provenance_lib
from nax import space as space_lib
from nax.curves.inference import InferenceConfig
from nax.curves.stopping import StopConfig

REPO = Path(__file__).resolve().parents[1]
META_DATASETS = ("digits", "mnist5k", "animal_mnist", "fashion_mnist", "opencv_digits")
NB201_DATASETS = ("cifar10", "cifar100", "imagenet16-120")
#: Baker et al. (2018) curve sets in ../shared/data/curves/baker2018 (file stems)
BAKER_SETS = ("metaqnn_cifar10", "metaqnn_svhn", "deep_resnets_cifar10", "deep_resnets_tinyimagenet")
#: LCBench (Zimmer et al. 2021) surrogate curves in ../shared/data/curves/lcbench: 17 tasks x 30
#: configurations x 52 epochs; configurations are hyperparameters, not cells (no selection there)
LCBENCH_FILE = "lcbench_surrogate_17tasks.csv"
#: full-run variants (issue 6) and the multi-fidelity ones (issue 14, ``acceleration_mf.py``)
VARIANTS = (
    "baseline",
    "selection",
    "stopping",
    "both",
    "hyperband",
    "asha",
    "freeze_thaw",
    "freeze_thaw_rungs",
    "asha_selection",
    "asha_transfer",
)
MF_VARIANTS = ("hyperband", "asha", "freeze_thaw", "freeze_thaw_rungs", "asha_selection", "asha_transfer")
SUITES = ("metadata", "nb201", "baker", "lcbench")
#: the files whose uncommitted changes make a result's ``git_dirty`` true
CODE = [
    "nax",
    "experiments/acceleration.py",
    "experiments/acceleration_config.py",
    "experiments/acceleration_run.py",
    "experiments/acceleration_report.py",
]


@dataclasses.dataclass(frozen=True)
class Config:
    """What one run of the experiment does. Budgets are fractions of the epochs that
    training every architecture of the target's pool would take."""

    name: str
    targets: tuple[str, ...] = META_DATASETS
    seeds: int = 10
    #: the baseline's budget B as a fraction of the pool's total epochs
    budget_fraction: float = 0.25
    #: variants stop at cap * B when they have not reached the target accuracy
    cap: float = 2.0
    #: regularized evolution on a pool of ~157 cells: a small population, or most of the
    #: budget goes to the random initial population
    population: int = 10
    sample: int = 3
    #: curve prior fit (per target) and the stopping rule's per-check SVI
    prior_steps: int = 2000
    prior_max_curves: int | None = 200
    #: the prior's extrapolation-noise calibration on source prefixes (nax.curves.fit_prior)
    prior_calibration_steps: int = 1000
    prior_calibration_curves: int | None = 100
    stop_delta: float = 0.05
    stop_min_epochs: int = 3
    stop_check_every: int = 3
    stop_steps: int = 300
    stop_samples: int = 200
    #: the rule's extrapolation noise learned within the target from its finished runs
    #: (nax.curves.stopping.StopConfig.adapt)
    stop_adapt: bool = True
    #: NAS-Bench-201: selection only, budget in full (200-epoch) runs
    nb201_targets: tuple[str, ...] = NB201_DATASETS
    nb201_seeds: int = 10
    nb201_budget_runs: int = 100
    nb201_population: int = 20
    nb201_sample: int = 5
    #: Baker et al. curve sets: early termination only (their networks are not NB201 cells,
    #: so there is nothing to select by); baseline = random order, budget a fraction of the pool
    baker_targets: tuple[str, ...] = BAKER_SETS
    baker_seeds: int = 5
    baker_budget_fraction: float = 0.1
    #: the rule is consulted about every tenth of the run (from a tenth on)
    baker_checks: int = 5
    metadata_dir: str = "nax/metadata"
    nb201_table: str = ""  # empty: <repo>/../shared/data/nb201/nb201_200epoch.csv (NAX_SHARED_DATA)

    #: which suites run (a subset writes acceleration_<name>_<suites>.*, so suites can run
    #: side by side as separate processes)
    suites: tuple[str, ...] = ("metadata", "nb201", "baker")
    #: which variants run where they apply (the baseline always runs: it sets the target)
    variants: tuple[str, ...] = ("baseline", "selection", "stopping", "both")
    #: Hyperband / ASHA (Li et al. 2018, 2020): eta and the smallest fidelity in epochs, the
    #: papers' defaults (eta 3, one epoch), fixed a priori; the top rung is a full run
    mf_eta: int = 3
    mf_min_epochs: int = 1
    #: freeze-thaw jobs of ``ft.default_delta(horizon)`` epochs (a quarter of a run, a priori)
    #: and at most this many seeds per target (None: all; its curve fit per decision is the
    #: costly part on a 2-core machine)
    ft_seeds: int | None = None
    #: LCBench: budget a fraction of the 30 configurations of a task (B = 9 runs), random
    #: order as the baseline; the curve prior of a task is fitted on the tasks of the other
    #: of ``lcbench_folds`` folds (task index mod folds), never on the task itself
    lcbench_targets: tuple[str, ...] | None = None  # None: all 17 tasks
    lcbench_seeds: int = 10
    lcbench_budget_fraction: float = 0.3
    lcbench_folds: int = 2

    @property
    def command(self) -> str:
        default = CONFIG_SUITES.get(self.name, SUITES[:3])
        sub = "" if set(self.suites) == set(default) else " --suites " + " ".join(self.suites)
        if self.ft_seeds != CONFIGS_FT_SEEDS.get(self.name):
            sub += f" --ft-seeds {self.ft_seeds}"
        if self.name in CONFIG_VARIANTS and self.variants != CONFIG_VARIANTS[self.name]:
            sub += " --variants " + " ".join(self.variants)
        return f"python experiments/acceleration.py --config {self.name}{sub}"

    @property
    def stem(self) -> str:
        """File name stem of this run's outputs."""
        default = CONFIG_SUITES.get(self.name, SUITES[:3])
        sub = "" if set(self.suites) == set(default) else "_" + "_".join(self.suites)
        return f"acceleration_{self.name}{sub}"


#: each config's default suites (the command and file names omit them)
CONFIG_SUITES = {"mf": ("metadata", "baker", "lcbench"), "mf_quick": ("metadata", "baker", "lcbench")}
#: each multi-fidelity config's variants
CONFIG_VARIANTS = {n: ("baseline", "selection", "hyperband", "asha", "freeze_thaw") for n in ("mf", "mf_quick")}
#: each config's freeze-thaw seeds (None: all)
CONFIGS_FT_SEEDS = {"mf": 3}

CONFIGS = {
    "quick": Config(
        "quick",
        targets=("digits",),
        seeds=2,
        budget_fraction=0.25,
        prior_steps=300,
        prior_max_curves=20,
        prior_calibration_steps=150,
        prior_calibration_curves=10,
        stop_steps=100,
        stop_samples=100,
        stop_check_every=4,
        nb201_targets=("cifar10",),
        nb201_seeds=2,
        nb201_budget_runs=15,
        baker_targets=("metaqnn_cifar10",),
        baker_seeds=2,
        baker_budget_fraction=0.03,
    ),
    "full": Config("full"),
    #: issue 14: the multi-fidelity baselines and transferred freeze-thaw beside the
    #: baseline and selection, on every suite with curves, 10 seeds (freeze-thaw: the first
    #: 3, its curve fit per decision being the costly part). The curve priors are fitted
    #: with a quarter of the steps and curves of ``full`` (11 fits on 2 shared cores).
    "mf": Config(
        "mf",
        suites=("metadata", "baker", "lcbench"),
        variants=("baseline", "selection", "hyperband", "asha", "freeze_thaw"),
        baker_seeds=10,
        ft_seeds=3,
        prior_steps=500,
        prior_max_curves=50,
        prior_calibration_steps=300,
        prior_calibration_curves=30,
    ),
    "mf_quick": Config(
        "mf_quick",
        targets=("digits",),
        seeds=2,
        suites=("metadata", "baker", "lcbench"),
        variants=("baseline", "selection", "hyperband", "asha", "freeze_thaw"),
        prior_steps=200,
        prior_max_curves=20,
        prior_calibration_steps=100,
        prior_calibration_curves=10,
        stop_steps=100,
        stop_samples=100,
        baker_targets=("metaqnn_cifar10",),
        baker_seeds=2,
        baker_budget_fraction=0.03,
        lcbench_targets=("3945",),
        lcbench_seeds=2,
    ),
}


def stop_config(cfg: Config, *, min_epochs: int | None = None, check_every: int | None = None) -> StopConfig:
    """The stopping rule's configuration: ``cfg``'s threshold, check schedule, per-check
    inference and within-target adaptation (``min_epochs``/``check_every`` override the
    schedule, as the Baker suite checks about every tenth of a run)."""
    return StopConfig(
        delta=cfg.stop_delta,
        min_epochs=cfg.stop_min_epochs if min_epochs is None else min_epochs,
        check_every=cfg.stop_check_every if check_every is None else check_every,
        adapt=cfg.stop_adapt,
        inference=InferenceConfig(num_samples=cfg.stop_samples, num_steps=cfg.stop_steps),
    )


def provenance() -> dict:
    """nax version, git commit (dirty flag for the experiment's code and the package), versions, machine."""
    return provenance_lib.provenance(paths=CODE, repo=REPO)


def shared_data() -> Path:
    return Path(os.environ.get("NAX_SHARED_DATA", REPO.parent / "shared" / "data"))


def nb201_path(cfg: Config) -> Path:
    if cfg.nb201_table:
        return Path(cfg.nb201_table)
    return shared_data() / "nb201" / "nb201_200epoch.csv"


def baker_table(name: str):
    """A Baker et al. curve set as a curve table named by its file stem (two of the files
    both call their dataset cifar10). Its networks are not cells of any nax space; each row
    gets a distinct NB201 cell string as an *identifier* so that the search loop's random
    strategy can draw rows. Nothing is ever computed from these identifiers."""
    ct = tables.load_curves(shared_data() / "curves" / "baker2018" / f"{name}.csv")
    ids = [space_lib.nb201.to_string(e) for e in space_lib.nb201.enumerate()[: len(ct.final)]]
    return dataclasses.replace(
        ct, datasets=np.full(len(ct.final), name, dtype=object), meta={**ct.meta, "arch": np.asarray(ids, dtype=object)}
    )


def lcbench_table():
    """The LCBench tasks as one curve table, datasets named by task id. Like the Baker sets,
    each configuration gets a distinct NB201 cell string as an identifier only (within its
    task), so that the search loop's strategies can draw rows."""
    ct = tables.load_curves(shared_data() / "curves" / "lcbench" / LCBENCH_FILE, dataset_column="task")
    datasets = np.asarray(ct.datasets).astype(str)
    ids = np.empty(len(datasets), dtype=object)
    cells = space_lib.nb201.enumerate()
    for d in np.unique(datasets):
        rows = np.flatnonzero(datasets == d)
        ids[rows] = [space_lib.nb201.to_string(e) for e in cells[: len(rows)]]
    return dataclasses.replace(ct, datasets=datasets.astype(object), meta={**ct.meta, "arch": ids})


def with_steady_seconds(ct):
    """The curve table with ``steady_s``: epochs x the median seconds of epochs 2.. of a row.

    The table's ``wall_s`` includes the generator's first-epoch compilation (up to ~100 s
    on this machine, whichever cell happened to compile), which a search that compiles
    once (the supernet form) pays once, not per run; charging it per run would make the
    seconds column measure compile order rather than architectures.
    """
    cols = sorted((k for k in ct.meta if k.startswith("epoch_s_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    if len(cols) < 2:
        return ct
    per_epoch = np.nanmedian(np.stack([np.asarray(ct.meta[k], float) for k in cols[1:]], 1), axis=1)
    return dataclasses.replace(ct, meta={**ct.meta, "steady_s": per_epoch * ct.lengths})


def load_metadata(cfg: Config):
    """The meta-dataset's curve table (with ``steady_s``) and architecture table."""
    md_dir = REPO / cfg.metadata_dir
    ct = with_steady_seconds(tables.concat([tables.load_curves(md_dir / f"{d}.csv") for d in META_DATASETS]))
    return ct, tables.load_archs(md_dir / "archs.csv")


# ---------------------------------------------------------------------------- real training
@dataclasses.dataclass(frozen=True)
class RealConfig:
    """Real training on one bundled dataset: the same four variants, few seeds, a small budget
    (in full runs) over the target's meta-dataset pool, trained as the meta-dataset was."""

    target: str = "digits"
    seeds: int = 2
    budget_runs: int = 5
    cap: float = 1.6
    base: Config = CONFIGS["full"]
    #: training images per run (None: as the meta-dataset, 1,280); quick runs train on fewer
    train_limit: int | None = None

    @property
    def command(self) -> str:
        return (
            f"python experiments/acceleration.py --real --config {self.base.name} --real-target {self.target} "
            f"--real-seeds {self.seeds}"
        )


#: ``--real --config quick``: one seed, a one-run budget, 256 training images: the whole real
#: training path end to end in about a minute (a test runs it)
REAL_CONFIGS = {
    "full": RealConfig(),
    "quick": RealConfig(seeds=1, budget_runs=1, cap=1.0, base=CONFIGS["quick"], train_limit=256),
}


# ---------------------------------------------------------------------------- curve priors
def fit_prior(cfg: Config, table) -> curves.CurvePrior:
    """The curve prior of ``cfg`` fitted on the source curves ``table``. With
    ``NAX_PRIOR_CACHE`` set, a prior fitted on the same sources with the same settings is
    read from that folder instead of fitted again (suites run as separate processes share it)."""
    cache = os.environ.get("NAX_PRIOR_CACHE")
    if cache:
        what = [
            cfg.prior_steps,
            cfg.prior_max_curves,
            cfg.prior_calibration_steps,
            cfg.prior_calibration_curves,
            sorted(map(str, set(table.datasets))),
            int(table.values.shape[0]),
            float(np.nansum(table.values)),
        ]
        path = Path(cache) / f"prior_{hashlib.sha256(repr(what).encode()).hexdigest()[:16]}.json"
        if path.is_file():
            return curves.CurvePrior.load(path)
        prior = _fit_prior(cfg, table)
        path.parent.mkdir(parents=True, exist_ok=True)
        prior.save(path)
        return prior
    return _fit_prior(cfg, table)


def _fit_prior(cfg: Config, table) -> curves.CurvePrior:
    return curves.fit_prior(
        table,
        seed=0,
        max_curves=cfg.prior_max_curves,
        inference=curves.fitting.PRIOR_INFERENCE.replace(num_steps=cfg.prior_steps),
        calibration_inference=curves.fitting.CALIBRATION_INFERENCE.replace(num_steps=cfg.prior_calibration_steps),
        calibration_curves=cfg.prior_calibration_curves,
    )
