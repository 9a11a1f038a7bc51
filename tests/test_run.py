"""The study end to end through ``main(argv)``, in a SQLite file under ``tmp_path``."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import QUICK
from optuna.distributions import FloatDistribution
from processes import TINY, child_env, study_run

from search_spaces import SearchSpace
from study.run import main
from study.search.objective import Objective
from study.train.config import TrialConfig

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
REPO = Path(__file__).resolve().parent.parent


def _sigterm_after(cmd, cwd, env, line_start: str, *, wait: float, timeout: float) -> None:
    """Run ``cmd``, send SIGTERM ``wait`` seconds after a line starting with ``line_start``,
    and check it stopped as promised: exit code 130, "Interrupted" in its output."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(line_start):
            break
    time.sleep(wait)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 130, "".join(lines) + out
    assert "Interrupted" in out


def load(tmp: Path, name: str) -> optuna.Study:
    return optuna.load_study(
        study_name=name, storage=f"sqlite:///{tmp / 'studies' / f'{name}.db'}"
    )


@pytest.mark.slow
def test_small_real_study_records_curves_and_resumes_to_its_target(in_tmp, capsys):
    args = ["--trials", "4", "--epochs", "2", "--study-name", "small", *QUICK]
    assert main(args) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "4 finished of target 4" in out and "Best trial per optimizer" in out
    # stderr is not a terminal here: plain progress lines stand in for the bars (the four
    # trials train as one cohort, the best member's figures shown).
    assert re.search(
        r"^\[0m\d\ds\] small: 0 of 4 trials finished; trials 0, 1, 2, \.\.\. \(4 at once\) "
        r"epoch 1/2: loss \d\.\d{3}, best accuracy 0\.\d{4}$",
        captured.err,
        re.MULTILINE,
    ), captured.err
    optuna_study = load(in_tmp, "small")
    assert optuna_study.metric_names == ["accuracy"]
    trials = optuna_study.get_trials()
    assert len(trials) == 4 and all(t.state in FINISHED for t in trials)
    for t in trials:
        attrs = t.user_attrs
        epochs = len(attrs["eval_accuracy"])
        assert 1 <= epochs <= 2
        for key in ("train_loss", "train_accuracy", "lr", "batch_size", "epoch_seconds"):
            assert len(attrs[key]) == epochs, key
        assert attrs["seed"] == t.number and attrs["eval_set"] == "test"
        assert attrs["sampler"] == "tpe"
        assert attrs["diverged"] is False
        assert TrialConfig.from_dict(attrs["config"]).optimizer == t.params["optimizer"]
        assert t.intermediate_values == dict(enumerate(attrs["eval_accuracy"], start=1))
    assert optuna_study.user_attrs["space"] == "default"
    assert optuna_study.user_attrs["epochs"] == 2
    first_starts = [t.datetime_start for t in trials]

    # A higher target continues: only the missing trials run.
    assert main(["--trials", "6", *args[2:]]) == 0
    trials = load(in_tmp, "small").get_trials()
    assert len(trials) == 6 and all(t.state in FINISHED for t in trials)
    assert [t.datetime_start for t in trials[:4]] == first_starts

    # At its target: nothing runs, and it says so.
    assert main(["--trials", "6", *args[2:]]) == 0
    assert "already has 6 finished trials (target 6); nothing to run" in capsys.readouterr().out
    assert len(load(in_tmp, "small").get_trials()) == 6


