"""``python -m study.confirm``: the best configurations re-run with fresh seeds."""

from __future__ import annotations

import warnings

import optuna
import pytest
import torch
from conftest import QUICK, add_trial

from analysis import confirmation, load_trials, seed_noise_verdicts
from study.confirm import main as confirm_main
from study.run import main as run_main


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('confirm') / 'c.db'}"
    argv = [
        "--trials",
        "4",
        "--epochs",
        "1",
        "--optimizers",
        "sgd,adam",
        "--study-name",
        "s",
        "--storage",
        url,
        *QUICK,
    ]
    assert run_main(argv) == 0
    return url


@pytest.mark.slow
def test_confirm_runs_each_best_config_with_fresh_seeds_and_resumes(source, capsys):
    argv = ["--study-name", "s", "--storage", source, "--seeds", "2"]
    assert confirm_main(argv) == 0
    out = capsys.readouterr().out
    assert "Confirmation study 's.confirm'" in out and "leads" in out
    study_seeds = {
        t.user_attrs["seed"]
        for t in optuna.load_study(study_name="s", storage=source).get_trials()
    }
    confirm = optuna.load_study(study_name="s.confirm", storage=source)
    assert confirm.user_attrs["source_study"] == "s" and confirm.user_attrs["epochs"] == 1
    assert confirm.user_attrs["settings_complete"] and confirm.metric_names == ["accuracy"]
    runs = confirm.get_trials()
    assert len(runs) == 4  # 2 optimizers x 1 configuration x 2 seeds
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in runs)
    seeds = {t.user_attrs["seed"] for t in runs}
    assert len(seeds) == 2 and not seeds & study_seeds  # never a seed the study used
    source_trials = optuna.load_study(study_name="s", storage=source).get_trials()
    by_number = {t.number: t for t in source_trials}
    for run in runs:
        original = by_number[run.user_attrs["source_trial"]]
        assert run.params == original.params  # the same configuration
        assert run.user_attrs["config"] == {
            **original.user_attrs["config"],
            "seed": run.user_attrs["seed"],
        }
        assert len(run.user_attrs["eval_accuracy"]) == 1  # to the last epoch, unpruned
    # Again: nothing missing, nothing runs.
    assert confirm_main(argv) == 0
    assert "already has all 4 runs; nothing to run" in capsys.readouterr().out
    # More seeds: only the new ones run, with seeds of their own.
    assert confirm_main([*argv[:-1], "3"]) == 0
    runs = optuna.load_study(study_name="s.confirm", storage=source).get_trials()
    assert len(runs) == 6 and len({t.user_attrs["seed"] for t in runs}) == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--study-name", "nope"], "no study 'nope' in this storage; its studies: 's'"),
        (["--study-name", "s.confirm"], "is a confirmation study already"),
        (["--study-name", "s", "--seeds", "0"], "--seeds: must be an integer in [1, 1000]"),
    ],
)
def test_confirm_bad_input_is_one_line_and_exit_code_2(source, capsys, argv, message):
    if "s.confirm" in argv and "s.confirm" not in optuna.study.get_all_study_names(source):
        optuna.create_study(study_name="s.confirm", storage=source)
    assert confirm_main([*argv, "--storage", source]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_confirm_sets_torch_threads_as_each_study_run_worker_has(tmp_path):
    from study.run import build_parser, resolve_options
    from study.search.workers import cpu_cores

    missing = ["--study-name", "x", "--storage", f"sqlite:///{tmp_path}/n.db", "--device", "cpu"]
    run_options = resolve_options(build_parser().parse_args(["--device", "cpu"]), argv=[])
    before = torch.get_num_threads()
    try:
        assert confirm_main([*missing, "--threads", "3"]) == 2  # threads set before the error
        assert torch.get_num_threads() == 3
        # Not torch's default (every core of the machine): the cores this process may use,
        # as study.run's one process that trains in cohorts has them; one at a time, the
        # threads of one of study.run's workers.
        assert confirm_main(missing) == 2
        assert torch.get_num_threads() == cpu_cores()
        assert confirm_main([*missing, "--cohort", "1"]) == 2
        assert torch.get_num_threads() == (run_options.threads or cpu_cores())
    finally:
        torch.set_num_threads(before)


def test_confirm_without_the_database_says_so(tmp_path, capsys):
    assert confirm_main(["--study-name", "x", "--storage", f"sqlite:///{tmp_path}/n.db"]) == 2
    assert "does not exist; run a study first" in capsys.readouterr().err
    assert not (tmp_path / "n.db").exists()


def _confirm_study(tmp_path, sgd, adam):
    """A confirmation study: SGD's configuration (trial 7 of its source) and Adam's (trial 3)
    at these final accuracies, one per seed."""
    url = f"sqlite:///{tmp_path / 'v.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="v", direction="maximize")
    for optimizer, values, source in (("sgd", sgd, 7), ("adam", adam, 3)):
        for value in values:
            add_trial(optuna_study, optimizer, 0.01, value, source_trial=source)
    return load_trials(url, "v")


def test_a_margin_larger_than_seed_noise_is_called_so(tmp_path):
    trials = _confirm_study(
        tmp_path, [0.981, 0.983, 0.982, 0.984, 0.980], [0.970, 0.972, 0.969, 0.971, 0.973]
    )
    table = confirmation(trials).set_index("optimizer")
    assert table.loc["sgd", "n"] == 5 and table.loc["sgd", "mean"] == pytest.approx(0.982)
    assert table.loc["sgd", "mean_lo"] < 0.982 < table.loc["sgd", "mean_hi"]
    (verdict,) = seed_noise_verdicts(trials).itertuples()
    assert (verdict.a, verdict.b, verdict.exceeds_noise) == ("sgd", "adam", True)
    assert "exceeds seed noise" in verdict.verdict and "Welch t-interval" in verdict.verdict
    assert "mean over 5 and 5 seeds" in verdict.verdict and "1 pair tested" in verdict.verdict


def test_a_margin_within_seed_noise_is_called_so(tmp_path):
    trials = _confirm_study(
        tmp_path, [0.99, 0.95, 0.98, 0.93, 0.97], [0.96, 0.98, 0.94, 0.97, 0.95]
    )
    (verdict,) = seed_noise_verdicts(trials).itertuples()
    assert verdict.exceeds_noise is False or verdict.exceeds_noise == False  # noqa: E712
    assert verdict.difference_lo < 0 < verdict.difference_hi
    assert "is within seed noise" in verdict.verdict


@pytest.mark.slow
def test_an_interrupted_confirmation_finishes_its_queued_runs_on_the_next_run(
    tmp_path, capsys, monkeypatch
):
    import study.confirm

    url = f"sqlite:///{tmp_path / 'i.db'}"
    study_args = ["--trials", "4", "--epochs", "1", "--optimizers", "sgd,adam"]
    assert run_main([*study_args, "--study-name", "s", "--storage", url, *QUICK]) == 0
    real = study.confirm.run_trials

    def one_then_interrupted(optuna_study, propose, data, *, epochs, target, finished,
                             **options):
        real(optuna_study, propose, data, epochs=epochs, target=finished + 1, finished=finished,
             **options)
        # Ctrl-C in the second run: it is marked failed, as run_trials marks it.
        with warnings.catch_warnings():  # Optuna: heartbeats are meant for optimize
            warnings.simplefilter("ignore")
            optuna_study.tell(optuna_study.ask(), state=optuna.trial.TrialState.FAIL)
        return True, 0.0

    argv = ["--study-name", "s", "--storage", url, "--seeds", "2", "--threads", "1"]
    monkeypatch.setattr(study.confirm, "run_trials", one_then_interrupted)
    assert confirm_main(argv) == 130
    assert "1 of 4 runs finished; 1 interrupted run failed, not counted" in (
        capsys.readouterr().out)
    monkeypatch.setattr(study.confirm, "run_trials", real)
    assert confirm_main(argv) == 0  # the failed run again, the two still queued, nothing twice
    # The summary counts the runs of the target, never the failed one as a run.
    assert "4 of 4 runs finished; 1 interrupted run failed" in capsys.readouterr().out
    runs = optuna.load_study(study_name="s.confirm", storage=url).get_trials()
    done = [t for t in runs if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(runs) == 5 and len(done) == 4
    assert len({(t.user_attrs["source_trial"], t.user_attrs["seed"]) for t in done}) == 4
    assert confirm_main(argv) == 0
    assert "nothing to run" in capsys.readouterr().out
