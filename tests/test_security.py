"""What the toolkit prints, deletes and writes when a URL, a study name or the database holds
something hostile: passwords masked everywhere (also from ``ps``), commands quoted for the
shell, files deleted and written only inside the toolkit's own folders; and workers that stop
with their parent and failures named by their real cause, with one prefix."""

from __future__ import annotations

import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
import pytest
from conftest import add_trial
from processes import child_env, study_run

from analysis.report import main as report_main
from study.confirm import _summary as confirm_summary
from study.confirm import main as confirm_main
from study.lr_range import main as lr_range_main
from study.run import main as run_main
from study.search.workers import STORAGE_ENV, _Worker
from study.store.storage import display_url, open_storage, storage_failure
from study.summary import next_steps

#: A run of a few trials that costs little more than starting the process.
TINY = ["--epochs", "1", "--train-size", "500", "--batch-size", "100", "--pruner", "none"]
#: Study names a shell reads as code, or splits, or expands, unless each is quoted.
HOSTILE_NAMES = ["q'; rm -f f; echo '", "$(touch pwned)", "`pwd`", "a\nb", "#x", "~root"]


# --- 1, 5: every printed URL masks the whole password --------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://rel:pw@host:5432/db", "postgresql://rel:***@host:5432/db"),
        # an unencoded '@' in the password: masked up to the last '@', not the first
        ("postgresql://rel:S3cr@tPw@host/db", "postgresql://rel:***@host/db"),
        # malformed: SQLAlchemy cannot parse them, the password is masked all the same
        ("postgresql://rel:S3cr@t:Pw@host:5432/db", "postgresql://rel:***@host:5432/db"),
        ("post gres://rel:S3cretPw@host/db", "post gres://rel:***@host/db"),
        ("postgresql:/rel:S3cretPw@host/db", "postgresql:***@host/db"),
        ("postgresql://rel@host/db?password=S3cretPw", "postgresql://rel@host/db?password=***"),
        ("postgresql://rel@host/db", "postgresql://rel@host/db"),
        ("sqlite:////data/a@b.db", "sqlite:////data/a@b.db"),  # a path, not a password
    ],
)
def test_display_url_masks_the_whole_password(url, shown):
    assert display_url(url) == shown


COMMANDS = {
    "run": lambda url, tmp: run_main(["--storage", url, "--trials", "1", *TINY]),
    "confirm": lambda url, tmp: confirm_main(["--study-name", "s", "--storage", url]),
    "lr_range": lambda url, tmp: lr_range_main(["--optimizer", "adam", "--storage", url]),
    "report": lambda url, tmp: report_main(
        ["--study-name", "s", "--storage", url, "--out", str(tmp / "rep")]),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "url",
    [
        "postgresql://rel:S3cr@tPw@127.0.0.1:1/db",  # an unencoded '@'
        "postgresql://rel:S3cr@t:Pw@127.0.0.1:1/db",  # malformed
        "postgresql://rel:S3cretPw@127.0.0.1:1/db",  # well formed, no server there
    ],
    ids=["at-sign", "malformed", "unreachable"],
)
def test_no_command_prints_any_part_of_the_password(command, url, tmp_path, capfd, caplog):
    assert COMMANDS[command](url, tmp_path) == 2
    captured = capfd.readouterr()
    printed = captured.out + captured.err + caplog.text
    assert "***" in printed and "Traceback" not in printed
    for part in ("S3cr", "tPw", "Pw@"):
        assert part not in printed, printed
    if "@t" in url:  # the '@' case is refused, saying how to write it
        assert "percent-encode" in printed or "not a database URL" in printed


def test_an_unencoded_at_sign_is_refused_with_the_fix():
    with pytest.raises(ValueError) as err:
        open_storage("postgresql://rel:S3cr@tPw@127.0.0.1:1/db")
    assert "percent-encode it as %40" in str(err.value) and "PGPASSWORD" in str(err.value)
    assert "tPw" not in str(err.value)


def test_confirms_report_line_masks_the_password_and_quotes_the_name(tmp_path):
    name = HOSTILE_NAMES[0]
    storage = open_storage(f"sqlite:///{tmp_path / 'c.db'}")
    confirm_study = optuna.create_study(storage=storage, study_name=f"{name}.confirm",
                                        direction="maximize")
    add_trial(confirm_study, "adam", 1e-3, 0.97, source_trial=0)
    url = "postgresql://rel:S3cretPw@db:5432/studies"
    text = confirm_summary(storage, f"{name}.confirm", display_url(url), url, wanted=1)
    assert "S3cretPw" not in text
    report = next(line for line in text.splitlines() if line.startswith("Report: "))
    words = shlex.split(report.removeprefix("Report: "))
    assert words[words.index("--study-name") + 1] == name
    assert words[words.index("--storage") + 1] == "postgresql://rel:***@db:5432/studies"
    assert "put yours in its place" in text


