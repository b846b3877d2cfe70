"""Every number in the README's results section comes from a committed JSON.

The README rounds; a number written with d decimals must lie within half a unit of its
last decimal of the value recomputed here from ``benchmarks/results``. When a benchmark
is rerun and its JSON committed, this test fails until the README says the same.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NUM = r"[-+]?\d+(?:\.\d+)?"


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _tables(section: str) -> list[list[list[str]]]:
    """Markdown tables of ``section`` as rows of stripped cells (header first, rule dropped)."""
    tables, rows = [], []
    for line in section.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def _numbers(cell: str) -> list[str]:
    return re.findall(NUM, cell.replace("**", "").replace("\u2212", "-"))


def _close(text: str, value: float, scale: float = 1.0) -> bool:
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(float(text) - value * scale) <= 0.5 * 10**-decimals + 1e-9


def _check(text: str, value: float, what: str, scale: float = 1.0) -> None:
    assert _close(text, value, scale), f"README says {text} for {what}; the JSON gives {value * scale:.5g}"


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


# ---------------------------------------------------------------------------- acceleration
def _overall(data: dict, suite: str, variant: str) -> dict:
    (row,) = [r for r in data["overall"] if r["suite"] == suite and r["variant"] == variant]
    return row


def _per_target(data: dict, suite: str, target: str, variant: str) -> dict:
    (row,) = [r for r in data["aggregate"] if r["suite"] == suite and r["target"] == target and r["variant"] == variant]
    return row


def test_acceleration_table_matches_json():
    (table,) = [t for t in _tables(_section("Results")) if t[0][0] == "suite (targets)" and t[0][2] == "selection"]
    rows = {r[0].split(" (")[0]: r for r in table[1:]}
    meta_nb = _load("acceleration/acceleration_full_metadata_nb201.json")
    baker = _load("acceleration/acceleration_full_baker.json")

    nb = rows["NAS-Bench-201"]
    _check(
        _numbers(nb[2])[0], _overall(meta_nb, "nb201", "selection")["speedup_epochs_ratio_of_means"], "NB201 selection"
    )
    _check(_numbers(nb[5])[0], _overall(meta_nb, "nb201", "selection")["accuracy_diff_points"], "NB201 delta")

    md = rows["nax meta-dataset"]
    for col, variant in zip((2, 3, 4), ("selection", "stopping", "both")):
        _check(
            _numbers(md[col])[0],
            _overall(meta_nb, "metadata", variant)["speedup_epochs_ratio_of_means"],
            f"metadata {variant}",
        )
    for text, variant in zip(_numbers(md[5]), ("selection", "stopping", "both")):
        _check(text, _overall(meta_nb, "metadata", variant)["accuracy_diff_points"], f"metadata delta {variant}")

    bk = rows["Baker et al. curves"]
    overall, *metaqnn = _numbers(bk[3])
    _check(overall, _overall(baker, "baker", "stopping")["speedup_epochs_ratio_of_means"], "Baker stopping")
    for text, target in zip(metaqnn, ("metaqnn_cifar10", "metaqnn_svhn")):
        _check(text, _per_target(baker, "baker", target, "stopping")["speedup_epochs_ratio_of_means"], target)
    _check(_numbers(bk[5])[0], _overall(baker, "baker", "stopping")["accuracy_diff_points"], "Baker delta")


def test_multifidelity_table_matches_json():
    (table,) = [t for t in _tables(_section("Results")) if t[0][1] == "baseline" and t[0][2] == "Hyperband"]
    rows = {r[0].split(" (")[0]: r for r in table[1:]}
    for label, suite in (("nax meta-dataset", "metadata"), ("Baker et al. curves", "baker"), ("LCBench", "lcbench")):
        data = _load(f"acceleration/acceleration_mf_{suite}.json")
        variants = ("hyperband", "asha", "freeze_thaw") if suite != "baker" else ("hyperband", "asha")
        for col, variant in zip((2, 3, 4), variants):
            speedup, delta = _numbers(rows[label][col])[:2]
            row = _overall(data, suite, variant)
            _check(speedup, row["speedup_epochs_ratio_of_means"], f"{suite} {variant}")
            _check(delta, row["accuracy_diff_points"], f"{suite} {variant} delta")
        # ASHA with the transfers (H14): proposals on the meta-dataset only, both where measured
        asha_cols = {"metadata": ((7, "asha_selection"), (8, "asha_transfer")), "lcbench": ((8, "asha_transfer"),)}
        for col, variant in asha_cols.get(suite, ()):
            speedup, delta = _numbers(rows[label][col])[:2]
            row = _overall(data, suite, variant)
            _check(speedup, row["speedup_epochs_ratio_of_means"], f"{suite} {variant}")
            _check(delta, row["accuracy_diff_points"], f"{suite} {variant} delta")
    meta = _load("acceleration/acceleration_mf_metadata.json")["results"]
    mean_epochs = lambda v: np.mean([r["epochs_to_target"] for r in meta if r["variant"] == v])
    pooled = {v: mean_epochs(v) for v in ("baseline", "asha_selection")}
    _check(_numbers(rows["nax meta-dataset"][7])[3], pooled["baseline"] / pooled["asha_selection"], "pooled")


def test_peer_table_matches_json():
    (table,) = [t for t in _tables(_section("Results")) if t[0][:2] == ["preset", "nax / PyTorch"]]
    ratios = _load("peer.json")["ratios"]  # the file the README names
    for row in table[1:]:
        preset = row[0].split("`")[1]
        _check(_numbers(row[1])[0], ratios[preset]["nax_over_torch"], f"{preset} nax/torch")
        _check(_numbers(row[2])[0], ratios[preset]["supernet_over_specialised"], f"{preset} supernet/specialised")


# ---------------------------------------------------------------------------- curves
def _mean(rows: list[dict], key: str, **match) -> float:
    vals = [r[key] for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert vals, f"no rows with {match}"
    return float(np.mean(vals))


def test_extrapolation_table_matches_json():
    (table,) = [t for t in _tables(_section("Results")) if t[0][0] == "cutoff"]
    rows = _load("curves_benchmark_baker2018.json")["results"]
    columns = [
        ("mae", "last_value"),
        ("mae", "pow3"),
        ("mae", "svr"),
        ("mae", "no_transfer"),
        ("mae", "transfer"),
        ("cov90", "transfer"),
        ("mae", "transfer_finished10"),
        ("cov90", "transfer_finished10"),
    ]
    assert len(table[0]) == len(columns) + 1, "the extrapolation table's columns changed: update this test"
    for row in table[1:]:
        cutoff = float(_numbers(row[0])[0]) / 100
        for cell, (key, method) in zip(row[1:], columns):
            _check(_numbers(cell)[0], _mean(rows, key, method=method, cutoff=cutoff), f"{method} {key} at {cutoff}")


def test_early_stop_sentence_matches_json():
    text = " ".join(_section("Results").split())
    rows = _load("curves_early_stop_baker2018.json")["results"]
    m = re.search(
        rf"saves ({NUM}) % of the epochs with a regret of ({NUM}) accuracy points "
        rf"\(sources-only calibration: ({NUM}) % and ({NUM}) points",
        text,
    )
    assert m, "the early-termination sentence of the README's results changed: update this test"
    _check(m[1], _mean(rows, "epochs_saved", method="transfer_adaptive", threshold=0.05), "adaptive saved", 100)
    _check(m[2], _mean(rows, "regret", method="transfer_adaptive", threshold=0.05), "adaptive regret", 100)
    _check(m[3], _mean(rows, "epochs_saved", method="transfer", threshold=0.05), "transfer saved", 100)
    _check(m[4], _mean(rows, "regret", method="transfer", threshold=0.05), "transfer regret", 100)


#: the cross-family / leave-one-out benchmark JSONs of the curve-families table
FAMILY_JSONS = (
    "curves_benchmark_xfam_baker.json",
    "curves_benchmark_xfam_lcbench.json",
    "curves_benchmark_xfam_meta_acc.json",
    "curves_benchmark_xfam_meta_loss.json",
    "curves_benchmark_loo_meta_acc.json",
    "curves_benchmark_loo_baker.json",
    "curves_benchmark_loo_lcbench.json",
    "curves_benchmark_loo_meta_loss.json",
)
FAMILY_BASELINES = ("last_value", "pow3", "mmf", "svr")


def test_curve_families_early_stop_sentence_matches_json():
    text = " ".join(_section("Results").split())
    m = re.search(
        rf"Early termination on 6 LCBench tasks [^)]*\) saves ({NUM}) % of the epochs with a regret of ({NUM})", text
    )
    assert m, "the LCBench early-termination sentence of the README's results changed: update this test"
    rows = _load("curves_early_stop_xfam_lcbench.json")["results"]
    _check(m[1], _mean(rows, "epochs_saved", method="transfer", threshold=0.05), "LCBench saved", 100)
    _check(m[2], _mean(rows, "regret", method="transfer", threshold=0.05), "LCBench regret", 100)


def test_curve_families_table_matches_json():
    """Each cell: transfer / no_transfer / the best baseline (named) MAE, mean over the
    family's target datasets."""
    (table,) = [t for t in _tables(_section("Results")) if t[0][0] == "target family (protocol)"]
    rows = [r for name in FAMILY_JSONS for r in _load(name)["results"]]
    cutoffs = [float(_numbers(c)[0]) / 100 for c in table[0][1:]]
    for line in table[1:]:
        family, protocol = re.match(r"([a-z_]+) \(([a-z-]+)", line[0]).groups()
        for cell, cutoff in zip(line[1:], cutoffs):
            if not cell.strip("– "):
                continue
            where = {"family": family, "protocol": protocol, "cutoff": cutoff}
            mae = lambda m, where=where: _mean(rows, "mae", method=m, **where)
            t, n, b = _numbers(cell)[:3]
            _check(t, mae("transfer"), f"transfer {where}")
            _check(n, mae("no_transfer"), f"no_transfer {where}")
            best = min(FAMILY_BASELINES, key=mae)
            assert re.search(rf"\({best}\)", cell), f"README names another best baseline than {best} for {where}"
            _check(b, mae(best), f"{best} {where}")


