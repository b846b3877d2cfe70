"""``nax select``: bad tables give one clear line (exit 2); a tiny benchmark runs end to end."""

import json

import numpy as np
import pytest

from nax import characteristics as ch
from nax import cli, space, tables
from nax.search import select_benchmark as benchmark

S = space.nb201
CELLS = S.enumerate()


def _write(path, rows, header="arch,dataset,accuracy"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def _run(capsys, *argv):
    code = cli.main(["select", *argv])
    return code, capsys.readouterr()


def _table(tmp_path, n_datasets=2):
    """Every cell on ``n_datasets`` related synthetic datasets (percent), as a CSV."""
    rng = np.random.default_rng(0)
    X, names = ch.all_features()
    col = {n: i for i, n in enumerate(names)}
    # a few strong characteristics shared by the datasets, small dataset-specific deviations
    base = (
        -2 * X[:, col["disconnected"]]
        + 0.5 * X[:, col["live count nor_conv_3x3"]]
        - 0.3 * X[:, col["count avg_pool_3x3"]]
    )
    rows = []
    for d in range(n_datasets):
        acc = 50 + 10 * np.tanh(
            base / 3 + ch.centered(CELLS) @ rng.normal(0, 0.01, X.shape[1]) + rng.normal(0, 0.05, len(X))
        )
        rows += [(S.to_string(e), f"d{d}", round(float(a), 4)) for e, a in zip(CELLS, acc)]
    return _write(tmp_path / "t.csv", rows)


def test_unknown_operation(tmp_path, capsys):
    p = _write(tmp_path / "u.csv", [("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "a", 0.5)])
    code, out = _run(capsys, "benchmark", "--table", str(p), "--source", "a", "--target", "a")
    assert code == 2 and "unknown operation 'conv_5x5'" in out.err and len(out.err.strip().splitlines()) == 1


def test_duplicate_rows_without_seed(tmp_path, capsys):
    a = S.to_string(CELLS[5])
    p = _write(tmp_path / "d.csv", [(a, "x", 0.5), (a, "x", 0.6)])
    code, out = _run(capsys, "benchmark", "--table", str(p), "--source", "x", "--target", "x")
    assert code == 2 and "add a 'seed' column" in out.err


def test_target_without_rows_and_small_source(tmp_path, capsys):
    rows = [(S.to_string(e), "a", 0.1 + 0.01 * i) for i, e in enumerate(CELLS[:30])]
    rows += [(S.to_string(e), "b", 0.5) for e in CELLS[:5]]
    p = _write(tmp_path / "t.csv", rows)
    code, out = _run(capsys, "benchmark", "--table", str(p), "--source", "a", "b", "--target", "c")
    assert code == 2 and "target dataset 'c' has no rows" in out.err
    code, out = _run(capsys, "fit", "--table", str(p), "--source", "a", "b", "--out", str(tmp_path / "m.npz"))
    assert code == 2 and "'b' has 5 distinct architectures; at least 10" in out.err


def test_nan_accuracies_are_skipped_with_a_warning(tmp_path, capsys):
    rows = [(S.to_string(e), "a", 0.1 + 0.01 * i) for i, e in enumerate(CELLS[:30])]
    rows[3] = (rows[3][0], "a", "nan")
    p = _write(tmp_path / "n.csv", rows)
    with pytest.warns(tables.TableWarning, match="skipped 1 of 30 rows"):
        code, out = _run(capsys, "fit", "--table", str(p), "--source", "a", "--out", str(tmp_path / "m.npz"))
    assert code == 0
    m = ch.CharacteristicModel.load(str(tmp_path / "m.npz"))
    assert m.n_per_source.tolist() == [29]
    code, out = _run(capsys, "strengths", str(tmp_path / "m.npz"), "--top", "3")
    assert code == 0 and "strongest" in out.out and "weakest" in out.out


@pytest.mark.slow
def test_tiny_benchmark_end_to_end(tmp_path, capsys):
    p = _table(tmp_path)
    out_json = tmp_path / "r.json"
    fig = tmp_path / "s.png"
    code, out = _run(
        capsys,
        "benchmark",
        "--table",
        str(p),
        "--source",
        "d0",
        "d1",
        "--target",
        "d1",
        "--samples-per-source",
        "40",
        "--target-evals",
        "0",
        "5",
        "--repeats",
        "1",
        "--search-steps",
        "10",
        "--json",
        str(out_json),
        "--figure",
        str(fig),
    )
    assert code == 0, out.err
    res = json.loads(out_json.read_text())["results"]
    fields = {
        "target",
        "method",
        "samples_per_source",
        "target_evals",
        "spearman",
        "kendall",
        "top1_precision",
        "evals_to_top1",
        "regret_at_50",
    }
    assert all(fields <= set(r) for r in res)
    methods = {(r["method"], r["target_evals"]) for r in res}
    for m in benchmark.METHODS:
        assert (m, 5) in methods
    assert ("target_only", 0) not in methods
    by = {(r["method"], r["target_evals"]): r for r in res}
    # related datasets: the transferred ranking is good, random search has no ranking
    assert by[("characteristics", 0)]["spearman"] > 0.7
    assert by[("random", 0)]["spearman"] is None
    assert all(r["regret_at_50"] >= 0 for r in res)
    assert fig.stat().st_size > 1000
    # the JSON says where it came from; the printed tables compare the model with every baseline
    payload = json.loads(out_json.read_text())
    assert len(payload["provenance"]["git_commit"]) == 40 and isinstance(payload["provenance"]["git_dirty"], bool)
    assert payload["config"]["lower_is_better"] is False
    assert "best_baseline" in out.out and "ridge_characteristics" in out.out


@pytest.mark.slow
def test_loss_table_with_lower_is_better_benchmarks_like_its_accuracies(tmp_path, capsys):
    """Negative losses that rank as the accuracies do, reversed: the same rankings and searches."""
    acc_path = _table(tmp_path)
    rows = [line.split(",") for line in acc_path.read_text().splitlines()[1:]]
    loss_path = _write(
        tmp_path / "loss.csv", [(a, d, repr(3.0 - float(v) / 8)) for a, d, v in rows], header="arch,dataset,score"
    )
    args = [
        "--source",
        "d0",
        "d1",
        "--target",
        "d1",
        "--samples-per-source",
        "40",
        "--target-evals",
        "0",
        "5",
        "--repeats",
        "1",
        "--search-steps",
        "10",
    ]
    res = {}
    for name, path, extra in (("acc", acc_path, []), ("loss", loss_path, ["--lower-is-better"])):
        code, out = _run(
            capsys, "benchmark", "--table", str(path), *args, *extra, "--json", str(tmp_path / f"{name}.json")
        )
        assert code == 0, out.err
        res[name] = json.loads((tmp_path / f"{name}.json").read_text())["raw"]
    assert len(res["acc"]) == len(res["loss"]) > 0
    for a, b in zip(res["acc"], res["loss"]):
        assert a["method"] == b["method"]
        for m in ("spearman", "kendall", "top1_precision", "evals_to_top1"):
            assert a[m] == b[m], (a["method"], m)
        # regret in the table's units: a loss of acc / 8 has 1/8 the regret
        assert b["regret_at_50"] == pytest.approx(a["regret_at_50"] / 8, abs=1e-9)


@pytest.mark.slow
def test_cli_methods_restate_the_benchmark_and_a_subset_reruns_its_rows(tmp_path, capsys):
    from nax.cli import select

    assert select._METHODS == benchmark.METHODS
    p = _table(tmp_path)
    args = [
        "--table",
        str(p),
        "--source",
        "d0",
        "d1",
        "--target",
        "d1",
        "--samples-per-source",
        "30",
        "--target-evals",
        "0",
        "5",
        "--repeats",
        "1",
        "--search-steps",
        "5",
    ]
    rows = {}
    for name, extra in (
        ("all", ["--methods", "random", "ridge_onehot", "evolution"]),
        ("one", ["--methods", "evolution"]),
    ):
        code, out = _run(capsys, "benchmark", *args, *extra, "--json", str(tmp_path / f"{name}.json"))
        assert code == 0, out.err
        rows[name] = json.loads((tmp_path / f"{name}.json").read_text())["raw"]
    assert {r["method"] for r in rows["all"]} == {"random", "ridge_onehot", "evolution"}
    # evolution alone gives the rows it gives beside the others (its key follows the random order's draws)
    assert [r for r in rows["all"] if r["method"] == "evolution"] == rows["one"]


@pytest.mark.slow  # fits the model for three settings: ~20 s on the 2-core machine
def test_benchmark_sources_never_include_the_target(tmp_path, monkeypatch):
    """Leave one out: every (target, N, repeat) setting of ``nax select benchmark`` fits its
    model and baselines on the other datasets' rows only (the dissimilar synthetic target,
    which is none of them, on all of them)."""
    p = _table(tmp_path, n_datasets=3)
    seen = []
    real = benchmark._one_setting

    def spy(cfg, space, target, t_enc, t_acc, src_data, *a, **kw):
        seen.append((target, sorted(s for s, _ in src_data)))
        return real(cfg, space, target, t_enc, t_acc, src_data, *a, **kw)

    monkeypatch.setattr(benchmark, "_one_setting", spy)
    cfg = benchmark.BenchConfig(
        table=str(p),
        sources=("d0", "d1", "d2"),
        targets=("d0", "d2"),
        samples_per_source=(20,),
        target_evals=(0,),
        repeats=1,
        search_steps=20,
        dissimilar=True,
        methods=("characteristics", "ridge_onehot"),
    )
    out = benchmark.run(cfg, progress=False)
    assert seen == [("d0", ["d1", "d2"]), ("d2", ["d0", "d1"]), (benchmark.SYNTHETIC, ["d0", "d1", "d2"])]
    assert {r["target"] for r in out["results"]} == {"d0", "d2", benchmark.SYNTHETIC}
