"""Many workers on one PostgreSQL study, with real processes: started at the same instant on a
fresh database, killed with SIGKILL, signalled at random moments. Each test makes its own
database (the role of STUDY_TEST_POSTGRES_URL needs CREATEDB, as ``.ci/run`` grants)."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from processes import TINY, child_env, hooked_run, study_run

TRAINING = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _run_args(url: str, name: str, *options: str) -> list[str]:
    return ["--storage", url, "--study-name", name, *options]


def _run_cmd(url: str, name: str, *options: str) -> list[str]:
    return study_run(*_run_args(url, name, *options))


def _started_together(runs: list[list[str]], cwd: Path, barrier: Path) -> list[tuple[int, str]]:
    """Run ``python -m study.run`` with each of ``runs`` (its arguments) so that all open the
    storage at the same instant (``tests/hooked_run.py --start-file``); (exit code, output)."""
    procs = [
        subprocess.Popen(
            hooked_run("--start-file", str(barrier), args=args),
            cwd=cwd,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for args in runs
    ]
    deadline = time.monotonic() + 120
    while len(list(cwd.glob(f"{barrier.name}.*"))) < len(runs):  # each is ready
        assert time.monotonic() < deadline, "the workers never got ready"
        assert all(p.poll() is None for p in procs), [p.communicate()[0] for p in procs]
        time.sleep(0.01)
    barrier.touch()
    return [(p.wait(timeout=300), p.stdout.read()) for p in procs]


def test_four_workers_started_at_once_on_a_fresh_database_all_join(fresh_postgres, tmp_path):
    # One start: the race itself (settings half-written, the schema created twice) is
    # covered deterministically in test_storage.py; this checks real processes end to end.
    target = 6
    url, barrier = fresh_postgres(), tmp_path / "go"
    runs = [_run_args(url, "pg4", "--trials", str(target), "--seed", str(k), *TINY)
            for k in range(4)]
    results = _started_together(runs, tmp_path, barrier)
    assert [code for code, _ in results] == [0, 0, 0, 0], "\n".join(o for _, o in results)
    trials = optuna.load_study(study_name="pg4", storage=url).get_trials()
    finished = [t for t in trials if t.state.is_finished()]
    assert target <= len(finished) <= target + 3
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert not [t for t in trials if t.state in TRAINING]
    print(f"overshoot of 4 workers started at once: {len(finished) - target}")


def test_a_killed_workers_trial_is_retried_with_its_parameters(fresh_postgres, tmp_path):
    url = fresh_postgres()
    heartbeat = ["--heartbeat", "1", "--grace", "3"]
    slow = ["--epochs", "2", "--train-size", "20000", "--batch-size", "32", "--threads", "1",
            "--cohort", "1"]
    cmd = _run_cmd(url, "kill", "--trials", "2", "--workers", "1", *heartbeat, *slow)
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("trial   0"):  # trial 0 is done: trial 1 begins
            break
    time.sleep(1.0)
    proc.kill()  # SIGKILL: no clean-up at all
    proc.wait()
    study = optuna.load_study(study_name="kill", storage=url)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "RUNNING"]
    killed = study.get_trials()[1]
    time.sleep(4)  # past the grace period
    # Target 1 is already met: the retry must still run, not wait for ever.
    again = subprocess.run(
        _run_cmd(url, "kill", "--trials", "1", "--workers", "1", *heartbeat, *slow),
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    retry = trials[2]
    retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    assert retried(retry) == killed.number and retry.params == killed.params
    assert "waiting" not in again.stdout  # the summary has no trial left waiting


def test_signals_at_random_moments_never_leave_a_trial_running(fresh_postgres, tmp_path):
    """Two workers at a time, each sent SIGINT or SIGTERM at a random moment (trials of
    ~0.1 s: creation, training, storing, sampling), 8 signals in all; each moment is
    also hit deterministically in test_signals.py."""
    url = fresh_postgres()
    rng = random.Random(0)
    values: dict[int, float] = {}

    def cmd(trials: int, seed: int) -> list[str]:
        return _run_cmd(
            url, "sig", "--trials", str(trials), "--seed", str(seed), *TINY
        )

    for round_ in range(4):
        procs = [
            subprocess.Popen(
                cmd(10_000, 2 * round_ + k),
                cwd=tmp_path,
                env=child_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for k in range(2)
        ]
        for proc in procs:
            for line in proc.stdout:
                if line.startswith("INFO"):  # the study is open, trials begin
                    break
        for proc in procs:
            time.sleep(rng.uniform(0.0, 0.6))
            proc.send_signal(rng.choice([signal.SIGINT, signal.SIGTERM]))
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 130, out
            assert "Traceback" not in out and "Should not reach" not in out, out
            assert "Interrupted by SIG" in out
        trials = optuna.load_study(study_name="sig", storage=url).get_trials()
        assert not [t.number for t in trials if t.state in TRAINING], round_
        for t in trials:  # a finished trial is never trained again, nor changed
            if t.state == optuna.trial.TrialState.COMPLETE:
                assert values.setdefault(t.number, t.value) == t.value
    finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    done = subprocess.run(
        cmd(finished + 2, 99), cwd=tmp_path, env=child_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    after = optuna.load_study(study_name="sig", storage=url).get_trials()
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in after) == finished + 2
    assert all(after[t.number].value == t.value for t in trials if t.state.name == "COMPLETE")
