from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import optuna
import pytest
import sqlalchemy
from processes import child_env
from sqlalchemy.engine import make_url

from analysis.load import open_readonly
from study.run import main
from study.store import storage as storage_mod
from study.store.storage import (
    SETTINGS_COMPLETE,
    StorageError,
    default_storage_url,
    open_storage,
    open_study,
    resolve_sqlite_url,
    stored_settings,
)


def test_default_url_is_a_sqlite_file_under_studies():
    assert default_storage_url("adam-vs-sgd") == "sqlite:///studies/adam-vs-sgd.db"


def test_open_storage_creates_the_folder_and_sets_a_long_lock_timeout(tmp_path):
    url = f"sqlite:///{tmp_path / 'deep' / 'er' / 's.db'}"
    storage = open_storage(url)
    assert (tmp_path / "deep" / "er").is_dir()
    assert storage.engine_kwargs["connect_args"]["timeout"] >= 60
    assert storage.heartbeat_interval == storage_mod.HEARTBEAT_INTERVAL


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///studies/x.db", "sqlite:////proj/studies/x.db"),
        ("sqlite:///../studies/x.db", "sqlite:////studies/x.db"),  # ".." is normalised
        ("sqlite+pysqlite:///x.db?timeout=5", "sqlite+pysqlite:////proj/x.db?timeout=5"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://me:secret@host/db", "postgresql://me:secret@host/db"),
    ],
)
def test_resolve_sqlite_url_reads_a_relative_path_from_the_folder_given(url, expected):
    assert resolve_sqlite_url(url, "/proj") == expected


def test_resolve_sqlite_url_reads_a_relative_path_from_the_working_directory(in_tmp):
    assert resolve_sqlite_url("sqlite:///studies/x.db") == f"sqlite:///{in_tmp}/studies/x.db"


@pytest.mark.parametrize(
    "reader", [lambda url: open_storage(url, create=False), open_readonly], ids=["open", "read"]
)
def test_a_missing_sqlite_file_is_named_by_its_absolute_path(in_tmp, reader):
    with pytest.raises(StorageError) as err:
        reader("sqlite:///studies/x.db")
    message = str(err.value)
    assert message.startswith(f"{in_tmp / 'studies' / 'x.db'} does not exist; run a study first")
    assert f"relative path is read from the working directory, {in_tmp}" in message
    assert not (in_tmp / "studies").exists()  # a reader creates nothing


def test_unreachable_server_is_a_storage_error_with_the_password_masked():
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is the `postgres` extra")
    with pytest.raises(StorageError) as err:
        open_storage("postgresql://me:secret@127.0.0.1:1/none")
    assert "secret" not in str(err.value) and "***" in str(err.value)
    assert "check the URL, that the server runs" in str(err.value)


