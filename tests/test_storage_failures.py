"""The database failing under a run: a full disk mid-run, a read-only file, a folder that is
a file. Each is one line naming the path and the cause, exit 2, no trial of the run left
RUNNING, and nothing finished lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from processes import TINY, child_env, study_run

from study.store.storage import StorageError, storage_failure

REPO = Path(__file__).resolve().parent.parent
#: Two epochs: each trial writes enough for the small database limits below to be reached.
TWO_EPOCHS = [*TINY, "--epochs", "2"]

#: ``python -m study.run`` on a disk that fills up: SQLite's own limit on the file's pages
#: (``max_page_count``) gives the error a full disk gives, "database or disk is full".
FILLS_UP = """
import sys
from sqlalchemy import event
import study.run as run

real = run.open_storage

def open_storage(url, **kwargs):
    storage = real(url, **kwargs)

    @event.listens_for(storage.engine, "connect")
    def fill_up(conn, _):
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + int(sys.argv[1])}")

    storage.engine.dispose()
    return storage

run.open_storage = open_storage
sys.exit(run.main(sys.argv[2:]))
"""


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        study_run(*args),
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_error(stderr: str) -> str:
    """The command's one error line (what follows its ``error:`` prefix)."""
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("python -m study.run: error: "), stderr
    return errors[0]


def _states(path: Path) -> list[str]:
    study = optuna.load_study(study_name="default", storage=f"sqlite:///{path}")
    return [t.state.name for t in study.get_trials()]


@pytest.mark.slow
@pytest.mark.parametrize("pages", [2, 6])
def test_a_disk_that_fills_up_mid_run_is_one_line_and_loses_nothing_finished(tmp_path, pages):
    full = subprocess.run(
        [sys.executable, "-c", FILLS_UP, str(pages), "--trials", "30", *TWO_EPOCHS],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    db = tmp_path / "studies" / "default.db"
    assert full.returncode == 2, full.stdout + full.stderr
    error = _one_error(full.stderr)
    assert "database or disk is full" in error  # the cause, then the fix
    assert f"free space on the disk that holds {db}" in error
    assert "run the same command to continue" in error
    assert "Traceback" not in full.stderr and "Should not reach" not in full.stderr
    states = _states(db)
    assert "RUNNING" not in states and states[-1] == "FAIL"  # the trial being stored, closed
    kept = states.count("COMPLETE") + states.count("PRUNED")
    assert kept >= 1
    again = _run(tmp_path, "--trials", str(kept + 1), *TWO_EPOCHS)  # space again: it continues
    assert again.returncode == 0, again.stdout + again.stderr
    after = _states(db)
    assert after[: len(states)] == states and after.count("RUNNING") == 0


def test_a_read_only_database_is_refused_before_anything_is_written(tmp_path):
    db = tmp_path / "ro.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="x")
    db.chmod(0o444)
    before = db.read_bytes()
    done = _run(tmp_path, "--trials", "1", "--storage", f"sqlite:///{db}", *TWO_EPOCHS)
    assert done.returncode == 2
    error = _one_error(done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1
    assert f"{db} is read-only" in error
    assert f"chmod u+w {db}" in error and "another --storage" in error
    assert db.read_bytes() == before


def test_a_storage_path_under_a_file_is_refused(tmp_path):
    (tmp_path / "studies").write_text("not a folder")
    done = _run(tmp_path, "--trials", "1", *TWO_EPOCHS)
    assert done.returncode == 2
    error = _one_error(done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1
    assert f"cannot make {tmp_path / 'studies' / 'default.db'}" in error
    assert f"{tmp_path / 'studies'} is a file" in error
    assert "move it away" in error and "another --storage" in error


def test_optunas_own_error_on_top_of_the_databases_names_the_databases_reason():
    try:
        try:
            raise sqlalchemy.exc.OperationalError(
                "UPDATE trials", {}, sqlite3.OperationalError("database or disk is full")
            )
        except sqlalchemy.exc.OperationalError:
            raise AssertionError("Should not reach.")  # noqa: B904 - as Optuna raises it
    except AssertionError as exc:
        failure = storage_failure(exc, "sqlite:////data/x.db")
    assert isinstance(failure, StorageError)
    assert "(database or disk is full); free space on the disk that holds /data/x.db" in str(
        failure
    )
    assert storage_failure(ValueError("a bug"), "sqlite:////data/x.db") is None
    lost = storage_failure(
        sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")),
        "postgresql://u:secret@db:5432/s",
    )
    assert "secret" not in str(lost) and "check that the server runs" in str(lost)
