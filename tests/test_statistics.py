"""The statistics behind the findings: intervals whose coverage holds at a few seeds, a
sensitivity measure that does not depend on the searched range, and findings that name
their n and method. Known answers, no training."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import add_trial

from analysis import ci_separation, confirmation, load_trials, lr_sensitivity
from analysis.findings import findings
from analysis.statistics import holm, t_interval, welch_p
from analysis.tables import best_trials, seed_noise_verdicts

# A grid of 4 points per decade from 1e-5 to 1.
GRID = [10 ** (-5 + k / 4) for k in range(21)]
# Each optimizer's known good band (log10 ends, on grid points) and whether it touches the
# grid's edge; outside it the accuracy falls well below the 1-point tolerance.
BANDS = {"sgd": (-3.0, -1.5, False), "adam": (-4.5, -3.5, False), "rmsprop": (-0.75, 0.0, True)}


@pytest.mark.parametrize("n", [3, 5, 10])
def test_the_t_interval_covers_the_true_mean_95_times_in_100(n):
    rng = np.random.default_rng(n)
    true_mean, sd = 0.975, 0.004
    covered = 0
    for _ in range(2000):
        lo, hi = t_interval(true_mean + sd * rng.standard_normal(n))
        covered += lo <= true_mean <= hi
    assert 0.93 <= covered / 2000 <= 0.97


def test_no_interval_from_fewer_than_three_values():
    assert all(math.isnan(v) for v in t_interval([0.97, 0.98]))
    assert math.isnan(welch_p([0.97, 0.98], [0.96, 0.97, 0.95]))


def test_holm_adjusts_step_down_and_keeps_the_order():
    adjusted = holm([0.01, 0.04, 0.03, math.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])


def _level(optimizer: str, log_lr: float) -> float:
    low, high, _ = BANDS[optimizer]
    if low - 1e-9 <= log_lr <= high + 1e-9:
        return 0.98
    return 0.98 - 0.03 - 0.02 * min(abs(log_lr - low), abs(log_lr - high))


def _grid_study(*, keep=lambda log_lr: True, seeds: int = 5) -> pd.DataFrame:
    """The grid written through the record contract (in-memory storage): ``seeds`` seeds per
    point, spread +-0.002 around the point's level."""
    storage = optuna.storages.InMemoryStorage()
    optuna_study = optuna.create_study(storage=storage, study_name="g", direction="maximize")
    offsets = np.linspace(-0.002, 0.002, seeds)
    for optimizer in BANDS:
        for lr in GRID:
            if keep(math.log10(lr)):
                level = _level(optimizer, math.log10(lr))
                add_trial(optuna_study, optimizer, lr, None,
                          seed_accuracies=[level + o for o in offsets])
    return load_trials(storage, "g")


def test_a_grid_with_known_bands_gives_those_widths_and_edge_flags():
    table = lr_sensitivity(_grid_study(), n_boot=200)
    table = table.set_index("optimizer")
    for optimizer, (low, high, at_edge) in BANDS.items():
        row = table.loc[optimizer]
        assert row["good_lr_width"] == pytest.approx(high - low), optimizer
        assert math.log10(row["good_lr_low"]) == pytest.approx(low)
        assert bool(row["good_lr_width_at_edge"]) is at_edge, optimizer
        assert row["n_seeds"] == 5 and row["interval_method"] == "bca"
        assert row["good_lr_width_lo"] <= row["good_lr_width"] <= row["good_lr_width_hi"]


def test_removing_learning_rates_outside_every_band_changes_no_width():
    full = lr_sensitivity(_grid_study(), n_boot=50)
    inside_some = lambda log_lr: any(  # noqa: E731
        low - 0.25 - 1e-9 <= log_lr <= high + 0.25 + 1e-9 for low, high, _ in BANDS.values())
    cut = lr_sensitivity(_grid_study(keep=inside_some),
                         n_boot=50)
    assert cut["n_lrs"].max() < full["n_lrs"].max()  # points were removed
    by_width = [t.sort_values("good_lr_width", ascending=False)["optimizer"].tolist()
                for t in (full, cut)]
    assert by_width[0] == by_width[1] == ["sgd", "adam", "rmsprop"]
    widths = [t.set_index("optimizer")["good_lr_width"] for t in (full, cut)]
    pd.testing.assert_series_equal(widths[0].sort_index(), widths[1].sort_index())
    # The range-averaged score moves with the range: that is why it is not the headline.
    scores = [t.set_index("optimizer")["sensitivity"] for t in (full, cut)]
    assert not np.allclose(scores[0].sort_index(), scores[1].sort_index())