def test_open_study_stores_settings_and_checks_them_on_resume(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    created = open_study(
        storage, "s", settings={"space": "default", "epochs": 5}, checked=("space", "epochs")
    )
    assert created.user_attrs == {"space": "default", "epochs": 5, SETTINGS_COMPLETE: True}
    assert (
        open_study(
            storage, "s", settings={"space": "default", "epochs": 5}, checked=("space", "epochs")
        ).study_name
        == "s"
    )
    with pytest.raises(StorageError, match="created with --epochs 5, not 3"):
        open_study(
            storage, "s", settings={"space": "default", "epochs": 3}, checked=("space", "epochs")
        )


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_study_runs_and_resumes(postgres_url, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    name = f"pg-{uuid.uuid4().hex[:8]}"
    args = [
        "--storage",
        postgres_url,
        "--study-name",
        name,
        "--epochs",
        "1",
        "--train-size",
        "1000",
        "--batch-size",
        "100",
    ]
    assert main(["--trials", "2", *args]) == 0
    assert main(["--trials", "3", *args]) == 0
    optuna_study = optuna.load_study(study_name=name, storage=postgres_url)
    assert len(optuna_study.get_trials()) == 3
    assert all("eval_accuracy" in t.user_attrs for t in optuna_study.get_trials())
    password = make_url(postgres_url).password
    if password:
        assert password not in capsys.readouterr().out  # the summary masks it
    optuna.delete_study(study_name=name, storage=postgres_url)


@pytest.mark.postgres
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_postgres_trial_of_a_dead_worker_is_failed_and_retried(postgres_url):
    storage = open_storage(postgres_url, heartbeat=1, grace=2)
    assert storage.engine_kwargs["pool_size"] == 2
    name = f"pg-{uuid.uuid4().hex[:8]}"
    optuna_study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    trial = optuna_study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(trial._trial_id)  # the worker's last sign of life
    time.sleep(3)
    optuna.storages.fail_stale_trials(optuna_study)
    states = [t.state for t in optuna_study.get_trials()]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    retry = optuna_study.get_trials()[1]
    assert retry.params == trial.params
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    optuna.delete_study(study_name=name, storage=postgres_url)


def test_a_reader_never_writes_a_schema_into_an_empty_file(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(StorageError, match="is an empty file, not a study database"):
        open_storage(f"sqlite:///{empty}", create=False)
    assert empty.stat().st_size == 0
    open_storage(f"sqlite:///{empty}")  # a writer may start a study in it
    assert empty.stat().st_size > 0


def test_a_study_created_without_its_settings_is_adopted_not_lost(tmp_path, monkeypatch):
    """A run that crashed between creating the study and writing its settings (or a worker
    that reads the study while another is still writing them) does not lock it out."""
    monkeypatch.setattr("study.store.storage.SETTINGS_WAIT", 0.3)
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    settings = {"space": "default", "epochs": 5, "seed": 0}
    optuna.create_study(storage=storage, study_name="s", direction="maximize")  # crashed here
    optuna_study = open_study(storage, "s", settings=settings, checked=("space", "epochs"))
    assert optuna_study.user_attrs == {**settings, SETTINGS_COMPLETE: True}
    # half written: what is there must still match
    optuna.create_study(storage=storage, study_name="half", direction="maximize").set_user_attr(
        "epochs", 3
    )
    with pytest.raises(StorageError, match="was created with --epochs 3, not 5"):
        open_study(storage, "half", settings=settings, checked=("space", "epochs"))
    assert (
        SETTINGS_COMPLETE not in optuna.load_study(study_name="half", storage=storage).user_attrs
    )
    # a study with trials and no settings is someone else's: refused, not adopted
    foreign = optuna.create_study(storage=storage, study_name="f", direction="maximize")
    foreign.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with pytest.raises(StorageError, match="was not created by study.run"):
        open_study(storage, "f", settings=settings, checked=("space", "epochs"))


def test_a_reader_waits_for_settings_another_worker_is_still_writing(tmp_path):
    """The CI failure this guards: a worker read a study whose creator had written some of
    its settings, took the missing ``allocation`` for an old study's (``sampler``) and was
    refused. A reader now waits for the mark that the settings are complete."""
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    settings = {"space": "default", "allocation": "balanced"}
    legacy = {"allocation": "sampler"}
    creating = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    creating.set_user_attr("space", "default")  # the creator is half-way through

    def finish() -> None:
        time.sleep(0.5)
        creating.set_user_attr("allocation", "balanced")
        creating.set_user_attr(SETTINGS_COMPLETE, True)

    writer = threading.Thread(target=finish)
    writer.start()
    started = time.monotonic()
    found = stored_settings(storage, "s", legacy=legacy)
    writer.join()
    assert found["allocation"] == "balanced"  # not the legacy value of half the settings
    assert time.monotonic() - started >= 0.5
    opened = open_study(storage, "s", settings=settings, checked=("allocation",), legacy=legacy)
    assert opened.user_attrs["allocation"] == "balanced"
    # A study with trials made before the mark existed is complete: legacy fills its gaps.
    old = optuna.create_study(storage=storage, study_name="old", direction="maximize")
    old.set_user_attr("space", "default")
    old.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    started = time.monotonic()
    assert stored_settings(storage, "old", legacy=legacy)["allocation"] == "sampler"
    assert time.monotonic() - started < 1.0  # no wait
    assert stored_settings(storage, "none") is None


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the creator asks, as cohorts do
def test_a_creator_that_starts_a_trial_between_the_readers_reads_is_waited_for(tmp_path):
    """The CI failure this guards: a reader got half the settings, then saw the trial the
    creator started just after writing the rest, took the study for complete and was refused
    ("no 'batch_size'"). Here the creator finishes (settings, mark, a trial) while the reader
    reads the attributes; the reader must come back for all of them."""
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    creating = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    creating.set_user_attr("space", "default")  # the creator is half-way through
    read = storage.get_study_user_attrs

    def read_then_finish(study_id: int) -> dict:
        attrs = read(study_id)  # what the reader gets: half the settings
        if SETTINGS_COMPLETE not in attrs:
            creating.set_user_attr("batch_size", 64)
            creating.set_user_attr(SETTINGS_COMPLETE, True)
            creating.ask()  # its first trial
        return attrs

    storage.get_study_user_attrs = read_then_finish
    found = stored_settings(storage, "s")
    assert found["batch_size"] == 64


def test_heartbeat_and_grace_reach_the_storage(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'h.db'}", heartbeat=1, grace=3)
    assert (storage.heartbeat_interval, storage.grace_period) == (1, 3)
    with pytest.raises(ValueError, match="grace > heartbeat"):
        open_storage(f"sqlite:///{tmp_path / 'h.db'}", heartbeat=5, grace=5)


#: A process that opens storages when told: it reads "URL GO-FILE" lines, says "ready", waits
#: for GO-FILE to exist and opens URL, then says "ok" or the error. No torch: it starts fast.
OPENER = """
import os, sys, time
from study.store.storage import open_storage
for line in sys.stdin:
    url, go = line.split()
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.0005)
    try:
        open_storage(url)
        print("ok", flush=True)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}".splitlines()[0], flush=True)
"""


def test_processes_opening_a_new_sqlite_file_at_the_same_instant_all_join(tmp_path):
    """Four processes (more than the cores a CI runner has) open the same new file at once,
    five times: each creates the schema, and all but one find it made a moment ago, written
    twice (SQLite's "UNIQUE constraint failed: alembic_version.version_num")."""
    openers = [
        subprocess.Popen([sys.executable, "-c", OPENER], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, env=child_env(), text=True)
        for _ in range(4)
    ]
    failures = []
    try:
        for attempt in range(5):
            go = tmp_path / f"go-{attempt}"
            for opener in openers:
                opener.stdin.write(f"sqlite:///{tmp_path / f's{attempt}.db'} {go}\n")
                opener.stdin.flush()
            assert [o.stdout.readline().strip() for o in openers] == ["ready"] * 4
            go.touch()
            failures += [line for o in openers if (line := o.stdout.readline().strip()) != "ok"]
    finally:
        for opener in openers:
            opener.stdin.close()
            opener.wait(timeout=30)
    assert failures == []


def test_server_timeouts_reach_the_postgres_session(postgres_url, monkeypatch):
    """A server that stops answering ends the run after OPTSTUDY_DB_TIMEOUT seconds (a frozen
    one for real: tests/test_stuck.py); the URL's own options still apply, after ours."""
    monkeypatch.setenv(storage_mod.TIMEOUT_ENV, "7")
    separator = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{separator}options=-c%20lock_timeout%3D1234"
    storage = open_storage(url)
    assert storage.engine_kwargs["connect_args"]["connect_timeout"] == 7
    shown = {}
    with storage.engine.connect() as conn:
        for name in ("statement_timeout", "idle_in_transaction_session_timeout", "lock_timeout"):
            shown[name] = conn.execute(sqlalchemy.text(f"SHOW {name}")).scalar()
    assert shown == {"statement_timeout": "7s", "idle_in_transaction_session_timeout": "3500ms",
                     "lock_timeout": "1234ms"}
    storage.engine.dispose()


@pytest.mark.parametrize("value", ["0", "soon", "-5", "1.5"])
def test_a_server_timeout_that_is_not_whole_seconds_is_refused(monkeypatch, value):
    monkeypatch.setenv(storage_mod.TIMEOUT_ENV, value)
    with pytest.raises(StorageError, match=f"OPTSTUDY_DB_TIMEOUT={value!r} is not a number of"):
        open_storage("postgresql://me:secret@127.0.0.1:1/none")
