"""The acceleration experiment's quick variant, end to end (as numpyro tests its examples),
and its searches on a small simulated curve table (fast)."""

import importlib.util
import json
import math
import sys

import pytest
from conftest import REPO, shared_data_dir
from test_search_support import EPOCHS, margin_rule, simulated_curve_csv

META = REPO / "nax" / "metadata"


def _module():
    spec = importlib.util.spec_from_file_location("acceleration", REPO / "experiments" / "acceleration.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["acceleration"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_searches_end_at_the_target_or_the_cap_and_never_cross_it(tmp_path):
    """``acceleration_run.run_target`` on a simulated curve table, the stopping variant with a
    model-free rule: the baseline defines the target within its budget, every variant ends
    once it has reached it after spending the budget, or at the cap, never beyond."""
    import numpy as np

    from nax import tables
    from nax.search import evaluators, strategies

    _module()
    import acceleration_run as runs

    ev = evaluators.CurveTableEvaluator(tables.load_curves(simulated_curve_csv(tmp_path / "sim.csv")), "beta")
    cands = ev.candidates()
    evo = lambda: strategies.evolution(ev.space, 5, 3, 1, cands)
    builders = {"baseline": lambda: (evo(), None), "stopping": lambda: (evo(), margin_rule(0.02))}
    budget, cap = 8 * EPOCHS, 20 * EPOCHS
    grid = np.linspace(0, cap, 11)
    rows, curves = runs.run_target("beta", "sim", ev, builders, 2, budget, cap, grid, log=lambda m: None)
    assert {v: c.shape for v, c in curves.items()} == {"baseline": (2, 11), "stopping": (2, 11)}
    for r in rows:
        assert r["epochs_to_target"] <= cap
        if r["variant"] == "baseline":
            assert r["reached"] and r["epochs_to_target"] <= budget and r["runs"] == 8
        if r["reached"]:
            assert r["speedup_epochs"] > 0
    assert sum(r["runs_stopped"] for r in rows if r["variant"] == "stopping") > 0


def test_multifidelity_variants_run_through_the_driver_and_are_compared_from_the_rows(tmp_path):
    """Hyperband and ASHA beside the baseline in ``run_target`` on a simulated curve table:
    every job charged, never past the cap, the baseline's target reached within B; the
    comparison of a variant with the better of them is recomputed from the per-seed rows."""
    import dataclasses

    import numpy as np

    from nax import tables
    from nax.search import evaluators, strategies

    _module()
    import acceleration_config as conf
    import acceleration_mf as amf
    import acceleration_report as report
    import acceleration_run as runs

    ev = evaluators.CurveTableEvaluator(tables.load_curves(simulated_curve_csv(tmp_path / "sim.csv")), "beta")
    cands = ev.candidates()
    cfg = dataclasses.replace(conf.CONFIGS["mf_quick"], variants=("baseline", "hyperband", "asha"))
    builders = {"baseline": lambda: (strategies.random(ev.space, batch=1, candidates=cands), None)}
    builders |= amf.mf_builders(cfg, ev.space, cands, EPOCHS, None, None, None)
    assert set(builders) == {"baseline", "hyperband", "asha"}
    budget, cap = 6 * EPOCHS, 12 * EPOCHS
    rows, curves = runs.run_target("beta", "sim", ev, builders, 1, budget, cap, np.linspace(0, cap, 11), lambda m: None)
    assert {v: c.shape for v, c in curves.items()} == {v: (1, 11) for v in builders}
    for r in rows:
        assert 0 < r["epochs_to_target"] <= cap and r["full_runs"] <= r["trials"]
        if r["variant"] == "baseline":
            assert r["reached"] and r["runs"] == r["trials"] == r["full_runs"] == 6
        else:  # jobs pause and resume: more jobs than trials, fewer full runs than trials
            assert r["runs"] > r["trials"] > r["full_runs"] >= 1
    # "asha" in the role of the compared variant: the better of the others is hyperband
    vs = report.versus_multifidelity(
        [dict(r, variant={"asha": "x", "hyperband": "hyperband", "baseline": "asha"}[r["variant"]]) for r in rows],
        variant="x",
    )
    mean = lambda v, k: np.mean([r[k] for r in rows if r["variant"] == v])
    one = next(r for r in vs if r["target"] == "beta")
    better = min(("hyperband", "baseline"), key=lambda v: mean(v, "epochs_to_target"))
    assert one["best_multifidelity"] == {"hyperband": "hyperband", "baseline": "asha"}[better]
    assert np.isclose(
        one["speedup_vs_best_multifidelity"], mean(better, "epochs_to_target") / mean("asha", "epochs_to_target")
    )
    diff = 100 * (mean("asha", "accuracy_at_budget") - mean(better, "accuracy_at_budget"))
    assert np.isclose(one["accuracy_diff_points_vs_best_multifidelity"], diff)


def test_lcbench_folds_never_put_a_task_among_its_own_sources():
    _module()
    import acceleration_mf as amf

    tasks = [str(t) for t in (3945, 126025, 126029, 167104, 167152)]
    folds = amf.lcbench_folds(tasks, 2)
    for t, src in folds.items():
        assert t not in src and src and set(src) < set(tasks)
    assert folds["3945"] == ["126025", "167104"] and folds["126025"] == ["3945", "126029", "167152"]


def test_merge_joins_parts_over_disjoint_targets_and_recomputes_every_aggregate(tmp_path):
    """``--merge``: runs over disjoint targets (parallel processes) become one output whose
    aggregates are recomputed from the joined per-seed rows (NaN seconds survive JSON)."""
    import dataclasses
    import json

    acc = _module()
    import acceleration_report as report

    cfg = dataclasses.replace(acc.CONFIGS["mf"], suites=("lcbench",))

    def row(target, variant, seed, epochs, acc_b):
        return dict(
            suite="lcbench",
            target=target,
            variant=variant,
            seed=seed,
            budget_epochs=468,
            cap_epochs=936,
            target_accuracy=0.8,
            reached=True,
            epochs_to_target=epochs,
            seconds_to_target=float("nan"),
            accuracy_at_budget=acc_b,
            runs=9,
            runs_stopped=0,
            trials=9,
            full_runs=9,
            pool=30,
            speedup_epochs=1.0,
            speedup_seconds=float("nan"),
        )

    parts, every = [], []
    for i, target in enumerate(("1", "2")):
        rows = [
            row(target, v, s, 100 + 10 * i + e + s, 0.8 + 0.01 * e)
            for s in range(2)
            for e, v in enumerate(("baseline", "hyperband", "asha", "freeze_thaw"))
        ]
        every += rows
        d = tmp_path / f"part{i}"
        agg = report.aggregate(rows)
        report.write_outputs(
            d, cfg, rows, agg, report.overall(agg), {}, {"nax_version": "x", "git_commit": None, "git_dirty": False}
        )
        parts.append(d)
    acc.merge(cfg, parts, tmp_path / "out")
    merged = json.loads((tmp_path / "out" / f"{cfg.stem}.json").read_text())
    assert len(merged["results"]) == len(every) and {p["command"] for p in merged["parts"]} == {cfg.command}
    want = report.aggregate(every)
    for a, b in zip(merged["aggregate"], want):
        assert a["target"] == b["target"] and a["variant"] == b["variant"]
        assert math.isclose(a["speedup_epochs_ratio_of_means"], b["speedup_epochs_ratio_of_means"])
        assert math.isclose(a["accuracy_diff_points"], b["accuracy_diff_points"], abs_tol=1e-9)
    vs = [r for r in merged["freeze_thaw_vs_multifidelity"] if r["target"] == "overall"]
    # per target: hyperband (epochs 101.5, 111.5) beats asha; freeze-thaw took 103.5, 113.5
    assert math.isclose(vs[0]["speedup_vs_best_multifidelity"], (101.5 / 103.5 + 111.5 / 113.5) / 2)
    assert math.isclose(vs[0]["accuracy_diff_points_vs_best_multifidelity"], 2.0)

    # a part that adds a variant to a target already run (same baseline) joins row by row
    extra = [row("1", v, s, 100 + e + s, 0.8) for s in range(2) for e, v in ((0, "baseline"), (5, "freeze_thaw_rungs"))]
    d = tmp_path / "part_rungs"
    agg = report.aggregate(extra)
    report.write_outputs(
        d, cfg, extra, agg, report.overall(agg), {}, {"nax_version": "x", "git_commit": None, "git_dirty": False}
    )
    acc.merge(cfg, [tmp_path / "out", d], tmp_path / "out2")
    merged = json.loads((tmp_path / "out2" / f"{cfg.stem}.json").read_text())
    assert len(merged["results"]) == len(every) + 2  # the baseline rows were there already
    vs = [r for r in merged["freeze_thaw_rungs_vs_multifidelity"] if r["target"] == "1"]
    assert math.isclose(vs[0]["speedup_vs_best_multifidelity"], 101.5 / 105.5)
    other = [dict(r, target_accuracy=0.9) for r in extra]
    report.write_outputs(
        d, cfg, other, agg, report.overall(agg), {}, {"nax_version": "x", "git_commit": None, "git_dirty": False}
    )
    with pytest.raises(ValueError, match="disagree on the baseline"):
        acc.merge(cfg, [tmp_path / "out", d], tmp_path / "out3")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    acc = _module()
    missing = [d for d in (*acc.META_DATASETS, "archs") if not (META / f"{d}.csv").is_file()]
    if missing:
        pytest.skip(f"the meta-dataset tables {missing} are absent from {META}")
    out1, out2 = tmp_path_factory.mktemp("run1"), tmp_path_factory.mktemp("run2")
    assert acc.main(["--config", "quick", "--out", str(out1)]) == 0
    assert acc.main(["--config", "quick", "--out", str(out2)]) == 0
    return acc, out1, out2


@pytest.mark.slow
def test_outputs_exist_and_carry_provenance(quick):
    acc, out, _ = quick
    payload = json.loads((out / "acceleration_quick.json").read_text())
    assert payload["command"] == "python experiments/acceleration.py --config quick"
    assert payload["config"]["name"] == "quick" and payload["seeds"] == [0, 1]
    assert payload["nax_version"] and "git_commit" in payload
    md = (out / "acceleration_quick.md").read_text()
    assert "## Overall" in md and "### metadata: digits" in md
    assert (out / "acceleration_quick_metadata_digits.png").stat().st_size > 1000
    variants = {(r["suite"], r["variant"]) for r in payload["results"]}
    assert {("metadata", v) for v in acc.CONFIGS["quick"].variants} <= variants
    if shared_data_dir().joinpath("nb201", "nb201_200epoch.csv").is_file():
        assert {("nb201", "baseline"), ("nb201", "selection")} <= variants
        assert (out / "acceleration_quick_nb201_cifar10.png").is_file()
    if shared_data_dir().joinpath("curves", "baker2018", "metaqnn_cifar10.csv").is_file():
        # early termination on real curves of networks outside the cell space: no selection there
        assert {("baker", "baseline"), ("baker", "stopping")} <= variants
        assert not {("baker", "selection"), ("baker", "both")} & variants
        assert (out / "acceleration_quick_baker_metaqnn_cifar10.png").is_file()


@pytest.mark.slow
def test_results_are_consistent(quick):
    _, out, _ = quick
    payload = json.loads((out / "acceleration_quick.json").read_text())
    rows = payload["results"]
    for r in rows:
        assert 0.0 <= r["accuracy_at_budget"] <= 1.0
        assert 0.0 <= r["target_accuracy"] <= 1.0
        assert 0 < r["epochs_to_target"] <= r["cap_epochs"]  # no run starts that would cross the cap
        if r["variant"] == "baseline":
            # the baseline's best within its budget is the target: it reaches it within the budget
            assert r["reached"] and r["epochs_to_target"] <= r["budget_epochs"]
        if r["suite"] == "baker":
            # Baker et al. record no training time: seconds are not measured there
            assert r["speedup_seconds"] is None
        if r["reached"]:
            # speed-up is the baseline's epochs over the variant's, seed by seed
            base = next(
                b
                for b in rows
                if b["suite"] == r["suite"]
                and b["target"] == r["target"]
                and b["seed"] == r["seed"]
                and b["variant"] == "baseline"
            )
            assert math.isclose(r["speedup_epochs"], base["epochs_to_target"] / r["epochs_to_target"])
    # the aggregate is the ratio of the seeds' mean epochs to target, and the accuracy
    # difference at B is in points against the same target's baseline, recomputed from the rows
    for a in payload["aggregate"]:
        mine = [r for r in rows if (r["suite"], r["target"], r["variant"]) == (a["suite"], a["target"], a["variant"])]
        base = [r for r in rows if (r["suite"], r["target"], r["variant"]) == (a["suite"], a["target"], "baseline")]
        mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)
        expect = mean(base, "epochs_to_target") / mean(mine, "epochs_to_target")
        assert math.isclose(a["speedup_epochs_ratio_of_means"], expect, rel_tol=1e-9)
        diff = 100 * (mean(mine, "accuracy_at_budget") - mean(base, "accuracy_at_budget"))
        assert math.isclose(a["accuracy_diff_points"], diff, rel_tol=1e-6, abs_tol=1e-9)
    # the stopping variants never charge more than full training would
    stop = [r for r in rows if r["variant"] in ("stopping", "both")]
    assert stop and all(r["runs_stopped"] <= r["runs"] for r in stop)


