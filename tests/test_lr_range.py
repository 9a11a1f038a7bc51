"""The learning-rate range test: the test itself (``study.train.range_test``), its storage
(``study.store.range_tests``), its command line (``study.lr_range``) and its reader, plot and
comparison with a study (``analysis.range_test``)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from conftest import add_seeded_grid, add_trial
from torch import nn

from analysis import load_trials
from analysis.range_test import compare_with_study, load_lr_range, lr_range_plot
from analysis.tables import sensitivity_metrics
from study.lr_range import lr_range_config, main, store_result
from study.store import records
from study.store.range_tests import open_range_study, store_range_test
from study.store.storage import (
    SETTINGS_COMPLETE,
    StorageError,
    default_storage_url,
    open_storage,
)
from study.train.config import TrialConfig
from study.train.data import Dataset
from study.train.range_test import (
    END_LR,
    RULES,
    check_range,
    lr_range_test,
    smooth_losses,
    suggest_lrs,
)

REPO = Path(__file__).resolve().parent.parent


def logistic_problem(scale: float, n: int = 512, d: int = 10, k: int = 10, seed: int = 0):
    """Ten Gaussian blobs in ``d`` dimensions times ``scale``, a fifth of the labels
    random (so the best weights are finite and a too-large step blows the loss up), and
    its curvature at zero weights: ``L = lambda_max(E[x x^T]) / k`` (inputs with a 1 for
    the bias), the Hessian's largest eigenvalue of softmax regression with uniform
    predictions. Full-batch gradient descent takes steps up to about ``1 / L`` safely and
    is unstable above ``2 / L``: ``1 / L`` is the known good learning rate."""
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(k, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    x = scale * (centres[y] + torch.randn(n, d, generator=g))
    noisy = torch.rand(n, generator=g) < 0.2
    y = torch.where(noisy, torch.randint(0, k, (n,), generator=g), y)
    data = Dataset(x, y, x[:64], y[:64], x[:64], y[:64], eval_set="test")
    with_bias = torch.cat([x, torch.ones(n, 1)], dim=1)
    curvature = torch.linalg.eigvalsh(with_bias.T @ with_bias / n).max().item() / k
    return data, curvature


def zero_linear(d: int = 10, k: int = 10) -> nn.Linear:
    """Softmax regression from zero weights (uniform predictions: the curvature above)."""
    model = nn.Linear(d, k)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    return model


# Full-batch plain gradient descent (no momentum): the textbook step-size limits hold.
GD = TrialConfig(optimizer="sgd", lr=0.1, batch_size=512)


@pytest.mark.parametrize("scale", [10.0, 100.0])
def test_suggestions_are_near_the_known_good_lr_and_it_stops_at_divergence(scale):
    data, curvature = logistic_problem(scale)
    good = 1 / curvature  # 3e-3 at scale 10, 3e-5 at scale 100
    result = lr_range_test(GD, data, model=zero_linear())
    assert set(result.suggestions) == set(RULES)
    for rule, lr in result.suggestions.items():
        assert good / 10 <= lr <= good * 10, (rule, lr, good)
    assert result.why == "diverged"
    assert 2 * good < result.stopped_at < END_LR  # never below the stability limit
    assert result.stopped_at == result.lrs[-1] and len(result.lrs) < 200


def test_without_smoothing_it_stops_soon_after_the_stability_limit():
    data, curvature = logistic_problem(10.0)
    result = lr_range_test(GD, data, model=zero_linear(), smooth=0.0)
    assert result.why == "diverged"
    assert 2 / curvature < result.stopped_at < 20 / curvature
    assert result.smoothed == result.losses  # beta 0: the raw losses


def test_learning_rates_rise_exponentially_and_the_test_is_seeded():
    data, _ = logistic_problem(1.0)
    kwargs = {"start_lr": 1e-4, "end_lr": 1e-2, "num_updates": 5}
    result = lr_range_test(GD, data, model=zero_linear(), **kwargs)
    np.testing.assert_allclose(result.lrs, [1e-4, 10**-3.5, 1e-3, 10**-2.5, 1e-2])
    assert result.why == "reached end_lr" and result.stopped_at == 1e-2
    assert result.config.lr == 1e-4  # what was stored: the first rate
    again = lr_range_test(GD, data, model=zero_linear(), **kwargs)
    assert again.losses == result.losses


def test_a_non_finite_loss_stops_the_test_and_is_not_recorded():
    data, _ = logistic_problem(1.0)
    bad = Dataset(
        data.train_x * math.inf,
        data.train_y,
        data.eval_x,
        data.eval_y,
        data.test_x,
        data.test_y,
        eval_set="test",
    )
    result = lr_range_test(GD, bad, model=zero_linear(), start_lr=1e-3)
    assert result.why == "non-finite loss" and result.stopped_at == 1e-3
    assert result.lrs == () and all(math.isnan(v) for v in result.suggestions.values())


def test_smoothing_is_debiased():
    assert smooth_losses([2.0] * 5, 0.98) == pytest.approx([2.0] * 5)  # no pull towards 0
    beta, losses = 0.9, [3.0, 1.0, 2.0]
    avg, expected = 0.0, []
    for k, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        expected.append(avg / (1 - beta**k))
    assert smooth_losses(losses, beta) == pytest.approx(expected)


def test_suggestions_on_a_known_curve():
    lrs = np.logspace(-6, 0, 121)  # 20 points per decade
    x = np.log10(lrs)
    # flat at 2.3, falls fastest at 1e-3, lowest at 1e-1, then rises
    loss = 2.3 - 2.0 / (1 + np.exp(-3 * (x + 3))) + 2.0 * np.clip(x + 1, 0, None) ** 2
    found = suggest_lrs(lrs, loss)
    assert found["steepest"] == pytest.approx(1e-3, rel=0.13)
    assert found["min_div_10"] == pytest.approx(1e-2, rel=0.13)
    # the middle of the descent (symmetric about 1e-3), not of everything before the minimum
    assert found["valley"] == pytest.approx(1e-3, rel=0.13)
    assert all(math.isnan(v) for v in suggest_lrs([], []).values())


def test_bad_settings_name_the_value():
    with pytest.raises(
        ValueError, match="start_lr must be below end_lr.*start_lr=1 >= end_lr=0.1"
    ):
        check_range(start_lr=1.0, end_lr=0.1, num_updates=10, smooth=0.9, diverge_factor=4)
    with pytest.raises(ValueError, match="smooth must be in"):
        check_range(start_lr=1e-3, end_lr=1, num_updates=10, smooth=1.0, diverge_factor=4)


def test_configs_match_the_lr_grid_space():
    assert lr_range_config("sgd").momentum == 0.9
    adam = lr_range_config("adam")
    assert adam.momentum is None and adam.beta1 is None and adam.weight_decay == 0


# --- the command line ---------------------------------------------------------------------


def _argv(url: str, *extra: str) -> list[str]:
    return [
        "--storage",
        url,
        "--train-size",
        "512",
        "--num-updates",
        "30",
        "--threads",
        "1",
        "--device",
        "cpu",
        *extra,
    ]


@pytest.mark.slow
def test_cli_stores_one_trial_per_optimizer_and_skips_or_repeats(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(_argv(url, "--optimizer", "sgd", "--optimizer", "adam")) == 0
    out = capsys.readouterr().out
    assert "steepest" in out and "adam" in out
    optuna_study = optuna.load_study(study_name=records.LR_RANGE_STUDY, storage=url)
    trials = optuna_study.get_trials()
    assert [t.user_attrs[records.LR_RANGE_OPTIMIZER] for t in trials] == ["sgd", "adam"]
    for trial in trials:
        attrs = trial.user_attrs
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.value == attrs[records.LR_RANGE_SUGGESTIONS]["valley"]
        assert set(attrs[records.LR_RANGE_SUGGESTIONS]) == set(RULES)
        n = len(attrs[records.LR_RANGE_LRS])
        assert 0 < n <= 30 and len(attrs[records.LR_RANGE_SMOOTHED]) == n
        assert attrs[records.CONFIG]["optimizer"] == attrs[records.LR_RANGE_OPTIMIZER]
        assert attrs[records.LR_RANGE_SETTINGS]["train_size"] == 512
    assert trials[0].user_attrs[records.CONFIG]["momentum"] == 0.9

    # Again: already there, skipped; --again adds a newer one, which the reader takes.
    assert main(_argv(url, "--optimizer", "adam")) == 0
    assert "adam: already tested (trial 1); skipped" in capsys.readouterr().out
    assert len(optuna_study.get_trials()) == 2
    assert main(_argv(url, "--optimizer", "adam", "--again", "--seed", "1")) == 0
    assert len(optuna_study.get_trials()) == 3

    curves, suggestions = load_lr_range(url)
    assert list(curves.columns[:5]) == ["optimizer", "update", "lr", "loss", "smoothed"]
    assert sorted(suggestions["optimizer"].unique()) == ["adam", "sgd"]
    assert set(suggestions.loc[suggestions["optimizer"] == "adam", "number"]) == {2}
    newest = optuna_study.get_trials()[2].user_attrs
    adam = curves[curves["optimizer"] == "adam"]
    assert adam["lr"].tolist() == newest[records.LR_RANGE_LRS]
    assert adam["smoothed"].tolist() == newest[records.LR_RANGE_SMOOTHED]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--optimizer", "adamz"], "unknown optimizer 'adamz'; choose one of: sgd, rmsprop"),
        (
            ["--optimizer", "sgd", "--start-lr", "1", "--end-lr", "0.1"],
            "start_lr must be below end_lr",
        ),
        (["--optimizer", "sgd", "--smooth", "1"], "smooth must be in [0, 1)"),
        (["--optimizer", "sgd", "--num-updates", "1"], "an integer in [2, 10000] (each is"),
        (["--optimizer", "sgd", "--start-lr", "0"], "must be a finite number > 0, but got '0'"),
        (["--optimizer", "sgd", "--smooth", "x"], "must be a number, but got 'x'"),
    ],
)
def test_cli_user_mistakes_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["--storage", url, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.db").exists()  # refused before anything was written


def test_cli_refuses_a_study_that_is_not_a_range_test(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    optuna.create_study(study_name="grid", storage=url, direction="maximize")
    assert main(["--storage", url, "--study-name", "grid", "--optimizer", "sgd"]) == 2
    assert "is not a range-test study" in capsys.readouterr().err
    assert optuna.load_study(study_name="grid", storage=url).user_attrs == {}  # untouched


def test_cli_sets_torch_threads_as_each_study_run_worker_has(tmp_path):
    from study.run import build_parser, resolve_options
    from study.search.workers import cpu_cores

    url = f"sqlite:///{tmp_path / 'r.db'}"
    optuna.create_study(study_name="grid", storage=url, direction="maximize")
    refused = ["--storage", url, "--study-name", "grid", "--optimizer", "sgd", "--device", "cpu"]
    run_options = resolve_options(build_parser().parse_args(["--device", "cpu"]), argv=[])
    before = torch.get_num_threads()
    try:
        assert main([*refused, "--threads", "3"]) == 2  # threads set before the refusal
        assert torch.get_num_threads() == 3
        # Not torch's default (every core): the threads of one of study.run's workers.
        assert main(refused) == 2
        assert torch.get_num_threads() == (run_options.threads or cpu_cores())
    finally:
        torch.set_num_threads(before)


# --- the study database ----------------------------------------------------------------------


def test_a_range_study_is_created_marked_and_opened_again(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    created = open_range_study(storage, "r")
    assert records.LR_RANGE_KIND in created.user_attrs and SETTINGS_COMPLETE in created.user_attrs
    assert created.metric_names == [records.LR_RANGE_METRIC]
    assert created.direction == optuna.study.StudyDirection.MINIMIZE
    assert open_range_study(storage, "r").user_attrs == created.user_attrs


def test_a_range_study_without_the_settings_mark_opens(tmp_path):
    """A range-test study that holds the kind and trials but no settings mark, as
    ``optuna.create_study`` and ``set_user_attr`` alone write it, opens and takes more tests."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    plain = optuna.create_study(study_name=records.LR_RANGE_STUDY, storage=url)
    plain.set_user_attr(records.LR_RANGE_KIND, "learning-rate range test")
    data, _ = logistic_problem(10.0)
    config = TrialConfig(optimizer="sgd", lr=0.1, batch_size=512)
    store_result(plain, lr_range_test(config, data, model=zero_linear()))
    opened = open_range_study(open_storage(url), records.LR_RANGE_STUDY)
    assert len(opened.get_trials()) == 1


