"""The notebooks, executed with nbclient the way Jupyter runs them (the kernel in
``notebooks/``) against small synthetic studies laid out like a project: ``studies/*.db``
beside ``notebooks/``. The slow tests in ``test_report.py`` run them on real trained studies."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import optuna
import pytest
from conftest import add_trial, count_images, execute_notebook
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ENV = ("STUDY_STORAGE", "STUDY_NAME", "STUDY_NAMES")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """``tmp_path`` laid out as a project: ``notebooks/`` with copies of the notebooks,
    ``studies/`` for the databases; no study variable set."""
    shutil.copytree(NOTEBOOKS, tmp_path / "notebooks")
    (tmp_path / "studies").mkdir()
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    return tmp_path


def _tuned_study(url: str, name: str) -> None:
    """A small TPE-like study: two optimizers, complete, pruned and diverged trials."""
    optuna_study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    for lr, accuracy in ((1e-3, 0.95), (1e-2, 0.97), (3e-2, 0.98), (1e-1, 0.96)):
        add_trial(optuna_study, "sgd", lr, accuracy, momentum=0.9, schedule="cosine")
    for lr, accuracy in ((1e-4, 0.96), (3e-4, 0.975), (1e-3, 0.98), (3e-3, 0.97)):
        add_trial(optuna_study, "adam", lr, accuracy, weight_decay=1e-4)
    add_trial(optuna_study, "sgd", 3e-4, 0.6, state="pruned")
    add_trial(optuna_study, "adam", 5.0, None, diverged=True)


def _execute(project: Path, name: str) -> list:
    """Run ``project/notebooks/<name>`` with the kernel in ``notebooks/``."""
    return execute_notebook(project / "notebooks" / name)


def _text(outputs: list) -> str:
    return "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)


def test_lr_sensitivity_reads_a_relative_url_from_the_project_root(project, monkeypatch):
    _tuned_study(f"sqlite:///{project / 'studies' / 'x.db'}", "x")
    monkeypatch.setenv("STUDY_STORAGE", "sqlite:///studies/x.db")  # as given from the root
    monkeypatch.setenv("STUDY_NAME", "x")
    outputs = _execute(project, "lr_sensitivity.ipynb")
    text = _text(outputs)
    assert f"study 'x' in sqlite:///{project / 'studies' / 'x.db'}" in text
    assert "10 trials, evaluated on the test set" in text
    assert count_images(outputs) >= 6
    assert not (project / "notebooks" / "studies").exists()


def test_lr_sensitivity_names_the_absolute_path_of_a_missing_database(project, monkeypatch):
    monkeypatch.setenv("STUDY_STORAGE", "sqlite:///studies/missing.db")
    with pytest.raises(CellExecutionError) as err:
        _execute(project, "lr_sensitivity.ipynb")
    assert f"{project / 'studies' / 'missing.db'} does not exist" in str(err.value)
    assert "notebooks/studies" not in str(err.value)
    assert not (project / "studies" / "missing.db").exists()
    assert not (project / "notebooks" / "studies").exists()


def test_compare_studies_by_default_reads_default_and_quick_from_their_files(project):
    # What `python -m study.run --trials 50` and `... --study-name quick` write.
    _tuned_study(f"sqlite:///{project / 'studies' / 'default.db'}", "default")
    quick_url = f"sqlite:///{project / 'studies' / 'quick.db'}"
    _tuned_study(quick_url, "quick")
    outputs = _execute(project, "compare_studies.ipynb")
    text = _text(outputs)
    assert f"study 'default' in sqlite:///{project / 'studies' / 'default.db'}" in text
    assert f"study 'quick' in {quick_url}" in text
    tables = [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})]
    assert any("quick" in t and "default" in t for t in tables)  # both studies in a table
    assert count_images(outputs) >= 2


@pytest.mark.parametrize("name", ["lr_sensitivity.ipynb", "compare_studies.ipynb"])
def test_the_committed_notebooks_carry_no_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
