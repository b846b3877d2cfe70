"""Every experiment script runs in its quick config and writes its provenance beside its outputs.

(``test_build_metadataset.py`` checks the meta-dataset builder's journal, resumption and
tables; here only its ``main`` and the record it writes. ``test_experiment_acceleration.py``
covers ``acceleration.py``.)
"""

import importlib.util
import json
import socket
import subprocess
import sys

import pytest
from conftest import REPO

from nax.provenance import provenance

FIELDS = (
    "nax_version",
    "git_commit",
    "git_dirty",
    "python",
    "jax",
    "jaxlib",
    "numpyro",
    "platform",
    "machine",
    "cpu_count",
    "jax_backend",
    "jax_devices",
    "time_utc",
)


def _module(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


def _head() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip()


def _check_provenance(record: dict) -> None:
    import nax

    assert set(FIELDS) <= set(record)
    assert record["nax_version"] == nax.__version__
    if (REPO / ".git").exists():
        # HEAD may move while another engineer commits during the run: compare its form, and
        # equality when it did not move
        assert len(record["git_commit"]) == 40 and isinstance(record["git_dirty"], bool)
    assert socket.gethostname() not in json.dumps(record)


def test_provenance_commit_and_dirty_flag_follow_git(tmp_path):
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "other.py").write_text("y = 1\n")
    git("add", "code.py", "other.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    head = git("rev-parse", "HEAD").strip()

    clean = provenance(paths=["code.py"], repo=tmp_path)
    assert clean["git_commit"] == head and clean["git_dirty"] is False
    (tmp_path / "other.py").write_text("y = 2\n")  # unrelated work does not taint the record
    assert provenance(paths=["code.py"], repo=tmp_path)["git_dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance(paths=[tmp_path / "code.py"], repo=tmp_path)["git_dirty"] is True
    json.dumps(clean)  # serialisable as it is

    outside = provenance(repo=tmp_path / "no-such-checkout")
    assert outside["git_commit"] is None and outside["git_dirty"] is None


def test_provenance_of_this_checkout():
    p = provenance()
    _check_provenance(p)
    if (REPO / ".git").exists():
        assert p["git_commit"] == _head()


@pytest.mark.slow
def test_build_metadataset_quick_writes_config_and_provenance(tmp_path):
    mod = _module("build_metadataset")
    out = tmp_path / "meta"
    assert mod.main(["--config", "quick", "--out", str(out), "--max-runs", "1"]) == 0
    stats = json.loads((out / "run_stats.json").read_text())
    cfg = mod.CONFIGS["quick"]
    assert stats["config"] == json.loads(json.dumps(cfg.to_dict()))
    assert stats["command"] == cfg.command and stats["seed"] == cfg.arch_seed
    assert stats["total"]["runs"] == 1 and stats["sessions"][0]["runs_now"] == 1
    _check_provenance(stats["sessions"][0]["provenance"])
    header = json.loads((out / "journal.jsonl").read_text().splitlines()[0])
    assert header["nax_version"] == stats["sessions"][0]["provenance"]["nax_version"]


def test_metadata_card_quick_reproduces_the_shipped_card(tmp_path):
    mod = _module("metadata_card")
    assert mod.main(["--config", "quick", "--out", str(tmp_path)]) == 0
    card = json.loads((tmp_path / "sanity.json").read_text())
    shipped = json.loads((REPO / "nax" / "metadata" / "sanity.json").read_text())
    assert list(card["per_dataset"]) == ["digits", "mnist5k"]
    for ds, row in card["per_dataset"].items():
        assert row == pytest.approx(shipped["per_dataset"][ds])  # same tables, same statistics
    (pair,) = card["pairs"]
    want = next(p for p in shipped["pairs"] if {p["a"], p["b"]} == {"digits", "mnist5k"})
    assert pair["spearman"] == pytest.approx(want["spearman"]) and pair["n"] == want["n"]
    assert card["config"]["name"] == "quick" and card["command"].endswith("--config quick")
    _check_provenance(card)
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_verify_param_counts_quick_matches_the_table(tmp_path, shared_data):
    mod = _module("verify_param_counts")
    table = shared_data / "nb201" / "nb201_200epoch.csv"
    if not table.exists():
        pytest.skip(f"{table} is absent")
    out = mod.main(["--config", "quick", "--table", str(table), "--json", str(tmp_path / "pc.json")])
    saved = json.loads((tmp_path / "pc.json").read_text())
    assert saved["results"] == out["results"]
    cfg = mod.CONFIGS["quick"]
    for r in saved["results"]:
        assert r["cells"] == cfg.limit and r["match"] == cfg.limit and r["mismatch"] == 0
    assert saved["decomposition_checked"] == 3 * cfg.full_sample
    assert saved["config"]["name"] == "quick" and saved["seed"] == cfg.seed
    _check_provenance(saved)