@pytest.mark.slow
def test_same_config_and_seed_give_identical_json(quick):
    _, out1, out2 = quick
    a, b = (json.loads((o / "acceleration_quick.json").read_text()) for o in (out1, out2))
    # everything but when (and from which commit) each run was made is identical
    when = {"time_utc", "git_commit", "git_dirty"}
    assert {k: v for k, v in a.items() if k not in when} == {k: v for k, v in b.items() if k not in when}
    assert a["results"] and a["results"] == b["results"]


@pytest.mark.slow
def test_real_training_quick_variant(tmp_path):
    """`--real --config quick`: the same variants trained for real next to the table replay,
    end to end (one seed, a one-run budget, 256 training images)."""
    acc = _module()
    if not (META / "digits.csv").is_file():
        pytest.skip(f"the meta-dataset is absent from {META}")
    assert acc.main(["--real", "--config", "quick", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "acceleration_real.json").read_text())
    assert (
        payload["command"]
        == "python experiments/acceleration.py --real --config quick --real-target digits --real-seeds 1"
    )
    assert payload["config"]["train"]["train_limit"] == 256 and payload["config"]["train"]["epochs"] == 12
    assert payload["git_commit"] is None or len(payload["git_commit"]) == 40
    rows = payload["results"]
    assert {(r["suite"], r["variant"]) for r in rows} == {
        (s, v) for s in ("table", "real") for v in acc.REAL_CONFIGS["quick"].base.variants
    }
    for r in rows:
        # a one-run budget: every variant trains exactly one full run (nothing to stop against yet)
        assert r["runs"] == 1 and r["runs_stopped"] == 0 and r["epochs_to_target"] == 12
        assert 0.0 < r["accuracy_at_budget"] <= 1.0
    real_base = next(r for r in rows if r["suite"] == "real" and r["variant"] == "baseline")
    # the baseline's target is its own best: reached by definition
    assert real_base["reached"] and real_base["target_accuracy"] == real_base["accuracy_at_budget"]
    assert (tmp_path / "acceleration_real_digits_real.png").stat().st_size > 1000


