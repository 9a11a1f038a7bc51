"""The end-of-run summary's next steps: commands that work as printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import add_trial

from study.summary import next_steps

VENV_BIN = str(Path(sys.executable).absolute().parent)


@pytest.fixture
def small_study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    url = "sqlite:///studies/s.db"
    optuna_study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    optuna_study.set_user_attr("space", "default")
    add_trial(optuna_study, "adam", 1e-3, 0.97)
    add_trial(optuna_study, "sgd", 0.1, 0.96)
    return url


def _without_venv() -> dict[str, str]:
    """The environment of a shell where the virtual environment is not activated."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p != VENV_BIN
    )
    return env


def _shell(command: str, cwd, env) -> subprocess.CompletedProcess:
    """Run ``command`` as a user types it into a shell."""
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_next_steps_work_as_printed_without_an_activated_venv(small_study, monkeypatch, tmp_path):
    env = _without_venv()
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.delenv("MAKELEVEL", raising=False)
    report, trials = next_steps("s", small_study)[:2]
    assert report.startswith("Report: ") and trials.startswith("Best trial: ")
    # Not the bare names: the shell would not find this environment's python or optuna.
    assert not report.startswith("Report: python ")
    run = _shell(report.removeprefix("Report: ") + " --out rep", tmp_path, env)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "rep" / "index.html").is_file()
    run = _shell(trials.removeprefix("Best trial: "), tmp_path, env)
    assert run.returncode == 0, run.stderr
    assert "state: COMPLETE" in run.stdout
    assert max(map(len, run.stdout.splitlines())) < 100  # reads in a terminal


def test_with_the_venv_on_path_the_commands_use_the_bare_names(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", VENV_BIN + os.pathsep + _without_venv()["PATH"])
    monkeypatch.delenv("MAKELEVEL", raising=False)
    lines = next_steps("my study", "sqlite:///studies/x.db", storage_option="sqlite:///x.db")
    assert lines[0] == (
        "Report: python -m analysis.report --study-name 'my study' --storage sqlite:///x.db"
    )
    assert lines[1].startswith("Best trial: optuna best-trial --study-name 'my study'")


def test_under_make_the_commands_are_make_targets(monkeypatch):
    monkeypatch.setenv("MAKELEVEL", "1")
    assert next_steps("default", "sqlite:///studies/default.db")[0] == "Report: make report"
    assert next_steps("lr-grid", "sqlite:///studies/lr-grid.db")[0] == (
        "Report: make report STUDY=lr-grid"
    )
    # A study outside studies/ is not what the Makefile opens: plain commands then.
    assert "make" not in next_steps("x", "sqlite:///y.db", storage_option="sqlite:///y.db")[0]


def test_next_steps_say_where_a_hidden_password_goes():
    url = "postgresql://me:***@db:5432/studies"
    lines = next_steps("s", url, storage_option=url)
    assert lines[-1] == "(The database password is shown as ***: put yours in its place.)"
    assert "password" not in " ".join(next_steps("s", "sqlite:///x.db", storage_option="x"))
