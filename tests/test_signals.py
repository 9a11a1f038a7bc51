"""Ctrl-C and SIGTERM at any moment of a run: no RUNNING trial of the signalled process, no
traceback, exit 130 with the summary, and a re-run that reaches the target without training a
finished trial again. Real processes, real signals."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from processes import TINY, child_env, hooked_run, study_run

ARGS = ["--trials", "2", *TINY]
RUN = study_run(*ARGS)


def _trials(cwd: Path) -> list[optuna.trial.FrozenTrial]:
    url = f"sqlite:///{cwd / 'studies' / 'default.db'}"
    return optuna.load_study(study_name="default", storage=url).get_trials()


@pytest.mark.slow
@pytest.mark.parametrize(
    "moment, kept",
    [
        ("created:SIGINT", "FAIL"),  # the trial exists, its heartbeat has not begun
        ("started:SIGTERM", "FAIL"),  # the objective has begun
        ("trained:SIGINT", "COMPLETE"),  # trained, the value not yet stored
        ("stored:SIGTERM", "COMPLETE"),  # stored, the next trial not begun
    ],
)
def test_a_signal_at_any_moment_of_a_trial_leaves_nothing_running(tmp_path, moment, kept):
    done = subprocess.run(
        hooked_run("--signal-at", moment, args=ARGS),
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 130, output
    assert "Traceback" not in output and "Should not reach" not in output
    assert f"Interrupted by {moment.partition(':')[2]}" in done.stdout  # after the summary
    assert "finished of target 2" in done.stdout
    trials = _trials(tmp_path)
    assert [t.state.name for t in trials] == [kept]  # one trial, never left RUNNING
    value = trials[0].value
    again = subprocess.run(RUN, cwd=tmp_path, env=child_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    trials = _trials(tmp_path)
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(finished) == 2 and trials[0].value == value  # trial 0 was not trained again
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]


@pytest.mark.slow
def test_a_second_ctrl_c_during_the_clean_up_changes_nothing(tmp_path):
    cmd = [*RUN, "--epochs", "3", "--train-size", "6000", "--batch-size", "32"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "epoch 1/3" in line:  # training trial 0
            break
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    output = "".join(lines) + out
    assert proc.returncode == 130, output
    assert "Traceback" not in output and "UnboundLocalError" not in output
    assert "Interrupted by SIGINT" in output
    assert "RUNNING" not in {t.state.name for t in _trials(tmp_path)}


@pytest.mark.slow
def test_ctrl_c_while_starting_is_one_line(tmp_path):
    proc = subprocess.Popen(
        RUN, cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # importing torch and Optuna takes seconds
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        "python -m study.run: interrupted while starting; nothing was run."
    ], err
    assert not (tmp_path / "studies").exists()


class _Alarm(BaseException):
    """Stands for Ctrl-C in the lock test (a KeyboardInterrupt that strayed outside the
    test would stop the whole session)."""


def test_ctrl_c_while_waiting_for_the_sibling_lock_leaves_it_free_to_take_again(tmp_path):
    """The lock two sibling workers share: an interrupted wait holds nothing, so the next
    ``with`` waits again instead of running unlocked."""
    fcntl = pytest.importorskip("fcntl")
    import threading

    from study.search.trial_loop import _Claim

    claim = _Claim(f"test-{tmp_path}")
    other = open(claim.path, "a")  # another open file: flock makes it wait for this one
    fcntl.flock(other, fcntl.LOCK_EX)

    def interrupt(signum, frame):
        assert frame.f_code is _Claim.acquire.__code__, "the alarm came outside the wait"
        raise _Alarm

    previous = signal.signal(signal.SIGALRM, interrupt)
    # should the alarm never come, the wait ends (and the test fails) instead of hanging
    rescue = threading.Timer(10.0, lambda: fcntl.flock(other, fcntl.LOCK_UN))
    rescue.start()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(_Alarm):
            claim.acquire()
        fcntl.flock(other, fcntl.LOCK_UN)
        with claim:  # takes it for real: a third holder is refused
            probe = open(claim.path, "a")
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            probe.close()
    finally:
        rescue.cancel()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        other.close()
        claim.path.unlink(missing_ok=True)
