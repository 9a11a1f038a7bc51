"""The report's findings, computed from studies whose answer is known."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest
from conftest import add_seeded_grid, add_trial

from analysis import best_trials, ci_separation, load_trials, lr_sensitivity
from analysis.findings import OWN_BEST, budget_finding, findings, range_test_finding
from analysis.report import main as report_main


def _found(trials: pd.DataFrame) -> list[str]:
    table = lr_sensitivity(trials, n_boot=300)
    return [
        f.text
        for f in findings(
            trials=trials,
            best=best_trials(trials),
            sensitivity=table,
            accuracy_separation=ci_separation(table),
            sensitivity_separation=ci_separation(table, "good_lr_width"),
        )
    ]


def test_a_flat_optimizer_is_found_least_sensitive_with_n_and_method(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    add_seeded_grid(optuna.create_study(storage=url, study_name="g", direction="maximize"),
                    seeds=5)
    text = " ".join(_found(load_trials(url, "g")))
    assert "sgd is the least sensitive to its learning rate" in text
    assert "sgd at least 2.00 decades" in text  # the band reaches the grid's edge
    assert "95 % BCa-interval" in text and "n=5 seeds" in text
    assert "the widths' intervals are apart for: sgd over adam" in text
    assert "mean of 5 seeds; 95 % t-interval" in text
    assert ("Best configuration per optimizer (each the mean of its trial's 5 seeds): "
            "sgd 0.9800") in text


def test_single_runs_are_described_without_intervals(tmp_path):
    optuna_study = optuna.create_study(direction="maximize")
    for lr, accuracy in ((1e-3, 0.95), (1e-2, 0.97)):
        add_trial(optuna_study, "sgd", lr, accuracy)
        add_trial(optuna_study, "adam", lr / 10, accuracy - 0.01)
    url = f"sqlite:///{tmp_path / 's.db'}"
    copy = optuna.create_study(storage=url, study_name="s", direction="maximize")
    copy.add_trials(optuna_study.trials)
    text = " ".join(_found(load_trials(url, "s")))
    assert "sgd has the best accuracy: 0.9700 at lr 0.01 (one run)" in text
    assert "interval" in text and "cannot be told" in text
    assert "python -m study.confirm" in text and "--repeats 5" in text
    assert "95 %" not in text  # no interval anywhere


def test_the_budget_and_range_test_sentences_say_what_the_frames_say():
    reach = pd.DataFrame(
        {
            "optimizer": ["adam", "sgd", "adam", "sgd"],
            "target": [0.98, 0.98, 0.975, 0.9723],
            "target_kind": ["fixed", "fixed", OWN_BEST, OWN_BEST],
            "best": [0.9812, 0.9773, 0.9812, 0.9773],
            "p": 0.9,
            "n_trials_needed": [3, math.inf, 2, 4],
            "share_reaching": [0.6, 0.0, 0.7, 0.5],
            "valid": True,
        }
    )
    text = budget_finding(reach).text
    assert "Trials needed to reach a target with probability 90%" in text
    assert "drawn at random" in text  # the assumption the curve rests on
    assert "0.98: adam 3, sgd none of its trials (best 0.9773)" in text
    assert "its own best less 0.5 point: adam 2 (target 0.9750), sgd 4 (target 0.9723)" in text
    assert "cannot be said" in budget_finding(reach.assign(valid=False)).text
    comparison = pd.DataFrame(
        {
            "optimizer": ["adam", "sgd", "rmsprop"],
            "rule": "valley",
            "lr": [1e-3, 1e-4, 1e-3],
            "inside": [True, False, None],  # the study has no rmsprop
            "decades_off": [0.0, -1.5, math.nan],
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
    # The fixed targets and each optimizer's own best less half a point, every one reached
    # by its own optimizer.
    reach = pd.read_csv(out / "trials_to_reach.csv")
    assert {0.97, 0.975, 0.98} <= set(reach["target"])
    own = reach[reach["target_kind"] == OWN_BEST]
    assert set(own["optimizer"]) == {"sgd", "adam"} and (own["share_reaching"] > 0).all()


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
    nowhere = tmp_path / "not-written"
    assert report_main(["--storage", url, "--study-name", "g", "--range-test", empty,
                        "--out", str(nowhere)]) == 2
    assert not nowhere.exists()  # refused before anything is written


def test_two_studies_get_their_findings_each_never_mixed(tmp_path):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    for name, best in (("a", "sgd"), ("b", "adam")):
        optuna_study = optuna.create_study(storage=url, study_name=name, direction="maximize")
        for lr in (1e-3, 1e-2, 1e-1):
            for optimizer in ("sgd", "adam"):
                seeds = [0.98, 0.981, 0.979] if optimizer == best else [0.95, 0.951, 0.949]
                add_trial(optuna_study, optimizer, lr, None, seed_accuracies=seeds)
    out = tmp_path / "rep"
    assert report_main(["--storage", url, "--study-name", "a", "--study-name", "b",
                        "--out", str(out)]) == 0
    found = (out / "findings.txt").read_text().splitlines()
    assert any(line.startswith("- a: sgd has the best accuracy") for line in found)
    assert any(line.startswith("- b: adam has the best accuracy") for line in found)
    assert all(line.startswith(("- a: ", "- b: ")) for line in found)
    reach = pd.read_csv(out / "trials_to_reach.csv")
    assert reach["study"].notna().all() and reach["best"].notna().all()