# --- 4: printed commands give the study name back and run nothing else ---------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_printed_command_pasted_into_a_shell_runs_nothing_but_itself(name, tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAKELEVEL", raising=False)
    (tmp_path / "f").write_text("kept")
    shown = "postgresql://rel:***@db/x"
    report, trials = next_steps(name, shown, storage_option=shown)[:2]
    for line in (report, trials):
        command = line.split(": ", 1)[1]
        words = shlex.split(command)
        assert words[words.index("--study-name") + 1] == name
        # What a shell makes of it: printf shows the words the command would get.
        shell = subprocess.run(["sh", "-c", f"printf '%s\\0' {command}"], cwd=tmp_path,
                               capture_output=True, text=True, check=True)
        assert shell.stdout.split("\0")[:-1] == words
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # nothing made or deleted


# --- 2: --keep-checkpoints deletes only its own files in its own folder --------------------


@pytest.mark.slow
def test_keep_checkpoints_never_deletes_a_file_the_database_points_outside(tmp_path,
                                                                          monkeypatch):
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    monkeypatch.chdir(work)
    victims = [tmp_path / "victim.txt", outside / "abs.txt", outside / "linked.txt",
               outside / "trial-00099.pt"]
    for victim in victims:
        victim.write_text("precious")
    argv = ["--trials", "1", *TINY, "--workers", "1", "--checkpoints", "ck"]
    assert run_main(argv) == 0
    folder = work / "ck" / "default"
    (folder / "trial-00098.pt").symlink_to(victims[2])  # a link in the folder, to outside
    (folder / "sub").symlink_to(outside, target_is_directory=True)
    (folder / "notes.txt").write_text("not written by the toolkit")
    planted = ["../victim.txt", str(victims[1]), str(folder / "trial-00098.pt"),
               str(folder / "sub" / "trial-00099.pt"), str(folder / "notes.txt")]
    optuna_study = optuna.load_study(study_name="default", storage="sqlite:///studies/default.db")
    first = optuna_study.trials[0]
    for path in planted:  # trials worse than any the run trains: their files go first
        optuna_study.add_trial(optuna.trial.create_trial(
            state=first.state, value=0.0, params=first.params,
            distributions=first.distributions, user_attrs={**first.user_attrs,
                                                           "checkpoint": path}))
    argv = ["--trials", str(len(planted) + 2), *TINY, "--workers", "1", "--checkpoints", "ck",
            "--keep-checkpoints", "1"]
    assert run_main(argv) == 0
    assert all(victim.read_text() == "precious" for victim in victims)
    assert (folder / "notes.txt").is_file() and (folder / "trial-00098.pt").is_symlink()
    # The toolkit's own files are still pruned: of the two trials it ran, one file is left.
    assert [p.name for p in folder.glob("trial-0000?.pt")] in (["trial-00000.pt"],
                                                               ["trial-00006.pt"])


# --- 3: the report's default folder stays under reports/ -----------------------------------


@pytest.mark.slow
def test_the_reports_default_folder_is_one_safe_folder_under_reports(in_tmp, capsys):
    names = [str(in_tmp / "abs"), "../../x", "</script>"]
    url = f"sqlite:///{in_tmp / 'r.db'}"
    for name in names:
        optuna_study = optuna.create_study(storage=url, study_name=name, direction="maximize")
        add_trial(optuna_study, "adam", 1e-3, 0.97)
        add_trial(optuna_study, "sgd", 0.1, 0.96)
    argv = ["--storage", url]
    for name in names:
        argv += ["--study-name", name]
    assert report_main(argv) == 0
    index = Path(capsys.readouterr().out.split("wrote ", 1)[1].split(" (", 1)[0])
    assert index.name == "index.html"
    assert index.resolve().parent.parent == in_tmp / "reports"
    assert sorted(p.name for p in in_tmp.iterdir()) == ["r.db", "reports"]


# --- 6, 10: workers: no password on their command line; they stop with their parent --------