class _Fitted(Exception):
    """Raised by a spy once it has recorded what a transferred model is fitted on."""


def _spy_fits(monkeypatch, runs, seen, stop_at):
    """Record the datasets each transferred model of a suite is fitted on; stop the suite at
    ``stop_at`` ("model" or "prior") before any search runs (the searches are tested above)."""

    def fit_model(table, sources, **kw):
        seen["model"] = sorted(map(str, sources))
        if stop_at == "model":
            raise _Fitted
        return None  # the model is only used by the searches, which never start here

    def fit_prior(cfg, table):
        seen["prior"] = sorted(set(map(str, table.datasets)))
        raise _Fitted

    monkeypatch.setattr(runs.ch, "fit", fit_model)
    monkeypatch.setattr(runs, "fit_prior", fit_prior)


def test_every_suite_fits_its_transfer_on_the_other_datasets_only(monkeypatch):
    """Leave one out in every suite: neither the characteristic model nor the curve prior of
    a target ever sees the target's own rows."""
    _module()
    import acceleration_config as conf
    import acceleration_run as runs

    cfg = conf.CONFIGS["quick"]
    if not (META / "archs.csv").is_file():
        pytest.skip(f"the meta-dataset is absent from {META}")
    ct, at = conf.load_metadata(cfg)
    for target in conf.META_DATASETS:
        seen = {}
        _spy_fits(monkeypatch, runs, seen, "prior")
        with pytest.raises(_Fitted):
            runs.metadata_target(cfg, ct, at, target, log=lambda m: None)
        others = sorted(d for d in conf.META_DATASETS if d != target)
        assert seen == {"model": others, "prior": others}, target

    if not shared_data_dir().is_dir():
        pytest.skip("../shared/data absent: the NAS-Bench-201 and Baker et al. suites are not checked")
    from nax import tables

    nb = tables.load_archs(conf.nb201_path(cfg))
    for target in conf.NB201_DATASETS:
        seen = {}
        _spy_fits(monkeypatch, runs, seen, "model")
        with pytest.raises(_Fitted):
            runs.nb201_target(cfg, nb, target, log=lambda m: None)
        assert seen == {"model": sorted(d for d in conf.NB201_DATASETS if d != target)}, target
    names = ("metaqnn_cifar10", "metaqnn_svhn", "deep_resnets_cifar10", "deep_resnets_tinyimagenet")
    sets = {n: conf.baker_table(n) for n in names}
    for target in names:
        seen = {}
        _spy_fits(monkeypatch, runs, seen, "prior")
        with pytest.raises(_Fitted):
            runs.baker_target(cfg, sets, target, log=lambda m: None)
        assert seen == {"prior": sorted(n for n in names if n != target)}, target


def test_a_run_whose_suites_find_no_data_is_a_clear_error(tmp_path, monkeypatch):
    import dataclasses

    acc = _module()
    monkeypatch.setenv("NAX_SHARED_DATA", str(tmp_path / "absent"))
    cfg = dataclasses.replace(acc.CONFIGS["mf"], suites=("lcbench",))
    lines = []
    with pytest.raises(FileNotFoundError, match="no target of the suites lcbench ran: their data were not found"):
        acc.run(cfg, tmp_path / "out", log=lines.append)
    assert any("not found" in line for line in lines)