def _confirm_study(seeds: dict[str, list[float]]) -> pd.DataFrame:
    storage = optuna.storages.InMemoryStorage()
    optuna_study = optuna.create_study(storage=storage, study_name="c.confirm",
                                       direction="maximize")
    for k, (optimizer, values) in enumerate(seeds.items()):
        for value in values:
            add_trial(optuna_study, optimizer, 1e-3, value, source_trial=k)
    return load_trials(storage, "c.confirm")


def test_confirmation_gives_t_intervals_and_holm_verdicts_with_n():
    trials = _confirm_study({
        "adam": [0.981, 0.982, 0.980, 0.983, 0.981],
        "sgd": [0.975, 0.976, 0.974, 0.975, 0.977],
        "adamw": [0.980, 0.983, 0.979],
        "rmsprop": [0.96, 0.97]})
    table = confirmation(trials).set_index("optimizer")
    assert table.loc["adam", "interval_method"] == "t"
    values = [0.981, 0.982, 0.980, 0.983, 0.981]
    assert (table.loc["adam", "mean_lo"], table.loc["adam", "mean_hi"]) == pytest.approx(
        t_interval(values))
    assert table.loc["rmsprop", "interval_method"] == "none"  # 2 seeds
    verdicts = seed_noise_verdicts(trials).set_index(["a", "b"])
    adam_sgd = verdicts.loc[("adam", "sgd")]
    assert bool(adam_sgd["exceeds_noise"])
    assert "mean over 5 and 5 seeds" in adam_sgd["verdict"]
    assert "Welch t-interval" in adam_sgd["verdict"]
    assert "over 3 pairs tested" in adam_sgd["verdict"]  # 6 pairs, 3 without rmsprop's seeds
    assert "no interval" in verdicts.loc[("adam", "rmsprop"), "verdict"]


def test_every_finding_with_a_figure_names_its_n_and_interval_method():
    trials = _grid_study()
    confirm = _confirm_study({
        "adam": [0.981, 0.982, 0.980], "sgd": [0.975, 0.976, 0.974]})
    table = lr_sensitivity(trials, n_boot=200)
    found = findings(trials=trials, best=best_trials(trials), sensitivity=table,
                     accuracy_separation=ci_separation(table),
                     sensitivity_separation=ci_separation(table, "good_lr_width"),
                     confirmation=confirmation(confirm),
                     seed_noise=seed_noise_verdicts(confirm))
    assert found[0].text.startswith("Over fresh seeds (python -m study.confirm)")
    with_interval = [f.text for f in found if "interval" in f.text and "95 %" in f.text]
    assert len(with_interval) >= 4
    for text in with_interval:
        assert "n=" in text or "seeds" in text, text
        assert any(m in text for m in ("t-interval", "BCa-interval")), text
    assert any("Holm" in f.text for f in found)


def test_a_tpe_study_of_single_runs_says_how_much_runs_differ():
    storage = optuna.storages.InMemoryStorage()
    optuna_study = optuna.create_study(storage=storage, study_name="t", direction="maximize")
    for k, lr in enumerate((1e-3, 3e-3, 1e-2)):
        add_trial(optuna_study, "sgd", lr * 10, 0.98 - 0.001 * k)
        add_trial(optuna_study, "adam", lr, 0.975 - 0.001 * k)
    trials = load_trials(storage, "t").assign(sampler="tpe")  # as TPE's trials record it
    table = lr_sensitivity(trials)
    texts = [f.text for f in findings(
        trials=trials, best=best_trials(trials), sensitivity=table,
        accuracy_separation=ci_separation(table),
        sensitivity_separation=ci_separation(table, "good_lr_width"))]
    (spread,) = [t for t in texts if t.startswith("Expect differences between runs")]
    assert "over 5 runs of the default study" in spread and "sgd 0.4" in spread
    assert not any("95 %" in t for t in texts)


def test_two_configurations_at_one_learning_rate_are_not_pooled_as_seeds():
    storage = optuna.storages.InMemoryStorage()
    optuna_study = optuna.create_study(storage=storage, study_name="f", direction="maximize")
    add_trial(optuna_study, "sgd", 0.1, None, momentum=0.9, seed_accuracies=[0.98] * 3)
    add_trial(optuna_study, "sgd", 0.1, None, momentum=0.0, seed_accuracies=[0.90] * 3)
    row = lr_sensitivity(load_trials(storage, "f")).iloc[0]
    assert row["n_lrs"] == 2 and row["n_seeds"] == 3
    assert row["best_accuracy"] == pytest.approx(0.98)
    assert row["best_seed_accuracies"] == pytest.approx([0.98] * 3)