def _children(pid: int) -> list[int]:
    """The running (not zombie) child processes of ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError):
            continue
        if int(ppid) == pid and state != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def secret_storage(request, tmp_path):
    """A storage URL whose secret part (returned too) must never reach a command line: a
    PostgreSQL password, or for SQLite a file name (SQLite URLs hold no password)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'S3cret-marker.db'}", "S3cret-marker"
    url = request.getfixturevalue("postgres_url")
    from sqlalchemy.engine import make_url

    return url, make_url(url).password


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_get_the_url_from_their_environment_and_a_killed_one_is_named(
    secret_storage, tmp_path, monkeypatch, capsys
):
    url, secret = secret_storage
    monkeypatch.chdir(tmp_path)
    seen: dict[int, tuple[bytes, bytes]] = {}

    def kill_worker_two() -> None:
        """Note both workers' command lines and environments, then SIGKILL worker 2."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(seen) < 2:
            for pid in _children(os.getpid()):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if b"study.run" in cmdline:
                        seen[pid] = (cmdline, Path(f"/proc/{pid}/environ").read_bytes())
                except OSError:
                    continue
            time.sleep(0.02)
        second = [pid for pid, (cmd, _) in seen.items() if b"\0--seed\0" + b"1\0" in cmd]
        for pid in second or seen:  # none found: end the run all the same
            os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_worker_two)
    killer.start()
    name = f"sec-{os.getpid()}-{time.monotonic_ns()}"
    code = run_main(["--storage", url, "--study-name", name, "--trials", "40", *TINY,
                     "--workers", "2", "--threads", "1"])
    killer.join()
    assert len(seen) == 2
    for cmdline, environ in seen.values():
        assert b"study.run" in cmdline and secret.encode() not in cmdline
        assert f"{STORAGE_ENV}={url}".encode() in environ.split(b"\0")
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2
    assert errors == ["python -m study.run: error: worker 2 was killed (signal 9, SIGKILL); "
                      "the other workers were stopped. Run the same command to continue."]
    if url.startswith("postgresql"):
        optuna.delete_study(study_name=name, storage=url)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_stop_when_their_parent_is_killed(tmp_path):
    db = tmp_path / "S3cret-marker.db"
    parent = subprocess.Popen(
        study_run("--storage", f"sqlite:///{db}", "--trials", "200", *TINY, "--workers", "2",
                  "--threads", "1"),
        cwd=tmp_path, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        # Both workers have the database open: each has begun its run (and asked to stop
        # with its parent), reading the URL from its environment.
        while time.monotonic() < deadline and not (
                len(workers := _children(parent.pid)) == 2 and all(_opened(pid, db)
                                                                   for pid in workers)):
            time.sleep(0.05)
        assert len(workers) == 2
        # The URL reached them through the environment: it is on no command line.
        for pid in workers:
            assert b"S3cret-marker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "workers outlived their parent"
    finally:
        for pid in [parent.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait()
    assert _trials(db, "RUNNING") == 0  # each marked its running trial failed as it stopped


def _opened(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds the file ``path`` open."""
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def _trials(db: Path, state: str | None = None) -> int:
    """How many trials the SQLite file ``db`` holds (in ``state``); 0 before it has any."""
    where, values = ("WHERE state = ?", (state,)) if state else ("", ())
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(f"SELECT count(*) FROM trials {where}", values).fetchone()[0]
    except sqlite3.Error:
        return 0


# --- 11: the database deleted mid-run; a worker's error with one prefix ---------------------


def test_a_sqlite_file_deleted_mid_run_is_named_as_deleted(tmp_path):
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    optuna_study = optuna.create_study(storage=open_storage(url), study_name="s")
    optuna_study.set_user_attr("before", 1)
    db.unlink()
    with pytest.raises(Exception) as err:
        optuna_study.set_user_attr("after", 2)
    message = str(storage_failure(err.value, url))
    assert f"the study database {db} was deleted or moved during the run" in message
    assert "finished trials are kept" not in message and "writable" not in message


def test_a_workers_own_error_is_passed_on_without_its_prefix():
    line = "python -m study.run: error: the study database /x.db failed during the run"
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [sys.executable, "-c", f"import sys; print({line!r}, file=sys.stderr); sys.exit(2)"],
            stderr=err)
        process.wait()
        assert _Worker(1, process, err).error() == "the study database /x.db failed during the run"


def test_two_names_with_one_safe_form_never_share_a_checkpoint_folder(tmp_path):
    from study.search.objective import checkpoint_folder

    plain = checkpoint_folder(tmp_path, "default")
    assert plain == tmp_path / "default"  # a safe name is its own folder, as documented
    spaced, underscored = (checkpoint_folder(tmp_path, n) for n in ("a b", "a_b"))
    assert spaced != underscored and spaced.parent == underscored.parent == tmp_path
