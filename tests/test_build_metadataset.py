"""The meta-dataset generator in its quick config: resumes exactly, writes valid tables."""

import importlib.util
import json
import sys

import pytest
from conftest import REPO

from nax import tables


def _module():
    spec = importlib.util.spec_from_file_location("build_metadataset", REPO / "experiments" / "build_metadataset.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_quick_build_resumes_without_loss_or_repeats(tmp_path, monkeypatch):
    mod = _module()
    cfg = mod.CONFIGS["quick"]
    n_total = len(cfg.archs()) * len(cfg.datasets)
    out = tmp_path / "meta"

    first = mod.run(cfg, out, max_runs=3, progress=False)  # "killed" after three runs
    assert first["runs_total"] == 3
    with open(out / "journal.jsonl", "a") as f:  # and killed in the middle of writing a fourth
        f.write('{"arch": "|nor_conv_3x3~0|+|no')
    second = mod.run(cfg, out, progress=False)
    assert second["runs_now"] == n_total - 3 and second["runs_total"] == n_total

    header, records = mod.read_journal(out / "journal.jsonl")
    assert header["config"]["name"] == "quick"
    keys = [(r.dataset, r.arch) for r in records]
    assert len(keys) == len(set(keys)) == n_total

    # a third run trains nothing
    assert mod.run(cfg, out, progress=False)["runs_now"] == 0

    for ds in cfg.datasets:
        ct = tables.load_curves(out / f"{ds}.csv")
        assert ct.n_runs == len(cfg.archs()) and ct.n_epochs == cfg.train.epochs
        assert set(ct.meta["arch"]) == set(cfg.archs())
    at = tables.load_archs(out / "archs.csv")
    assert len(at.archs) == n_total

    # resuming with another config is refused
    other = mod.Config("quick", cfg.datasets, 4, 2019, cfg.train, cfg.command)
    with pytest.raises(ValueError, match="another config"):
        mod.run(other, out, progress=False)


@pytest.mark.slow
def test_rerun_from_seed_is_identical(tmp_path):
    mod = _module()
    cfg = mod.CONFIGS["quick"]
    a = mod.run(cfg, tmp_path / "a", max_runs=2, progress=False)
    b = mod.run(cfg, tmp_path / "b", max_runs=2, progress=False)
    assert a["runs_total"] == b["runs_total"] == 2
    strip = lambda p: [
        {k: v for k, v in json.loads(l).items() if k not in ("wall_s", "curve")}
        | {"acc": [m["val_accuracy"] for m in json.loads(l).get("curve", [])]}
        for l in p.read_text().splitlines()
    ]
    assert strip(tmp_path / "a" / "journal.jsonl") == strip(tmp_path / "b" / "journal.jsonl")


def test_full_config_is_the_shipped_metadataset():
    """The full config (training = ``train.PRESETS["metadata"]``) is what built nax/metadata:
    every shipped journal's header matches it, so ``read_all`` accepts them and a rebuild
    would resume rather than start over."""
    from nax import train

    mod = _module()
    cfg = mod.CONFIGS["full"]
    assert cfg.train == train.PRESETS["metadata"]
    records = mod.read_all(REPO / "nax" / "metadata", cfg)  # raises on a header that differs
    assert len(records) == len(cfg.archs()) * len(cfg.datasets)
    assert {r.dataset for r in records} == set(cfg.datasets)


def test_torn_line_is_cut_once_and_non_finite_values_are_null(tmp_path):
    """The journal the builder writes (``nax.journal``): a torn tail is dropped with a
    JournalWarning and cut on reopen; a NaN loss is written as null."""
    from nax import journal

    path = tmp_path / "journal.jsonl"
    with journal.Journal.create(path, {"kind": "k"}) as j:
        j.append({"loss": float("nan"), "acc": 0.5})
    with open(path, "a") as f:
        f.write('{"loss": 0.')
    with pytest.warns(journal.JournalWarning, match="incomplete"):
        header, record = journal.read(path)
    assert header == {"kind": "k"} and record == {"loss": None, "acc": 0.5}
    assert path.read_text().splitlines()[1] == '{"loss":null,"acc":0.5}'
    journal.Journal.reopen(path).close()
    assert path.read_text().endswith('"acc":0.5}\n')
