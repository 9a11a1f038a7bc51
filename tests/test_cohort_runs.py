"""``python -m study.run`` training trials in cohorts (``--cohort``, the default): each trial is
stored as one trained alone would be, a run is reproducible from its seed, and Ctrl-C, SIGTERM,
a pause past the grace period and a killed process lose nothing finished."""

from __future__ import annotations

import subprocess
import time
import warnings

import optuna
import pytest
from processes import COHORT, child_env, hooked_run, paused_past_grace, study_run

from study.run import main as run_main
from study.search import trial_loop
from study.store import records
from study.store.storage import open_storage

#: Attributes that a trial's training measures (they may differ by float rounding between a
#: cohort and a run alone); every other attribute must be equal.
_MEASURED = {*records.CURVES, records.SEED_EVAL_ACCURACY, records.SEED_ACCURACIES,
             records.TEST_ACCURACY}


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def _close(a: object, b: object) -> bool:
    """Equal, numbers to within 0.01 (float rounding may flip a few predictions), lists
    element by element."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 0.01
    return a == b


@pytest.mark.slow
def test_a_grid_in_cohorts_records_what_it_records_one_trial_at_a_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = ["--space", "lr-grid", "--optimizers", "sgd,adam", "--lr-grid",
            "1e-3,1e-1,1", "--repeats", "2", "--epochs", "2", "--train-size", "1000",
            "--batch-size", "100", "--workers", "1", "--threads", "1", "--precision", "fp32"]
    url = f"sqlite:///{tmp_path / 'g.db'}"
    for name, cohort in (("alone", "1"), ("cohorts", "4")):
        assert run_main([*grid, "--cohort", cohort, "--study-name", name, "--storage", url]) == 0
    alone = _study(url, "alone").get_trials()
    together = _study(url, "cohorts").get_trials()
    assert len(alone) == len(together) == 6
    assert _study(url, "cohorts").user_attrs[records.COHORT] == 4
    for a, b in zip(alone, together, strict=True):
        assert (a.number, a.state, a.params) == (b.number, b.state, b.params)
        assert a.value == pytest.approx(b.value, abs=0.01)
        assert set(a.user_attrs) == set(b.user_attrs)
        assert sorted(a.intermediate_values) == sorted(b.intermediate_values)
        for key, value in a.user_attrs.items():
            if key == "epoch_seconds":
                continue  # the time a trial took: a cohort shares its epochs' time
            if key in _MEASURED:
                assert _close(value, b.user_attrs[key]), key
            else:
                assert value == b.user_attrs[key], key


def _default_run(url: str, *more: str) -> list[str]:
    """The default command (cohorts in one process) on a small training set."""
    return ["--epochs", "2", "--train-size", "500", "--batch-size", "100", "--seed", "7",
            "--study-name", "r", "--storage", url, *more]


def test_the_default_run_in_cohorts_is_reproducible_from_its_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = []
    for k in range(2):
        url = f"sqlite:///{tmp_path / f'r{k}.db'}"
        assert run_main(_default_run(url, "--trials", "10")) == 0  # a cohort of 8, then 2
        optuna_study = _study(url, "r")
        assert optuna_study.user_attrs[records.COHORT] == 8  # the CPU's default, kept
        runs.append([(t.number, t.state.name, t.value, sorted(t.params.items()))
                     for t in optuna_study.get_trials()])
    assert len(runs[0]) == 10 and {s for _, s, _, _ in runs[0]} <= {"COMPLETE", "PRUNED"}
    assert runs[0] == runs[1]


def test_a_resumed_study_keeps_its_cohort_unless_given(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'k.db'}"
    assert run_main(_default_run(url, "--trials", "2", "--cohort", "3")) == 0
    caplog.set_level("INFO", logger="study.run")
    assert run_main(_default_run(url, "--trials", "3")) == 0
    assert "in cohorts of up to 3 trials" in caplog.text
    caplog.clear()
    assert run_main(_default_run(url, "--trials", "4", "--cohort", "1")) == 0  # not checked
    assert "in cohorts" not in caplog.text
    assert _study(url, "r").user_attrs[records.COHORT] == 3  # what it was created with


def test_a_command_sizes_its_cohort_by_the_trials_other_live_commands_are_running(
    tmp_path, monkeypatch
):
    # Separate commands on one database do not each ask for a cohort of what is left: a
    # command leaves out what another command, its heartbeat fresh, is running.
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'o.db'}"
    assert run_main(_default_run(url, "--trials", "1")) == 0
    other = optuna.load_study(study_name="r", storage=open_storage(url))
    with warnings.catch_warnings():  # Optuna: heartbeats are meant for optimize
        warnings.simplefilter("ignore")
        theirs = [other.ask() for _ in range(2)]  # their heartbeats start at once
    for trial in theirs:
        other._storage.record_heartbeat(trial._trial_id)
    their_numbers = {trial.number for trial in theirs}
    cohorts = []

    def on_moment(moment: str) -> None:
        if moment != "started":
            return
        running = other.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        cohorts.append(sum(t.number not in their_numbers for t in running))
        for t in running:  # the other command ends (its trials failed) meanwhile
            if t.number in their_numbers:
                other.tell(t.number, state=optuna.trial.TrialState.FAIL)

    monkeypatch.setattr(trial_loop, "MOMENT_OBSERVERS", [on_moment])
    assert run_main(_default_run(url, "--trials", "5")) == 0
    assert cohorts == [2, 2]  # 5 - 1 finished - 2 running elsewhere; then what is left
    finished = _study(url, "r").get_trials(states=(optuna.trial.TrialState.COMPLETE,
                                                   optuna.trial.TrialState.PRUNED))
    assert len(finished) == 5


@pytest.mark.parametrize("moment, kept", [
    ("started:SIGTERM", "FAIL"),  # the cohort has begun training
    ("trained:SIGINT", "COMPLETE"),  # trained, the first trial's value not yet stored
])
def test_a_signal_during_a_cohort_stores_what_finished_and_fails_the_rest(
    tmp_path, monkeypatch, moment, kept
):
    args = ["--trials", "2", *COHORT]
    done = subprocess.run(hooked_run("--signal-at", moment, args=args), cwd=tmp_path,
                          env=child_env(), capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 130, output
    assert "Traceback" not in output and f"Interrupted by {moment.partition(':')[2]}" in output
    url = f"sqlite:///{tmp_path / 'studies' / 'default.db'}"
    trials = _study(url, "default").get_trials()
    assert [t.state.name for t in trials] == [kept, kept]  # both trials of the cohort
    values = [t.value for t in trials]
    monkeypatch.chdir(tmp_path)
    assert run_main(args) == 0  # the same command again, in this process
    trials = _study(url, "default").get_trials()
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2
    assert [t.value for t in trials[:2]] == values  # nothing finished was trained again
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]


def test_a_cohort_paused_past_its_grace_drops_its_trials_and_carries_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'paused.db'}"
    args = ["--storage", url, "--study-name", "paused", "--trials", "2", *COHORT,
            "--heartbeat", "1", "--grace", "2"]
    # Another process (this one) finds the cohort's trials silent past their grace.
    code, out, err = paused_past_grace(
        "epoch", args, cwd=tmp_path, url=url, study_name="paused",
        dead=lambda trials: {t.state.name for t in trials} == {"FAIL"})
    assert code == 0, out + err
    assert "Traceback" not in err and "UpdateFinishedTrialError" not in err
    dropped = [line for line in err.splitlines() if "went without a heartbeat" in line]
    assert len(dropped) == 2, err  # one line per trial of the cohort
    states = [t.state.name for t in _study(url, "paused").get_trials()]
    assert states == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]


@pytest.mark.slow
def test_a_killed_cohorts_trials_are_retried_with_their_parameters(
    fresh_postgres, tmp_path, monkeypatch
):
    url = fresh_postgres()
    args = ["--storage", url, "--study-name", "kill", "--epochs", "2", "--train-size", "12000",
            "--batch-size", "32", "--threads", "1", "--cohort", "2", "--heartbeat", "1",
            "--grace", "3"]
    proc = subprocess.Popen(study_run(*args, "--trials", "2"), cwd=tmp_path, env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # a plain progress line: the cohort is training
        if "epoch 1/2" in line:
            break
    proc.kill()  # SIGKILL: no clean-up at all
    proc.wait()
    optuna_study = _study(url, "kill")
    killed = optuna_study.get_trials()
    assert [t.state.name for t in killed] == ["RUNNING", "RUNNING"]
    time.sleep(4)  # past the grace period
    # Target 1 is already met: the retries must still run, not wait for ever.
    monkeypatch.chdir(tmp_path)
    assert run_main([*args, "--trials", "1"]) == 0  # in this process
    trials = optuna_study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    assert sorted(retried(t) for t in trials[2:]) == [0, 1]
    for retry in trials[2:]:
        assert retry.params == killed[retried(retry)].params


def test_a_cohort_is_capped_by_the_free_gpu_memory(monkeypatch):
    import dataclasses

    import torch

    from study.cli import UsageError
    from study.run import _settle_cohort, build_parser, resolve_options
    from study.search.workers import NETWORK_BYTES, cohort_memory_cap, default_cohort

    assert cohort_memory_cap(10 * NETWORK_BYTES, repeats=1) == 8  # 80 % of what is free
    assert cohort_memory_cap(10 * NETWORK_BYTES, repeats=3) == 2
    assert cohort_memory_cap(0, repeats=1) == 1  # one trial is never refused
    assert (default_cohort("cpu", 1), default_cohort("cpu", 3), default_cohort("cpu", 5)) == (
        8, 2, 2)
    assert default_cohort("cuda", 1) == 1  # not measured on a GPU yet: asked for there
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (10 * NETWORK_BYTES, 0))

    def options(*argv: str):
        resolved = resolve_options(build_parser().parse_args(list(argv)), argv=argv)
        return dataclasses.replace(resolved, device="cuda")

    assert _settle_cohort(options()).cohort == 1
    assert _settle_cohort(options("--cohort", "5")).cohort == 5
    with pytest.raises(UsageError, match=r"--cohort 20: 20 networks need about 0\.3 GiB of "
                                         r"GPU memory, and 0\.2 GiB are free; give --cohort 8"):
        _settle_cohort(options("--cohort", "20"))
    kept = dataclasses.replace(options(), cohort=20)  # the size kept with the study
    assert _settle_cohort(kept).cohort == 8  # lowered to fit for this run


def test_a_cohort_study_resumed_with_checkpoints_trains_one_trial_at_a_time(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert run_main(_default_run(url, "--trials", "2")) == 0  # in a cohort
    assert run_main(_default_run(url, "--trials", "3", "--checkpoints", "ck")) == 0
    trial = _study(url, "r").get_trials()[2]
    assert (tmp_path / "ck" / "r" / "trial-00002.pt").is_file()
    assert trial.user_attrs[records.CHECKPOINT].endswith("trial-00002.pt")


def test_the_workers_and_threads_follow_the_cohort_when_left_out(tmp_path):
    from study.run import _adopt, _settle_cohort, build_parser, resolve_options
    from study.search.workers import cpu_cores

    def settled(*argv: str, stored: dict | None = None):
        resolved = resolve_options(build_parser().parse_args([*argv, "--device", "cpu"]),
                                   argv=argv)
        return _settle_cohort(_adopt(resolved, stored))

    default = settled()
    assert (default.cohort, default.workers, default.threads) == (8, 1, None)
    five = settled("--repeats", "5")  # 5 seeds: still a cohort, of 2 trials
    assert (five.cohort, five.workers) == (2, 1)
    one = settled("--cohort", "1")
    assert (one.cohort, one.workers) == (1, 2 if cpu_cores() >= 2 else 1)
    legacy = settled(stored={records.COHORT: 1})  # a study made before cohorts
    assert (legacy.cohort, legacy.workers) == (1, one.workers)
    given = settled("--workers", "2")  # each worker trains cohorts
    assert (given.cohort, given.workers) == (8, 2)
    # no trial depends on another's result: the single-threaded workers, each in cohorts
    grid = settled("--space", "lr-grid", "--repeats", "3")
    assert (grid.cohort, grid.workers, grid.threads) == (2, one.workers, one.threads)


def test_a_trial_whose_parameters_fail_to_be_proposed_leaves_nothing_running(tiny_data):
    from study.search.trial_loop import run_trials
    from study.train.config import TrialConfig

    optuna_study = optuna.create_study(direction="maximize")

    def propose(trial: optuna.Trial) -> TrialConfig:
        if trial.number == 2:
            raise RuntimeError("no configuration for trial 2")
        return TrialConfig(epochs=1, batch_size=64, seed=trial.number)

    with pytest.raises(RuntimeError, match="no configuration"):
        run_trials(optuna_study, propose, tiny_data, epochs=1, target=4, finished=0,
                   show_progress=False, cohort=4)
    assert [t.state.name for t in optuna_study.get_trials()] == ["FAIL"] * 3
