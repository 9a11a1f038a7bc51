"""A database server or a worker that stops for a while, with real processes: a PostgreSQL
server frozen (SIGSTOP) under a run ends it after the server timeout with one line and exit 2,
and the re-run continues; a run paused past ``--grace``, whose trial another process failed as
dead, says so in one line, drops that trial's result and carries on."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import optuna
import pytest
from processes import TINY, child_env, paused_past_grace, study_run

from study.search.workers import _Worker
from study.store.storage import TIMEOUT_ENV

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP is POSIX")


def _unavailable(reason: str) -> NoReturn:
    """Skip, unless STUDY_REQUIRE_POSTGRES=1 (CI), where PostgreSQL must be there."""
    if os.environ.get("STUDY_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"STUDY_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


def _server_programs() -> tuple[str, str]:
    """PostgreSQL's ``initdb`` and ``pg_ctl``: on PATH, or where ``pg_config`` or Debian's
    packages put them (``/usr/lib/postgresql/<version>/bin``, off PATH)."""
    folders: list[str | None] = [None]
    if pg_config := shutil.which("pg_config"):
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        folders.append(done.stdout.strip() or None)
    folders += sorted(map(str, Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    for folder in folders:
        initdb, pg_ctl = shutil.which("initdb", path=folder), shutil.which("pg_ctl", path=folder)
        if initdb and pg_ctl:
            return initdb, pg_ctl
    _unavailable("PostgreSQL's server programs (initdb, pg_ctl) are not installed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(folder: Path) -> list[str]:
    """The command prefix that runs PostgreSQL's programs: none, or as root (which PostgreSQL
    refuses) ``runuser -u postgres --``, ``folder`` then made that user's."""
    if os.geteuid() != 0:
        return []
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        _unavailable("running as root, and there is no `postgres` user to run a server")
    runuser = shutil.which("runuser") or _unavailable("running as root, without runuser")
    os.chown(folder, owner.pw_uid, owner.pw_gid)
    return [runuser, "-u", "postgres", "--"]


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, int]]:
    """A PostgreSQL server of this test's own (one to freeze; never the shared one): its URL
    (with a password, which it ignores, for the messages to mask) and its postmaster's pid."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is the `postgres` extra")
    initdb, pg_ctl = _server_programs()
    folder = Path(tempfile.mkdtemp(prefix="optstudy-pg-"))
    data, port, postmaster = folder / "data", _free_port(), None
    try:
        as_user = _as_server_user(folder)
        server = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "study", "--auth=trust",
                        "-N"], check=True, capture_output=True)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w",
                        "-o", server, "start"], check=True, capture_output=True)
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql://study:frozen-secret@127.0.0.1:{port}/postgres", postmaster
    finally:
        if postmaster is not None:
            os.kill(postmaster, signal.SIGCONT)
            subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if "error" in line.lower()]


@pytest.mark.slow
def test_a_frozen_server_stops_the_run_in_one_line_and_the_rerun_continues(
    own_postgres, tmp_path
):
    """The postmaster frozen once the study is open: the workers' connections are never
    accepted. They give up after OPTSTUDY_DB_TIMEOUT seconds instead of waiting for ever."""
    url, postmaster = own_postgres
    command = study_run("--storage", url, "--study-name", "frozen", "--trials", "3", *TINY,
                        "--workers", "2")
    env = child_env(**{TIMEOUT_ENV: "3"})
    run = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        for line in run.stdout:
            if "2 workers" in line:  # the study is open; the workers are starting
                break
        os.kill(postmaster, signal.SIGSTOP)
        output = line + run.communicate(timeout=60)[0]
    finally:
        os.kill(postmaster, signal.SIGCONT)
        if run.poll() is None:
            run.kill()
    assert run.returncode == 2, output
    assert "Traceback" not in output and "frozen-secret" not in output
    [error] = _errors(output)
    assert error.startswith("python -m study.run: error: cannot open --storage "
                            f"{url.replace('frozen-secret', '***')}: the server did not answer "
                            "within 3 s"), error
    assert f"({TIMEOUT_ENV} sets the wait), then run the same command" in error
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    trials = optuna.load_study(study_name="frozen", storage=url).get_trials()
    assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 3


@pytest.mark.parametrize(
    "moment",
    [
        "epoch",  # paused in its objective: the next write into the trial is refused
        "trained",  # paused with its value not yet stored: telling it is refused
    ],
)
def test_a_run_paused_past_its_grace_drops_the_trial_failed_meanwhile(tmp_path, moment):
    url = f"sqlite:///{tmp_path / 'paused.db'}"
    args = ["--storage", url, "--study-name", "paused", "--trials", "2", *TINY,
            "--heartbeat", "1", "--grace", "2"]
    # Another process (this one) finds trial 0 silent past its grace and fails it.
    code, out, err = paused_past_grace(
        moment, args, cwd=tmp_path, url=url, study_name="paused",
        dead=lambda trials: trials[0].state.name != "RUNNING")
    assert code == 0, out + err
    for crash in ("Traceback", "Cannot tell", "Should not reach", "UpdateFinishedTrialError"):
        assert crash not in err, err
    dropped = [line for line in err.splitlines() if "trial 0 went without a heartbeat" in line]
    assert len(dropped) == 1, err
    assert "another process marked it failed" in dropped[0]
    assert "its result is dropped and the run carries on" in dropped[0]
    trials = optuna.load_study(study_name="paused", storage=url).get_trials()
    assert trials[0].state.name == "FAIL" and trials[0].value is None
    assert sorted(t.state.name for t in trials[1:]) == ["COMPLETE", "COMPLETE"]


def test_the_parent_of_workers_shows_the_warnings_its_workers_log(tmp_path):
    """A worker's stderr is a file the parent reads only when it fails; its warnings (a
    trial it dropped) are shown as they come, whole lines only, each once."""
    with open(tmp_path / "stderr", "w+b") as stderr:
        worker = _Worker(2, subprocess.Popen(["true"]), stderr)
        stderr.write(b"INFO x: noise\nWARNING a: trial 3 went without a heartbeat\nWARN")
        stderr.flush()
        assert worker.warnings() == ["WARNING a: trial 3 went without a heartbeat"]
        stderr.write(b"ING b: second\n")
        stderr.flush()
        assert worker.warnings() == ["WARNING b: second"]
        assert worker.warnings() == []
        worker.process.wait()