# ---------------------------------------------------------------------------- selection
def test_selection_table_matches_json():
    (table,) = [t for t in _tables(_section("Results")) if t[0][0] == "N"]
    data = _load("select_nb201.json")
    rows = [r for r in data["results"] if r["target_evals"] == 0]
    targets = table[0][1:4]
    for row in table[1:]:
        n = int(row[0])
        for cell, target in zip(row[1:4], targets):
            _check(
                _numbers(cell)[0],
                _mean(rows, "spearman", method="characteristics", samples_per_source=n, target=target),
                f"characteristics at N={n} on {target}",
            )
        # the baseline column: the best baseline per target, its range over targets
        best = []
        for target in targets:
            base = [
                r["spearman"]
                for r in rows
                if r["samples_per_source"] == n
                and r["target"] == target
                and r["method"] not in ("characteristics", "random", "evolution")
                and r["spearman"] is not None
            ]
            best.append(max(base))
        lo, hi = (_numbers(row[4]) + _numbers(row[4]))[:2]
        _check(lo, min(best), f"best baseline (lowest target) at N={n}")
        _check(hi, max(best), f"best baseline (highest target) at N={n}")


@pytest.mark.parametrize("name", sorted(p.name for p in RESULTS.glob("*.json")))
def test_every_result_json_parses_without_nan_tokens(name):
    """The shared encoder writes non-finite values as null: a strict parser must read every result."""

    def refuse(token):
        raise ValueError(f"{name} holds a non-standard JSON token {token}")

    json.loads((RESULTS / name).read_text(), parse_constant=refuse)


def test_evaluations_to_top1_sentence_matches_json():
    text = " ".join(_section("Results").split())
    m = re.search(
        rf"At N = (\d+) the model's search reaches the true top 1 % in ({NUM}) evaluations on average[^(]*"
        rf"\(random search ~({NUM})–({NUM}), regularized evolution[^~]*~({NUM})–({NUM})\)",
        text,
    )
    assert m, "the evaluations-to-top-1 % sentence of the README's results changed: update this test"
    rows = _load("select_nb201.json")["results"]
    n = int(m[1])
    # the model's figure: mean over every (target, target evaluations k) cell, as NOTES section 7
    _check(m[2], _mean(rows, "evals_to_top1", method="characteristics", samples_per_source=n), "model evals")
    for lo, hi, method in ((m[3], m[4], "random"), (m[5], m[6], "evolution")):
        vals = [
            r["evals_to_top1"]
            for r in rows
            if r["method"] == method and r["samples_per_source"] == n and r["target_evals"] == 0
        ]
        _check(lo, min(vals), f"{method} fewest")
        _check(hi, max(vals), f"{method} most")
