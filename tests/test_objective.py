from __future__ import annotations

import math

import optuna
import pytest
from conftest import add_trial

from analysis import load_curves
from study.search.objective import Objective
from study.store import records
from study.train.config import TrialConfig
from study.train.loop import fit


def test_each_epoch_records_the_rates_range_and_the_momentum_for_the_analysis(tmp_path, tiny_data):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="o", direction="maximize")
    config = TrialConfig(
        optimizer="sgd",
        lr=0.05,
        epochs=3,
        batch_size=32,
        schedule="one_cycle",
    )
    optuna_study.optimize(Objective(lambda t: config, tiny_data), n_trials=1)
    attrs = optuna_study.get_trials()[0].user_attrs
    history = fit(config, tiny_data).history
    for attr, name in records.CURVES.items():
        if attr != "epoch_seconds":
            assert attrs[attr] == [getattr(s, name) for s in history], attr
    assert all(lo < hi for lo, hi in zip(attrs["lr_min"], attrs["lr_max"], strict=True))
    # an older trial, written before lr_min, lr_max and momentum existed, still reads
    add_trial(optuna_study, "adam", 1e-3, 0.9)
    curves = load_curves(url, "o")
    new, old = curves[curves["number"] == 0], curves[curves["number"] == 1]
    assert new["lr_max"].tolist() == pytest.approx(attrs["lr_max"])
    assert new["momentum"].tolist() == pytest.approx(attrs["momentum"])
    assert len(old) == 3 and old[["lr_min", "lr_max", "momentum"]].isna().all().all()
    assert old["lr"].notna().all()


def test_an_optimizer_without_momentum_records_none(tmp_path, tiny_data):
    plain = "adagrad"
    try:
        config = TrialConfig(optimizer=plain, lr=0.01, epochs=1, batch_size=32)
    except ValueError:
        pytest.skip(f"no {plain} optimizer registered")
    url = f"sqlite:///{tmp_path / 'p.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="p", direction="maximize")
    optuna_study.optimize(Objective(lambda t: config, tiny_data), n_trials=1)
    assert optuna_study.get_trials()[0].user_attrs["momentum"] == [None]
    curves = load_curves(url, "p")
    assert curves["momentum"].isna().all() and not math.isnan(curves["lr_max"].iloc[0])
