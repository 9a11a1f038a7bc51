"""The report's findings, computed from studies whose answer is known."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest
from conftest import add_seeded_grid, add_trial

from analysis import best_trials, ci_separation, load_trials, lr_sensitivity
from analysis.findings import budget_finding, findings, range_test_finding
from analysis.report import main as report_main


def _found(trials: pd.DataFrame) -> list[str]:
    table = lr_sensitivity(trials)
    return [
        f.text
        for f in findings(
            trials=trials,
            best=best_trials(trials),
            sensitivity=table,
            accuracy_separation=ci_separation(table),
            sensitivity_separation=ci_separation(table, "sensitivity", higher_is_better=False),
        )
    ]


def test_a_flat_optimizer_is_found_least_sensitive_beyond_seed_noise(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    add_seeded_grid(optuna.create_study(storage=url, study_name="g", direction="maximize"))
    text = " ".join(_found(load_trials(url, "g")))
    assert "sgd is the least sensitive to its learning rate" in text
    assert "over seeds" in text
    assert "Against adam the difference exceeds seed noise" in text
    assert "Best configuration per optimizer: sgd 0.9800" in text


def test_too_few_runs_are_said_not_hidden(tmp_path):
    optuna_study = optuna.create_study(direction="maximize")
    for lr, accuracy in ((1e-3, 0.95), (1e-2, 0.97)):
        add_trial(optuna_study, "sgd", lr, accuracy)
        add_trial(optuna_study, "adam", lr / 10, accuracy - 0.01)
    url = f"sqlite:///{tmp_path / 's.db'}"
    copy = optuna.create_study(storage=url, study_name="s", direction="maximize")
    copy.add_trials(optuna_study.trials)
    text = " ".join(_found(load_trials(url, "s")))
    assert "cannot be told" in text
    assert "Too few runs for an interval (fewer than 5): sgd (2), adam (2)" in text


def test_the_budget_and_range_test_sentences_say_what_the_frames_say():
    reach = pd.DataFrame(
        {
            "optimizer": ["adam", "sgd"],
            "target": 0.98,
            "p": 0.9,
            "n_trials_needed": [3, math.inf],
            "share_reaching": [0.6, 0.0],
            "valid": True,
        }
    )
    text = budget_finding(reach).text
    assert "Trials needed to reach 0.98 with probability 90%: adam 3" in text
    assert "sgd never did" in text
    assert "cannot be said" in budget_finding(reach.assign(valid=False)).text
    comparison = pd.DataFrame(
        {
            "optimizer": ["adam", "sgd"],
            "rule": "valley",
            "lr": [1e-3, 1e-4],
            "inside": [True, False],
            "decades_off": [0.0, -1.5],
        }
    )
    text = range_test_finding(comparison).text
    assert "'valley' falls inside the good-LR band for 1 of 2 optimizers" in text
    assert "misses most for sgd (1.5 decades)" in text


def test_the_report_opens_with_the_findings(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    add_seeded_grid(optuna.create_study(storage=url, study_name="g", direction="maximize"))
    out = tmp_path / "rep"
    assert report_main(["--storage", url, "--study-name", "g", "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert page.index("<h2>Findings</h2>") < page.index("<h2>Trials per optimizer</h2>")
    assert "sgd is the least sensitive" in page
    assert "sgd is the least sensitive" in (out / "findings.txt").read_text()


@pytest.mark.slow
def test_the_report_compares_a_range_test_in_the_same_storage(tmp_path):
    from study.lr_range import main as lr_range_main

    url = f"sqlite:///{tmp_path / 'g.db'}"
    add_seeded_grid(optuna.create_study(storage=url, study_name="g", direction="maximize"))
    argv = [
        "--storage",
        url,
        "--optimizer",
        "sgd",
        "--optimizer",
        "adam",
        "--train-size",
        "512",
        "--num-updates",
        "30",
        "--threads",
        "1",
    ]
    assert lr_range_main(argv) == 0
    out = tmp_path / "rep"
    assert report_main(["--storage", url, "--study-name", "g", "--out", str(out)]) == 0
    compared = pd.read_csv(out / "lr_range.csv")
    assert set(compared["optimizer"]) == {"sgd", "adam"}
    assert {"inside", "decades_off"} <= set(compared.columns)
    assert (out / "lr_range.png").is_file()
    assert "The LR range test against this study" in (out / "findings.txt").read_text()
    # Asked for explicitly where there is none: one line, exit 2.
    empty = f"sqlite:///{tmp_path / 'none.db'}"
    optuna.create_study(storage=empty, study_name="x")
    assert report_main(["--storage", url, "--study-name", "g", "--range-test", empty]) == 2
