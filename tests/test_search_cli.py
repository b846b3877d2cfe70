"""``nax search`` end to end with the table evaluator: NAS-Bench-201 and a simulated curve table."""

from __future__ import annotations

import json

import pytest
from test_search_support import EPOCHS, simulated_curve_csv

from nax import cli
from nax.search import journal as journal_lib
from nax.search import sources as sources_lib


@pytest.fixture(scope="module")
def nb201(shared_data):
    path = shared_data / "nb201" / "nb201_200epoch.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def test_nb201_evolution_search_and_resume(nb201, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "search",
        "--dataset",
        "cifar10",
        "--strategy",
        "evolution",
        "--evaluator",
        "table",
        "--table",
        str(nb201),
        "--budget-epochs",
        "2000",
        "--population",
        "4",
        "--sample",
        "2",
        "--seed",
        "1",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("\nrun ") + printed.startswith("run ") == 10 and "best 0." in printed
    summary = json.loads((out / "summary.json").read_text())
    head, events = journal_lib.read(out / "journal.jsonl")
    ends = [e for e in events if e["event"] == "end"]
    assert summary["runs"] == 10 and summary["epochs_spent"] == 2000 and summary["epochs_saved_by_stopping"] == 0
    assert summary["best_accuracy"] == max(e["final"] for e in ends) and 0.5 < summary["best_accuracy"] < 0.95
    assert "early stopping off" in summary["notes"][0]
    for name in ("curves.png", "progress.png"):
        assert (out / name).stat().st_size > 1000

    # cut the journal after run 6 and resume from the directory alone: the same 10 runs
    lines = (out / "journal.jsonl").read_bytes().split(b"\n")
    keep = next(i for i, l in enumerate(lines) if b'"event":"end","run":6' in l)
    (out / "journal.jsonl").write_bytes(b"\n".join(lines[: keep + 1]) + b'\n{"event":"start","ru')
    with pytest.warns(journal_lib.JournalWarning):
        assert cli.main(["search", "--resume", str(out)]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert {k: again[k] for k in ("best_arch", "best_accuracy", "epochs_spent", "runs")} == {
        k: summary[k] for k in ("best_arch", "best_accuracy", "epochs_spent", "runs")
    }
    _, events2 = journal_lib.read(out / "journal.jsonl")
    assert [e["event"] for e in events2].count("resume") == 1
    assert [(e["run"], e["arch"], e["final"]) for e in events2 if e["event"] == "end"] == [
        (e["run"], e["arch"], e["final"]) for e in ends
    ]

    # the same directory with another config is refused, one clear line, exit 2
    assert cli.main(argv[:-2] + ["--seed", "2", "--resume", str(out)]) == 2
    assert "seed: journal 1, now 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset", "cifar11"], "unknown dataset 'cifar11' in architecture table"),
        (["--dataset", "cifar10", "--budget-epochs", "0"], "budget-epochs must be positive"),
        (["--dataset", "cifar10", "--transfer-from", "cifar10"], "cannot also be a transfer-from dataset"),
    ],
)
def test_bad_input_is_one_clear_line(nb201, tmp_path, capsys, extra, message):
    argv = [
        "search",
        "--strategy",
        "random",
        "--evaluator",
        "table",
        "--table",
        str(nb201),
        "--out",
        str(tmp_path / "x"),
        *extra,
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nax search: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x" / "journal.jsonl").exists()


def test_unknown_strategy_and_missing_resume(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["search", "--dataset", "digits", "--strategy", "hill"])
    assert e.value.code == 2 and "invalid choice: 'hill'" in capsys.readouterr().err
    assert cli.main(["search", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no journal at" in capsys.readouterr().err


def test_corrupt_journal_on_resume(tmp_path, capsys):
    csv = simulated_curve_csv(tmp_path / "sim.csv")
    out = tmp_path / "run"
    argv = [
        "search",
        "--dataset",
        "beta",
        "--strategy",
        "random",
        "--no-early-stop",
        "--evaluator",
        "table",
        "--table",
        str(csv),
        "--budget-epochs",
        str(3 * EPOCHS),
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    lines = (out / "journal.jsonl").read_text().split("\n")
    lines[3] = lines[3].replace('"run"', '"r#n"')  # still JSON, but an epoch event without its run
    (out / "journal.jsonl").write_text("\n".join(lines))
    capsys.readouterr()
    assert cli.main(["search", "--resume", str(out)]) == 2
    assert "journal.jsonl:4: corrupt journal line: epoch event lacks ['run']" in capsys.readouterr().err
    lines[3] = lines[3][1:]  # not JSON at all
    (out / "journal.jsonl").write_text("\n".join(lines))
    assert cli.main(["search", "--resume", str(out)]) == 2
    assert "journal.jsonl:4: corrupt journal line (" in capsys.readouterr().err


def test_training_search_trains_as_the_shipped_meta_dataset_was():
    """The default training preset of a search is the meta-dataset's own TrainConfig (read
    from its journal header), so what transfers from it is on the scale of the new runs."""
    from pathlib import Path

    from nax import train
    from nax.search import config as config_lib

    journal = Path(sources_lib.METADATA_DIR) / "journal.jsonl"
    if not journal.is_file():
        pytest.skip(f"no meta-dataset journal at {journal}")
    recorded = json.loads(journal.read_text().splitlines()[0])["config"]["train"]
    recorded = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()}
    cfg = config_lib.SearchConfig(dataset="mnist5k")
    assert cfg.preset == "metadata"
    assert train.preset(cfg.preset).replace(seed=recorded["seed"]) == train.TrainConfig(**recorded)
    with pytest.raises(ValueError, match="unknown training preset 'huge'"):
        config_lib.SearchConfig(dataset="mnist5k", preset="huge")


def test_default_tables_are_the_shipped_meta_dataset_curves():
    """`nax search --dataset NAME` with no --table transfers from the shipped curve tables
    (archs.csv beside them is derived from the same runs and is not mixed in)."""
    from nax.search import config as config_lib

    if not (sources_lib.METADATA_DIR / "mnist5k.csv").is_file():
        pytest.skip(f"no shipped meta-dataset in {sources_lib.METADATA_DIR}")
    cfg = config_lib.SearchConfig(dataset="mnist5k")
    kind, table = sources_lib.load_tables(cfg)
    assert kind == "curve"
    assert sources_lib.sources_of(cfg, kind, table) == ["animal_mnist", "digits", "fashion_mnist", "opencv_digits"]
    finals = sources_lib.final_accuracies(kind, table, __import__("nax").space.nb201)
    assert len(finals.accuracy) == 5 * 157


def test_stop_adapt_flag_reaches_the_config_and_the_rule(monkeypatch, tmp_path):
    """`--no-stop-adapt` keeps the sources' extrapolation noise; the default learns it from
    the search's finished runs too. Both reach the config (so the journal records them) and
    the curve rule the search builds."""
    from nax import curves
    from nax.cli import search as search_cli
    from nax.curves import stopping
    from nax.search import config as config_lib

    parser = cli.build_parser()
    base = ["search", "--dataset", "mnist5k"]
    assert search_cli._config(parser.parse_args(base)).stop_adapt is True
    cfg = search_cli._config(parser.parse_args(base + ["--no-stop-adapt"]))
    assert cfg.stop_adapt is False and cfg.to_dict()["stop_adapt"] is False
    assert config_lib.SearchConfig.from_dict(cfg.to_dict()) == cfg
    from test_curves_calibration import hand_prior

    # a hand-made prior stands in for fitting one (minutes on two cores); the rule is the real one
    monkeypatch.setattr(curves, "fit_prior", lambda *a, **kw: hand_prior())
    seen = {}
    real = stopping.stop_rule
    monkeypatch.setattr(
        stopping,
        "stop_rule",
        lambda prior, horizon, config: seen.update(adapt=config.adapt) or real(prior, horizon, config),
    )
    csv = simulated_curve_csv(tmp_path / "sim.csv")
    parts = config_lib.build(
        config_lib.SearchConfig(
            dataset="beta", strategy="random", evaluator="table", tables=(str(csv),), stop_adapt=False
        )
    )
    assert seen["adapt"] is False and parts.stop_rule is not None