@pytest.mark.slow
def test_lab_space_runs_exactly_the_three_lab_configs(in_tmp):
    assert main(["--space", "lab", "--trials", "3", "--epochs", "2", *QUICK]) == 0
    configs = [t.user_attrs["config"] for t in load(in_tmp, "lab").get_trials()]
    assert [c["optimizer"] for c in configs] == ["sgd", "rmsprop", "adam"]
    sgd, rmsprop, adam = configs
    assert (sgd["lr"], sgd["momentum"], sgd["weight_decay"], sgd["no_decay_1d"]) == (
        0.1,
        0.9,
        5e-4,
        False,
    )
    assert (rmsprop["lr"], rmsprop["momentum"], rmsprop["weight_decay"]) == (0.01, None, 0.0)
    assert (adam["lr"], adam["beta1"], adam["weight_decay"]) == (0.001, None, 0.0)
    assert {c["schedule"] for c in configs} == {"constant"}
    # Past three trials the configurations repeat, in turn, with new seeds; none is pruned.
    assert main(["--space", "lab", "--trials", "8", "--epochs", "2", *QUICK]) == 0
    trials = load(in_tmp, "lab").get_trials()
    assert [t.user_attrs["config"]["optimizer"] for t in trials] == [
        "sgd",
        "rmsprop",
        "adam",
    ] * 2 + ["sgd", "rmsprop"]
    assert len({t.user_attrs["seed"] for t in trials}) == 8
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_a_diverged_trial_is_complete_at_chance_with_its_lr(tmp_path, tiny_data):
    huge_lr = FloatDistribution(1e5, 1e6, log=True)
    space = SearchSpace("huge", "always diverges", optimizers={"sgd": {"lr": huge_lr}})
    optuna_study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'd.db'}", direction="maximize"
    )
    optuna_study.optimize(
        Objective(lambda t: space.config_for(t, TrialConfig(epochs=2, batch_size=32)), tiny_data),
        n_trials=1,
    )
    (trial,) = optuna_study.get_trials()
    # Chance: where the plots draw a diverged run, so optuna-dashboard agrees with them.
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 0.1
    assert trial.user_attrs["diverged"] is True
    assert 1e5 <= trial.user_attrs["diverged_lr"] <= 1e6
    assert trial.user_attrs["diverged_epoch"] == 1


@pytest.mark.slow
def test_optimizers_option_restricts_the_choice_for_the_life_of_the_study(in_tmp, capsys):
    args = ["--epochs", "1", "--study-name", "two", *QUICK]
    assert main(["--trials", "6", "--optimizers", "sgd,adam", *args]) == 0
    optuna_study = load(in_tmp, "two")
    assert {t.params["optimizer"] for t in optuna_study.get_trials()} <= {"sgd", "adam"}
    assert optuna_study.user_attrs["optimizers"] == ["sgd", "adam"]
    capsys.readouterr()
    assert main(["--trials", "7", *args]) == 2
    assert (
        "created with --optimizers sgd,adam, not sgd,rmsprop,adam,adamw" in capsys.readouterr().err
    )


@pytest.mark.slow
def test_validation_split_prunes_on_validation_and_measures_test_once(in_tmp):
    argv = ["--trials", "2", "--epochs", "2", "--study-name", "v", "--validation", "0.1", *QUICK]
    assert main(argv) == 0
    optuna_study = load(in_tmp, "v")
    assert optuna_study.user_attrs["eval_set"] == "validation"
    for trial in optuna_study.get_trials():
        assert trial.user_attrs["eval_set"] == "validation"
        assert 0.1 < trial.user_attrs["test_accuracy"] <= 1.0
        assert trial.value == trial.user_attrs["eval_accuracy"][-1]  # pruned/told on validation


