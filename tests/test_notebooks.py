"""The notebooks run end to end on small settings, and what they show is right.

Each notebook's cell tagged ``parameters`` holds its defaults; like papermill, the test
inserts a cell after it that overrides them, executes the notebook in a fresh kernel and
reads the JSON summary its last cell prints.
"""

import json
import os

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

NOTEBOOKS = REPO / "notebooks"


def run_notebook(name: str, params: dict, tmp_path, monkeypatch, timeout: int = 600) -> dict:
    """Execute ``notebooks/<name>`` with ``params`` injected; return its final JSON line."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    (idx,) = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} is committed with outputs"
    src = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters"]}))
    # the kernel imports nax from this checkout, installed or not
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.slow
def test_posteriors_notebook(tmp_path, monkeypatch):
    params = {
        "target": "fashion_mnist",
        "prior_steps": 300,
        "predict_steps": 300,
        "max_curves": 20,
        "n_show": 3,
        "cutoffs": (2, 8),
        "context_sizes": (0, 40),
        "delta": 0.05,
        "seed": 0,
    }
    s = run_notebook("posteriors.ipynb", params, tmp_path, monkeypatch)
    assert s["prior_datasets"] == sorted(s["sources"]) and "fashion_mnist" not in s["sources"]
    assert s["prior_ok"]
    for key in ("width_by_cutoff", "error_by_cutoff", "width_by_context", "error_by_context"):
        assert len(s[key]) == 2 and all(0 <= v < 1 for v in s[key]), (key, s[key])
    # more observed epochs, and more finished curves of the target, both narrow the prediction
    assert s["width_by_cutoff"][1] < 0.8 * s["width_by_cutoff"][0]
    assert s["width_by_context"][1] < 0.8 * s["width_by_context"][0]
    # after 8 of 12 epochs the final accuracy is known to within a few points
    assert s["error_by_cutoff"][1] < 0.06
    # the stopping decisions follow the rule: stopped at the first cutoff where P(better) < delta
    assert len(s["decisions"]) == 3
    for d in s["decisions"]:
        below = [c for c, p in zip(s["cutoffs"], d["p_better"]) if p < s["delta"]]
        assert d["stopped_at"] == (below[0] if below else -1), d
        assert d["beats_best"] == (d["final"] > s["best_so_far"])
    saved = sum(12 - d["stopped_at"] for d in s["decisions"] if d["stopped_at"] > 0) / (3 * 12)
    assert s["epochs_saved"] == pytest.approx(saved)


def _characteristics_checks(s, target, sources):
    assert s["target"] == target and s["sources"] == sources
    from nax import characteristics as ch
    from nax import space

    assert s["num_features"] == len(ch.features(space.nb201.enumerate()[:1])[1]) and s["strengths_sorted"]
    # cells with no input->output path are at chance on every dataset: the weakest characteristic
    assert "disconnected" in s["weakest"][:3]
    assert [r["k"] for r in s["results"]] == [0, 10, 30]
    for r in s["results"]:
        assert -1 <= r["spearman"] <= 1 and r["top1_true_accuracy"] <= r["best_true_accuracy"]
    assert all(v >= 0 for v in s["rms_deviation"].values())


@pytest.mark.slow  # runs a whole notebook in a kernel: 15-20 s each on the 2-core machine
def test_characteristics_notebook_on_the_meta_dataset(tmp_path, monkeypatch):
    params = {
        "table": "metadata",
        "target": None,
        "samples_per_source": None,
        "target_evals": (0, 10, 30),
        "top": 8,
        "seed": 0,
    }
    s = run_notebook("characteristics.ipynb", params, tmp_path, monkeypatch)
    _characteristics_checks(s, "fashion_mnist", ["animal_mnist", "digits", "mnist5k", "opencv_digits"])
    assert s["n_target"] == 157
    # the bundled datasets share a weak ranking (data card: Spearman 0.09-0.65 between them)
    assert s["results"][0]["spearman"] > 0.2


@pytest.mark.slow  # runs a whole notebook in a kernel: 15-20 s each on the 2-core machine
def test_characteristics_notebook_on_nb201(tmp_path, monkeypatch, shared_data):
    if not (shared_data / "nb201" / "nb201_200epoch.csv").exists():
        pytest.skip("the NAS-Bench-201 table is absent from the reference data")
    params = {
        "table": "auto",
        "target": None,
        "samples_per_source": 100,
        "target_evals": (0, 10, 30),
        "top": 8,
        "seed": 0,
    }
    s = run_notebook("characteristics.ipynb", params, tmp_path, monkeypatch)
    assert s["table"] == "nb201"
    _characteristics_checks(s, "imagenet16-120", ["cifar10", "cifar100"])
    assert s["n_target"] == 15625
    # NB201 rankings transfer well (benchmarks/NOTES.md section 7: 0.85-0.90 from 50-200 cells per source)
    assert s["results"][0]["spearman"] > 0.8