def test_a_study_of_another_kind_is_refused_with_its_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    optuna.create_study(study_name="g", storage=url, direction="maximize").set_user_attr("x", 1)
    with pytest.raises(StorageError, match=r"study 'g' in sqlite:///.*r\.db is not a range-test"):
        open_range_study(open_storage(url), "g", url=url)


def test_storing_takes_plain_values(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    optuna_study = open_range_study(storage, "r")
    trial = store_range_test(
        optuna_study, config={"optimizer": "adam", "lr": 1e-7}, optimizer="adam",
        lrs=(1e-3, 1e-2), losses=(2.3, 2.2), smoothed=(2.3, 2.25),
        suggestions={"steepest": 1e-2, "valley": math.nan, "min_div_10": 1e-4},
        stopped_at=1e-2, why="reached end_lr", settings={"smooth": 0.9}, seconds=1.23456)
    attrs = trial.user_attrs
    assert trial.value == 1e-4  # valley undefined: the next rule's
    assert attrs[records.LR_RANGE_SUGGESTIONS]["valley"] is None
    assert attrs[records.LR_RANGE_LRS] == [1e-3, 1e-2]
    assert attrs[records.LR_RANGE_SETTINGS] == {"smooth": 0.9, "seconds": 1.235}
    none = store_range_test(
        optuna_study, config={}, optimizer="sgd", lrs=(), losses=(), smoothed=(),
        suggestions=dict.fromkeys(RULES, math.nan), stopped_at=1e-7, why="non-finite loss",
        settings={}, seconds=0.0)
    assert none.state == optuna.trial.TrialState.FAIL and none.value is None


@pytest.mark.parametrize(
    ("code", "heavy"),
    [("import study.train.range_test", "optuna"), ("import study.store.range_tests", "torch")],
)
def test_the_test_loads_no_optuna_and_its_storage_no_torch(code, heavy):
    probe = f"import sys; {code}; print(any(m.startswith({heavy!r}) for m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- reading, plotting, comparing ----------------------------------------------------------


@pytest.fixture
def stored(tmp_path):
    """A range-test study written through ``store_result`` from two tiny tests."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    optuna_study = optuna.create_study(study_name=records.LR_RANGE_STUDY, storage=url)
    data, _ = logistic_problem(10.0)
    for name in ("sgd", "adam"):
        config = TrialConfig(optimizer=name, lr=0.1, batch_size=512)
        store_result(optuna_study, lr_range_test(config, data, model=zero_linear()))
    return url


def test_plot_draws_each_optimizer_and_marks_each_suggestion(stored, tmp_path):
    import matplotlib.pyplot as plt

    curves, suggestions = load_lr_range(stored)
    fig, ax = plt.subplots()
    assert lr_range_plot(curves, suggestions, ax=ax) is ax
    assert ax.get_xscale() == "log"
    assert ax.get_ylim()[1] < curves["smoothed"].max()  # the blow-ups leave the axes
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert {"sgd", "adam", *RULES} <= set(labels)
    # Each optimizer its own dash pattern: coinciding curves stay visible.
    curves_drawn = [line for line in ax.lines if len(line.get_xdata()) > 2]
    assert len({str(line.get_linestyle()) + str(line.get_dashes() if hasattr(line, "get_dashes")
                else "") for line in curves_drawn}) == 2
    marked = [
        line
        for line in ax.lines
        if line.get_marker() in ("v", "o", "s") and len(line.get_xdata()) == 1
    ]
    assert len(marked) == suggestions["lr"].notna().sum() == 6
    fig.savefig(tmp_path / "p.png")
    plt.close(fig)


@pytest.fixture
def grid(tmp_path):
    """A study of full runs: Adam good from 1e-3 to 3e-3 (within 0.01 of 0.98)."""
    url = f"sqlite:///{tmp_path / 'g.db'}"
    optuna_study = optuna.create_study(study_name="g", storage=url, direction="maximize")
    for lr, acc in ((1e-4, 0.95), (1e-3, 0.975), (2e-3, 0.98), (3e-3, 0.972), (1e-2, 0.96)):
        add_trial(optuna_study, "adam", lr, acc)
    add_trial(optuna_study, "adam", 1e-1, None, diverged=True)
    add_trial(optuna_study, "adam", 3e-2, 0.99, state="pruned")  # stopped early: not a run
    return load_trials(url, "g")


def test_compare_with_study_says_inside_and_by_how_many_decades(grid):
    suggestions = pd.DataFrame(
        {
            "optimizer": ["adam", "adam", "adam", "adam", "adam", "sgd"],
            "rule": ["steepest", "valley", "min_div_10", "edge", "none", "steepest"],
            "lr": [1.5e-3, 1e-4, 3e-2, 3e-3, math.nan, 0.1],
        }
    )
    table = compare_with_study(suggestions, grid, tolerance=0.01).set_index("rule")
    # Only what can be compared: sgd (not in the study) and the rule without a suggestion
    # are left out, so every inside is a real bool.
    assert table["optimizer"].tolist() == ["adam"] * 4 and table["inside"].dtype == bool
    adam = table[table["optimizer"] == "adam"]
    assert (adam["best_lr"] == 2e-3).all() and (adam["best_accuracy"] == 0.98).all()
    assert (adam["good_lr_low"] == 1e-3).all() and (adam["good_lr_high"] == 3e-3).all()
    assert adam["inside"].tolist() == [True, False, False, True]
    assert adam["decades_off"].tolist() == pytest.approx([0.0, -1.0, 1.0, 0.0])
    assert (adam["n_runs"] == 5).all()
    # the band spans the decades sensitivity_metrics calls good_lr_width
    runs = grid[grid["outcome"] == "complete"]
    width = sensitivity_metrics(runs["lr"], runs["final_accuracy"])["good_lr_width"]
    assert math.log10(3e-3 / 1e-3) == pytest.approx(width)
    assert compare_with_study(suggestions[suggestions["optimizer"] == "sgd"], grid).empty


def test_compare_refuses_several_studies(grid):
    both = pd.concat([grid, grid.assign(study="other")])
    suggestions = pd.DataFrame({"optimizer": ["adam"], "rule": ["valley"], "lr": [1e-3]})
    with pytest.raises(ValueError, match="several studies"):
        compare_with_study(suggestions, both)


def test_reading_range_tests_loads_no_torch():
    probe = (
        "import sys, analysis.range_test; print(any(m.startswith('torch') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- the report beside a study ------------------------------------------------------------


def _store_range_tests(url: str, optimizers: tuple[str, ...]) -> None:
    """Range tests of ``optimizers`` in the study ``lr-range`` at ``url``, as
    ``python -m study.lr_range`` stores them (known suggestions; ``min_div_10`` none)."""
    optuna_study = open_range_study(open_storage(url), records.LR_RANGE_STUDY, url=url)
    for name in optimizers:
        store_range_test(
            optuna_study, config={"optimizer": name, "lr": 1e-7}, optimizer=name,
            lrs=(1e-4, 1e-3, 1e-2), losses=(2.3, 1.0, 5.0), smoothed=(2.3, 1.5, 3.0),
            suggestions={"steepest": 1e-3, "valley": 10**-3.25, "min_div_10": math.nan},
            stopped_at=1e-2, why="loss above 4 x its minimum", settings={}, seconds=1.0)


def _grid_study(url: str, name: str) -> None:
    """A study of SGD and Adam only (no RMSprop, no AdamW), as an LR grid writes it."""
    add_seeded_grid(optuna.create_study(storage=url, study_name=name, direction="maximize"))


def test_the_report_compares_a_range_test_with_a_study_lacking_some_optimizers(in_tmp):
    from analysis.report import main as report_main

    # Both where the commands put them by default: studies/lab.db, lr-range.db beside it.
    (in_tmp / "studies").mkdir()
    _grid_study(default_storage_url("lab"), "lab")
    _store_range_tests(default_storage_url(records.LR_RANGE_STUDY), ("sgd", "rmsprop", "adam"))
    assert report_main(["--study-name", "lab"]) == 0
    out = in_tmp / "reports" / "lab"
    compared = pd.read_csv(out / "lr_range.csv")
    assert compared["optimizer"].tolist() == ["sgd", "sgd", "adam", "adam"]
    assert compared["inside"].dtype == bool  # never NaN: no row for what cannot be compared
    assert compared.set_index(["optimizer", "rule"])["inside"].to_dict() == {
        ("sgd", "steepest"): True, ("sgd", "valley"): True,
        ("adam", "steepest"): False, ("adam", "valley"): True}
    assert "The LR range test against this study" in (out / "findings.txt").read_text()
    page = (out / "index.html").read_text()
    assert "Range-tested but left out" in page and "rmsprop" in page


def test_the_report_reads_range_tests_beside_its_storage_not_the_working_folder(
        in_tmp, tmp_path_factory):
    from analysis.report import main as report_main

    _store_range_tests("sqlite:///studies/lr-range.db", ("sgd", "adam"))  # the working folder
    data = tmp_path_factory.mktemp("data")
    url = f"sqlite:///{data / 'g.db'}"
    _grid_study(url, "g")
    out = in_tmp / "rep"
    assert report_main(["--storage", url, "--study-name", "g", "--out", str(out)]) == 0
    assert not (out / "lr_range.csv").exists()
    # Beside the study's own file: found.
    _store_range_tests(f"sqlite:///{data / 'lr-range.db'}", ("adam",))
    assert report_main(["--storage", url, "--study-name", "g", "--out", str(out)]) == 0
    assert set(pd.read_csv(out / "lr_range.csv")["optimizer"]) == {"adam"}