@pytest.mark.slow
def test_seeded_runs_sample_the_same_configs(tmp_path):
    for name in ("a", "b"):
        storage = f"sqlite:///{tmp_path / name}.db"
        assert (
            main(
                [
                    "--trials",
                    "2",
                    "--epochs",
                    "1",
                    "--storage",
                    storage,
                    "--sampler",
                    "random",
                    "--study-name",
                    "s",
                    *QUICK,
                ]
            )
            == 0
        )
    a, b = (
        optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / n}.db") for n in "ab"
    )
    assert [t.params for t in a.get_trials()] == [t.params for t in b.get_trials()]
    assert [t.value for t in a.get_trials()] == [t.value for t in b.get_trials()]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--space", "nope"],
            "unknown search space 'nope'; choose one of: default, wide, lr-sweep, lr-grid, lab",
        ),
        (["--sampler", "cmaes"], "unknown sampler 'cmaes'; choose one of: tpe, random, qmc"),
        (
            ["--pruner", "always"],
            "unknown pruner 'always'; choose one of: median, asha, hyperband, none",
        ),
        (["--trials", "0"], "--trials: must be an integer >= 1, but got '0'"),
        (["--optimizers", "sgd,lamb"], "unknown optimizer 'lamb'; choose one of: sgd, rmsprop"),
        (["--optimizers", "sgd_lab"], "space does not search optimizer 'sgd_lab'; choose among"),
        (["--space", "lab", "--optimizers", "sgd"], "'lab' space runs fixed configurations"),
        (["--validation", "0.9"], "--validation: must be a number in [0, 0.5], but got '0.9'"),
        (
            ["--storage", "not a url"],
            "--storage 'not a url' is not a database URL; use sqlite:///",
        ),
        (["--storage", "sqlite://"], "names no file"),
        (["--study-name", "../escape"], "study name '../escape' cannot name a file"),
        (["--seed", "-1"], "--seed: must be an integer in [0, 2147483647]"),
        (["--seed", "4294967296"], "--seed: must be an integer in [0, 2147483647]"),
        (["--repeats", "0"], "--repeats: must be an integer >= 1, but got '0'"),
        (["--lr-grid", "1,1e-5,4"], "--lr-grid: expected LOW,HIGH,N with 0 < LOW < HIGH"),
        (["--lr-grid", "1e-5,1,4"], "a grid applies to: lr-grid"),
        (["--allocation", "even"], "--allocation: invalid choice: 'even'"),
        (["--space", "lr-grid", "--sampler", "tpe"], "--sampler tpe: the 'lr-grid' space visits"),
        (["--space", "lr-grid", "--pruner", "median"], "grid points once"),
        (["--space", "lr-grid", "--trials", "85"], "--trials 85: the grid has 84 points"),
        (["--space", "lab", "--allocation", "balanced"], "runs fixed configurations in turn"),
        (["--train-size", "60001"], "--train-size 60001: MNIST has 60000 training images"),
        (["--train-size", "59000", "--validation", "0.1"], "54000 after the validation share"),
        (["--storage", "sqlite:///runs?x.db"], "so the file would be 'runs'; write a '?'"),
        (["--heartbeat", "5", "--grace", "5"], "--grace 5: it must be longer than --heartbeat"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(in_tmp, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (in_tmp / "studies").exists() or not any((in_tmp / "studies").iterdir())


def test_garbage_db_is_refused_and_left_untouched(in_tmp, capsys):
    db = in_tmp / "studies" / "default.db"
    db.parent.mkdir()
    db.write_bytes(b"this is not a database" * 100)
    before = db.read_bytes()
    assert main(["--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{Path('studies/default.db')} is not a SQLite database" in err and err.count("\n") == 1
    assert db.read_bytes() == before


def test_a_foreign_sqlite_db_is_refused_and_left_untouched(in_tmp, capsys):
    db = in_tmp / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    before = db.read_bytes()
    assert main(["--trials", "1", "--storage", f"sqlite:///{db}"]) == 2
    assert "not an Optuna study database" in capsys.readouterr().err
    assert db.read_bytes() == before


@pytest.mark.slow
def test_resuming_with_another_space_or_epochs_is_refused(in_tmp, capsys):
    assert main(["--trials", "1", "--epochs", "1", "--study-name", "s", *QUICK]) == 0
    capsys.readouterr()
    assert (
        main(["--trials", "2", "--epochs", "1", "--study-name", "s", "--space", "lab", *QUICK])
        == 2
    )
    assert (
        "was created with --space default, not lab; run with --space default"
        in capsys.readouterr().err
    )
    assert main(["--trials", "2", "--epochs", "3", "--study-name", "s", *QUICK]) == 2
    assert "was created with --epochs 1, not 3" in capsys.readouterr().err
    assert len(load(in_tmp, "s").get_trials()) == 1


def test_a_minimising_study_of_the_same_name_is_refused(in_tmp, capsys):
    (in_tmp / "studies").mkdir()
    optuna.create_study(study_name="m", storage="sqlite:///studies/m.db", direction="minimize")
    assert main(["--trials", "1", "--study-name", "m"]) == 2
    assert "exists and minimises" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["--data-dir", "STUDY_DATA_DIR"])
def test_corrupt_data_file_through_the_cli(in_tmp, capsys, monkeypatch, how):
    data = in_tmp / "mnist"
    data.mkdir()
    for f in (REPO / "study" / "mnist").glob("*.gz"):
        (data / f.name).write_bytes(f.read_bytes())
    assert len(list(data.glob("*.gz"))) == 4
    (data / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    if how == "--data-dir":
        assert main(["--trials", "1", "--data-dir", str(data)]) == 2
    else:
        monkeypatch.setenv("STUDY_DATA_DIR", str(data))
        assert main(["--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte.gz" in err and "2646ac647ad5339dbf082846283269ea" in err
    assert err.count("\n") == 1
    assert not (in_tmp / "studies").exists()  # no database was created


def test_help_documents_every_option_with_its_default(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "--trials",
        "--epochs",
        "--study-name",
        "--storage",
        "--space",
        "--sampler",
        "--pruner",
        "--seed",
        "--device",
        "--batch-size",
        "--threads",
    ):
        assert option in out
    for option in ("--allocation", "--prune-within", "--repeats", "--lr-grid", "--precision"):
        assert option in out
    for option in ("--print-space", "--checkpoints", "--keep-checkpoints"):
        assert option in out
    assert (
        "(default: 50;" in out
        and "(default: tpe;" in out
        and "default: asha, wide: asha, lr-sweep: none" in out
    )


@pytest.mark.slow
def test_a_study_name_that_cannot_name_a_file_works_with_storage(tmp_path, capsys):
    # Regression: the summary used to rebuild the default URL from the name and exit 2.
    url = f"sqlite:///{tmp_path / 'x.db'}"
    argv = ["--trials", "1", "--epochs", "1", "--storage", url, "--study-name", "my study"]
    assert main([*argv, *QUICK]) == 0
    out = capsys.readouterr().out
    assert "1 finished of target 1" in out
    assert f"python -m analysis.report --study-name 'my study' --storage {url}" in out
    # Without --storage the name must name a file: one line, exit 2.
    assert main(["--trials", "1", "--study-name", "my study"]) == 2
    assert "cannot name a file" in capsys.readouterr().err


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_a_trial_that_ran_every_epoch_is_complete_whatever_the_pruner_says(tiny_data):
    optuna_study = optuna.create_study(direction="maximize", pruner=_AlwaysPrune())
    for epochs in (2, 1):
        config = TrialConfig(optimizer="sgd", lr=0.05, momentum=0.9, epochs=epochs, batch_size=32)
        optuna_study.optimize(Objective(lambda t, c=config: c, tiny_data), n_trials=1)
    two, one = optuna_study.get_trials()
    assert two.state == optuna.trial.TrialState.PRUNED and len(two.intermediate_values) == 1
    assert one.state == optuna.trial.TrialState.COMPLETE  # its only epoch was its last


def test_repeats_train_each_trial_with_k_seeds_and_report_their_mean(tmp_path, tiny_data):
    from study.train.loop import fit

    base = TrialConfig(optimizer="sgd", lr=0.05, momentum=0.9, epochs=2, batch_size=32, seed=10)
    optuna_study = optuna.create_study(direction="maximize")
    objective = Objective(lambda t: base, tiny_data, repeats=2)
    optuna_study.optimize(objective, n_trials=1)
    (trial,) = optuna_study.get_trials()
    attrs = trial.user_attrs
    assert attrs["seeds"] == [10, 11] and attrs["seed"] == 10
    alone = [fit(base.replace(seed=s), tiny_data) for s in (10, 11)]
    assert attrs["seed_accuracies"] == [r.final_accuracy for r in alone]
    assert attrs["seed_eval_accuracy"] == [[e.eval_accuracy for e in r.history] for r in alone]
    assert trial.value == pytest.approx(sum(attrs["seed_accuracies"]) / 2)
    means = [sum(pair) / 2 for pair in zip(*attrs["seed_eval_accuracy"], strict=True)]
    assert trial.intermediate_values == pytest.approx({1: means[0], 2: means[1]})
    assert attrs["seed_diverged"] == [False, False]


def test_a_diverged_seed_counts_as_chance_in_the_mean(tiny_data):
    from study.train.loop import TrainingRun

    def second_seed_diverges(config, data):
        return TrainingRun(config.replace(lr=1e6) if config.seed == 1 else config, data)

    base = TrialConfig(lr=0.05, epochs=2, batch_size=32, seed=0)
    optuna_study = optuna.create_study(direction="maximize")
    objective = Objective(lambda t: base, tiny_data, repeats=2, make_run=second_seed_diverges)
    optuna_study.optimize(objective, n_trials=1)
    (trial,) = optuna_study.get_trials()
    attrs = trial.user_attrs
    assert attrs["seed_diverged"] == [False, True]
    assert attrs["seed_accuracies"][1] == 0.1 and attrs["diverged"] is False
    assert trial.value == pytest.approx((attrs["seed_accuracies"][0] + 0.1) / 2)


@pytest.mark.slow
def test_repeats_from_the_command_line_are_kept_with_the_study(in_tmp, capsys):
    args = ["--epochs", "1", "--study-name", "rep", "--repeats", "2", *QUICK]
    assert main(["--trials", "2", *args]) == 0
    trials = load(in_tmp, "rep").get_trials()
    assert [t.user_attrs["seeds"] for t in trials] == [[0, 1], [2, 3]]
    assert all(len(t.user_attrs["seed_accuracies"]) == 2 for t in trials)
    capsys.readouterr()
    assert main(["--trials", "3", *args[: -len(QUICK)], "--repeats", "3", *QUICK]) == 2
    assert "created with --repeats 2, not 3" in capsys.readouterr().err


@pytest.mark.slow
def test_the_lr_grid_visits_every_point_once(in_tmp, capsys):
    args = [
        "--space",
        "lr-grid",
        "--optimizers",
        "sgd,adam",
        "--lr-grid",
        "1e-3,1e-1,1",
        "--epochs",
        "1",
        "--study-name",
        "g",
        *QUICK,
    ]
    assert main([*args, "--trials", "3"]) == 0
    assert "3 grid points left" in capsys.readouterr().out
    # A trial that failed (a crash, Ctrl-C): GridSampler counts its point as visited.
    from search_spaces import get_space

    space = get_space("lr-grid").restrict(["sgd", "adam"]).with_lr_grid(1e-3, 1e-1, 1)
    optuna_study = optuna.load_study(
        study_name="g",
        storage=f"sqlite:///{in_tmp / 'studies' / 'g.db'}",
        sampler=optuna.samplers.GridSampler(space.grid()),
    )
    trial = optuna_study.ask()
    space.config_for(trial, TrialConfig(epochs=1))
    optuna_study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert main(args) == 0  # without --trials: the rest of the grid, the failed point too
    trials = load(in_tmp, "g").get_trials()
    points = sorted(
        (t.params["optimizer"], t.params["lr"])
        for t in trials
        if t.state == optuna.trial.TrialState.COMPLETE
    )
    assert points == sorted((o, lr) for o in ("sgd", "adam") for lr in (1e-3, 1e-2, 1e-1))
    finished = [t for t in trials if t.state != optuna.trial.TrialState.FAIL]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in finished)  # never pruned
    assert "0 grid points left" in capsys.readouterr().out
    assert main(args) == 0
    assert "nothing to run" in capsys.readouterr().out


@pytest.mark.slow
def test_workers_share_one_study_and_stop_together(tmp_path):
    """--workers 2: two processes fill one study to its target; SIGTERM stops both, no trial
    is left RUNNING, and the same command continues."""
    cmd = [
        sys.executable,
        "-m",
        "study.run",
        "--trials",
        "4",
        "--epochs",
        "2",
        "--study-name",
        "w",
        "--train-size",
        "20000",
        "--pruner",
        "none",
        "--workers",
        "2",
        "--cohort",
        "1",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    _sigterm_after(cmd, tmp_path, env, "trial ", wait=2.0, timeout=180)
    trials = load(tmp_path, "w").get_trials()
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in trials]
    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "finished of target 4" in rerun.stdout
    trials = load(tmp_path, "w").get_trials()
    finished = [t for t in trials if t.state in FINISHED]
    assert 4 <= len(finished) <= 5  # the overshoot of at most workers - 1
    assert len({t.user_attrs["seed"] for t in finished}) == len(finished)
    assert (
        optuna.load_study(study_name="w", storage=f"sqlite:///{tmp_path}/studies/w.db").user_attrs[
            "seed"
        ]
        == 0
    )


@pytest.mark.slow
def test_a_resumed_study_keeps_its_own_settings_for_options_left_out(in_tmp, capsys):
    args = ["--epochs", "1", "--study-name", "keep", *QUICK]
    assert main(["--trials", "1", "--repeats", "2", "--allocation", "sampler", *args]) == 0
    assert main(["--trials", "2", *args]) == 0  # no --repeats, no --allocation: the study's
    optuna_study = load(in_tmp, "keep")
    assert [len(t.user_attrs["seeds"]) for t in optuna_study.get_trials()] == [2, 2]
    assert optuna_study.user_attrs["allocation"] == "sampler"
    capsys.readouterr()
    assert main(["--trials", "3", "--repeats", "1", *args]) == 2  # given: it must match
    assert "created with --repeats 2, not 1" in capsys.readouterr().err


@pytest.mark.slow
def test_a_study_made_before_the_new_settings_resumes_as_it_ran(in_tmp):
    from study.store.storage import open_storage, open_study

    (in_tmp / "studies").mkdir()
    storage = open_storage("sqlite:///studies/old.db")
    old = {
        "space": "default",
        "optimizers": ["sgd", "rmsprop", "adam", "adamw"],
        "epochs": 1,
        "batch_size": 100,
        "validation": 0.0,
        "train_size": 2000,
    }
    open_study(storage, "old", settings=old)
    assert main(["--trials", "2", "--epochs", "1", "--study-name", "old", *QUICK]) == 0
    optuna_study = load(in_tmp, "old")
    assert len(optuna_study.get_trials()) == 2
    assert "allocation" not in optuna_study.user_attrs  # read as its legacy value, not rewritten
    assert optuna_study.user_attrs["seed"] == 0  # the study's seed, kept from now on


@pytest.mark.slow
def test_two_workers_visit_each_grid_point_exactly_once(in_tmp):
    args = [
        "--space",
        "lr-grid",
        "--optimizers",
        "sgd,adam",
        "--lr-grid",
        "1e-3,1e-1,2",
        "--epochs",
        "1",
        "--study-name",
        "g2",
        "--train-size",
        "2000",
        "--batch-size",
        "100",
        "--workers",
        "2",
    ]
    assert main(args) == 0
    trials = load(in_tmp, "g2").get_trials()
    points = [(t.params["optimizer"], t.params["lr"]) for t in trials]
    assert len(points) == len(set(points)) == 10  # 2 optimizers x 5 learning rates
    assert {t.user_attrs["sampler"] for t in trials} == {"grid"}


@pytest.mark.slow
def test_never_more_workers_than_trials_left(in_tmp):
    # One trial to go with two workers asked: it trains in this process.
    args = [
        "--epochs",
        "1",
        "--study-name",
        "one",
        "--train-size",
        "2000",
        "--batch-size",
        "100",
        "--workers",
        "2",
    ]
    assert main(["--trials", "1", *args]) == 0
    assert len(load(in_tmp, "one").get_trials()) == 1


@pytest.mark.slow
def test_checkpoints_are_written_per_trial_and_only_the_best_kept(in_tmp, capsys):
    from study.train.checkpoint import load_checkpoint
    from study.train.data import load_mnist
    from study.train.loop import evaluate

    argv = ["--trials", "3", "--epochs", "2", "--precision", "fp32", "--pruner", "none"]
    assert main([*argv, "--checkpoints", "ck", "--keep-checkpoints", "1", *QUICK]) == 0
    trials = load(in_tmp, "default").get_trials()
    paths = [Path(t.user_attrs["checkpoint"]) for t in trials]
    assert [p.name for p in paths] == ["trial-00000.pt", "trial-00001.pt", "trial-00002.pt"]
    assert all(p.parent == in_tmp / "ck" / "default" for p in paths)
    best = max(trials, key=lambda t: t.value)
    assert sorted((in_tmp / "ck" / "default").iterdir()) == [Path(best.user_attrs["checkpoint"])]
    checkpoint = load_checkpoint(best.user_attrs["checkpoint"])
    assert checkpoint.epoch == 2 and checkpoint.config.optimizer == best.params["optimizer"]
    data = load_mnist(train_size=2000)
    assert evaluate(checkpoint.model, data.test_x, data.test_y)[1] == pytest.approx(best.value)
    assert main(["--trials", "1", "--keep-checkpoints", "2"]) == 2
    assert "give --checkpoints DIR too" in capsys.readouterr().err


@pytest.mark.slow
def test_workers_started_together_on_a_fresh_sqlite_file_all_join_the_study(tmp_path):
    env = child_env()
    cmd = study_run("--trials", "3", "--study-name", "race", *TINY)
    procs = [
        subprocess.Popen(
            [*cmd, "--seed", str(k)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for k in range(3)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(outputs)
    trials = load(tmp_path, "race").get_trials()
    assert all(t.state in FINISHED for t in trials)
    assert 3 <= len(trials) <= 5  # separate commands overshoot by at most their number - 1


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_after_the_grace_period_and_the_study_finishes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "study.run",
        "--trials",
        "2",
        "--epochs",
        "3",
        "--train-size",
        "3000",
        "--batch-size",
        "100",
        "--workers",
        "1",
        "--threads",
        "1",
        "--cohort",
        "1",
        "--study-name",
        "kill",
        "--heartbeat",
        "1",
        "--grace",
        "3",
        "--pruner",
        "none",
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    for line in proc.stderr:  # a plain progress line: the first trial is training
        if "epoch 1/3" in line:
            break
    proc.kill()  # SIGKILL: no clean-up, the trial stays RUNNING
    proc.wait()
    (stale,) = load(tmp_path, "kill").get_trials(states=(optuna.trial.TrialState.RUNNING,))
    time.sleep(4)  # longer than --grace: its heartbeat has stopped
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    trials = load(tmp_path, "kill").get_trials()
    assert trials[stale.number].state == optuna.trial.TrialState.FAIL
    assert sum(t.state in FINISHED for t in trials) == 2
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
