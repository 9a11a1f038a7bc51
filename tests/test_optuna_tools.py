"""Optuna's own plotly figures (the ``viz`` extra) on a database shaped like ours."""

from __future__ import annotations

import optuna
import pytest
from conftest import add_trial

go = pytest.importorskip("plotly.graph_objects", reason="the viz extra: pip install '.[viz]'")


@pytest.fixture
def our_study(tmp_path):
    optuna_study = optuna.create_study(
        study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize"
    )
    optuna_study.set_metric_names(["accuracy"])
    for k, (optimizer, lr) in enumerate([("adam", 1e-3), ("sgd", 0.1), ("adam", 3e-4)] * 2):
        add_trial(optuna_study, optimizer, lr * (1 + k), 0.95 + 0.005 * k)
    add_trial(optuna_study, "sgd", 5.0, None, diverged=True)
    return optuna_study


def test_optuna_visualization_draws_our_study(our_study):
    from optuna.visualization import plot_contour, plot_optimization_history, plot_slice

    history = plot_optimization_history(our_study, target_name="accuracy")
    assert history.layout.yaxis.title.text == "accuracy"
    assert isinstance(plot_slice(our_study), go.Figure)
    assert isinstance(plot_contour(our_study, params=["optimizer", "adam_lr"]), go.Figure)
    # A diverged trial is stored at chance, where the report's plots draw it.
    values = sorted(t.value for t in our_study.trials)
    assert values[0] == 0.1
