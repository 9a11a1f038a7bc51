"""Storage URL -> Optuna storage, and opening a study safely.

The default is a SQLite file ``studies/<study-name>.db`` (embedded, zero set-up) with a long
lock timeout. PostgreSQL (``postgresql://user:password@host:5432/db``) is for many workers:
a small connection pool per worker, heartbeat and retry of trials whose worker died.
Anything wrong with the URL or the database is a :class:`StorageError` whose one-line message
names the value and the fix, raised before the database is touched.

A relative SQLite path (``sqlite:///studies/x.db``; ``sqlite:////abs/x.db`` is absolute) is
read from the working directory, as SQLAlchemy reads it; :func:`resolve_sqlite_url` reads it
from another folder (the notebooks pass the project root), and every message about the file
names its absolute path.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

__all__ = [
    "StorageError",
    "DEFAULT_STUDY_DIR",
    "MAX_STUDY_NAME",
    "check_study_name",
    "check_storage_url",
    "checked_url",
    "check_output_folder",
    "default_storage_url",
    "display_url",
    "file_name",
    "resolve_sqlite_url",
    "open_storage",
    "open_study",
    "check_direction",
    "storage_failure",
    "stored_settings",
    "SETTINGS_COMPLETE",
    "HEARTBEAT_INTERVAL",
    "GRACE_PERIOD",
    "SERVER_TIMEOUT",
    "TIMEOUT_ENV",
    "server_timeout",
]

DEFAULT_STUDY_DIR = Path("studies")
#: Seconds between heartbeats of a running trial, and the silence after which a trial whose
#: worker died is marked failed (and retried, for PostgreSQL).
HEARTBEAT_INTERVAL = 60
GRACE_PERIOD = 180
SQLITE_TIMEOUT = 300
#: Seconds a database server may take to accept a connection or to answer one statement;
#: past it the run stops with a one-line error instead of waiting on a frozen server for ever.
SERVER_TIMEOUT = 60
#: The environment variable that sets :data:`SERVER_TIMEOUT` (whole seconds); the workers of
#: ``--workers`` inherit it.
TIMEOUT_ENV = "OPTSTUDY_DB_TIMEOUT"
#: The drivers that take libpq's connection settings (``connect_timeout``, ``keepalives``,
#: ``options``, ...).
_LIBPQ_DRIVERS = ("psycopg", "psycopg2", "psycopg2cffi")
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: How another process creating the same schema at the same moment shows: a table, type or
#: index name taken, or the one row of ``version_info`` or ``alembic_version`` written twice
#: (PostgreSQL: "duplicate key value"; SQLite: "UNIQUE constraint failed").
_SCHEMA_RACE = re.compile(
    r"already exists|duplicate key value|UniqueViolation|DuplicateTable"
    r"|UNIQUE constraint failed"
)
_SCHEMA_TRIES = 10
_URL_HELP = "use sqlite:///path/to/file.db or postgresql://user:password@host:5432/dbname"
#: A password given as a query parameter (``?password=...``), masked like the URL's own.
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)


class StorageError(ValueError):
    """The storage URL, the database or the study in it cannot be used as asked."""


def default_storage_url(study_name: str, directory: str | Path = DEFAULT_STUDY_DIR) -> str:
    """``sqlite:///<directory>/<study_name>.db``.

    Raises:
        StorageError: the study name is not usable as a file name.
    """
    if not _STUDY_NAME.match(study_name):
        raise StorageError(
            f"study name {study_name!r} cannot name a file; use letters, digits, '.', '_' "
            "and '-' (starting with a letter or digit), or pass --storage."
        )
    return f"sqlite:///{Path(directory) / f'{study_name}.db'}"


def file_name(name: str) -> str:
    """``name`` (a study's) as one safe file or folder name: each run of characters outside
    letters, digits, ``.``, ``_`` and ``-`` becomes ``_`` and leading or trailing dots go, so
    it never climbs out of its folder (``..``), starts from the root, nests folders or hides;
    ``study`` when nothing is left."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "study"


def display_url(url: str) -> str:
    """``url`` with any password masked, for every message and printed command.

    The password is everything between the user name's ``:`` and the *last* ``@`` before
    the host, so one holding an unencoded ``@`` (``user:p@ss@host``) is masked whole, and a
    malformed URL is masked the same way; a ``password=`` query parameter is masked too.
    A URL without an authority (``sqlite:///path``) has no password and comes back as given.
    """
    shown = _QUERY_PASSWORD.sub(r"\1***", url)
    scheme, sep, rest = shown.partition("://")
    if not sep:
        scheme, rest = "", shown
    if rest.startswith("/") or "@" not in rest:
        return shown
    credentials, _, location = rest.rpartition("@")
    user, colon, _ = credentials.partition(":")
    return f"{scheme}{sep}{user}:***@{location}" if colon else shown


def _sqlite_path(url: str, base: str | Path | None = None) -> Path | None:
    """The absolute path of the file a SQLite ``url`` names, a relative one read from ``base``
    (default: the working directory); ``None`` for other databases, in-memory SQLite or a
    malformed URL."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    # abspath, not resolve(): normalise "..", keep the symlinks the user named.
    return Path(os.path.abspath(Path(base if base is not None else Path.cwd()) / database))


def resolve_sqlite_url(url: str, base: str | Path | None = None) -> str:
    """``url`` with a relative SQLite path made absolute, read from folder ``base``.

    ``sqlite:///studies/x.db`` with ``base="/proj"`` gives ``sqlite:////proj/studies/x.db``;
    absolute SQLite paths, in-memory SQLite and other databases come back unchanged.

    Args:
        url: a SQLAlchemy database URL.
        base: the folder a relative path is read from; default the working directory.
    """
    path = _sqlite_path(url, base)
    if path is None or Path(make_url(url).database).is_absolute():
        return url
    return make_url(url).set(database=str(path)).render_as_string(hide_password=False)


def _check_sqlite_file(path: Path) -> None:
    if not path.exists():
        return
    if path.is_dir():
        raise StorageError(f"{path} is a folder, not a SQLite file; pass a file path.")
    with path.open("rb") as fh:
        header = fh.read(16)
    if header and header != b"SQLite format 3\x00":
        raise StorageError(
            f"{path} is not a SQLite database (unreadable or another format); move it away "
            "or pass another --storage / --study-name."
        )
    if not header:
        return  # an empty file is an empty database
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise StorageError(
            f"{path} is a damaged SQLite database ({exc}); move it away or pass another "
            "--storage / --study-name."
        ) from None
    if tables and not {"studies", "trials", "version_info"} <= tables:
        raise StorageError(
            f"{path} is a SQLite database but not an Optuna study database; pass another "
            "--storage / --study-name."
        )


def _check_writable(path: Path) -> None:
    """A writer's SQLite file can be made or written, and its folder too (SQLite writes a
    journal beside the file); the folder is made here."""
    missing = path.parent
    while not missing.exists() and missing.parent != missing:
        missing = missing.parent
    if missing.exists() and not missing.is_dir():
        raise StorageError(
            f"cannot make {path}: {missing} is a file, not a folder; move it away or pass "
            "another --storage."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot make the folder {path.parent} ({exc.strerror}); pass a --storage path in "
            "a folder you can write to."
        ) from None
    read_only = path.exists() and (not os.access(path, os.W_OK)
                                   or not path.stat().st_mode & 0o222)
    if read_only:
        raise StorageError(
            f"{path} is read-only, so the study cannot be written; make it writable "
            f"(chmod u+w {path}) or pass another --storage. Reading it needs no write access: "
            "python -m analysis.report reads read-only files."
        )
    if not os.access(path.parent, os.W_OK):
        raise StorageError(
            f"the folder {path.parent} is read-only, and SQLite writes its journal beside the "
            "database; make the folder writable or pass another --storage."
        )


def storage_failure(exc: BaseException, url: str) -> StorageError | None:
    """A one-line :class:`StorageError` for ``exc`` when it (or what it arose from) is the
    database failing during a run: a full disk, a file made read-only, a lost server, ...;
    ``None`` for anything else. Optuna sometimes raises its own error on top of the
    database's (``StorageInternalError``, or an ``AssertionError`` while storing a trial):
    the database's reason is the one named."""
    seen: set[int] = set()
    found: BaseException | None = None
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error,
                            optuna.exceptions.StorageInternalError)):
            found = exc
            if isinstance(exc, sqlalchemy.exc.DBAPIError | sqlite3.Error):
                break
        exc = exc.__cause__ or exc.__context__
    if found is None:
        return None
    original = getattr(found, "orig", None) or found
    reason = (str(original).strip().splitlines() or [type(original).__name__])[0]
    path = _sqlite_path(url)
    if path is not None and _moved(path, original):
        return StorageError(
            f"the study database {path} was deleted or moved during the run ({reason}), and "
            "its trials are gone from there with it; put the file back (from a backup) and "
            "run the same command to continue, or run it as it is to start the study anew."
        )
    where = str(path) if path is not None else display_url(url)
    lowered = reason.lower()
    if "full" in lowered:
        fix = f"free space on the disk that holds {where}"
    elif "readonly" in lowered or "read-only" in lowered:
        fix = f"make {where} and its folder writable"
    elif "locked" in lowered:
        fix = "another program holds the database locked; close it"
    elif path is None and "timeout" in lowered:
        fix = (f"the server did not answer in time; check that it runs and answers "
               f"({TIMEOUT_ENV} sets the wait, in seconds)")
    elif path is None:
        fix = "check that the server runs and answers"
    else:
        fix = f"check {where}"
    return StorageError(
        f"the study database {where} failed during the run ({reason}); {fix}, then run the "
        "same command to continue: finished trials are kept, the one being stored is not."
    )


def _moved(path: Path, error: BaseException) -> bool:
    """Whether SQLite failed because its file at ``path`` was deleted or replaced under it
    (it then calls the database read-only: ``SQLITE_READONLY_DBMOVED``)."""
    if getattr(error, "sqlite_errorname", "") == "SQLITE_READONLY_DBMOVED":
        return True
    return "readonly" in str(error).lower() and not path.exists()


def _parse_url(url: str) -> sqlalchemy.engine.URL:
    """``url`` parsed; a malformed one, or one whose password holds an unencoded ``@`` (the
    host would be read from the middle of the password), is refused, its password masked."""
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise StorageError(
            f"--storage {display_url(url)!r} is not a database URL; {_URL_HELP}."
        ) from None
    if parsed.host and "@" in parsed.host:
        raise StorageError(
            f"--storage {display_url(url)!r}: the user name or password holds an '@', so the "
            "host cannot be told apart; percent-encode it as %40 (p@ss -> p%40ss), or leave "
            "the password out of the URL and set PGPASSWORD or ~/.pgpass."
        )
    return parsed


#: The longest study name: its default file ``<name>.db`` and its checkpoint folder stay
#: within the 255 bytes of a file name, and ``<name>.confirm`` within the 512 characters of
#: Optuna's study-name column on a database server.
MAX_STUDY_NAME = 200


def check_study_name(name: str) -> None:
    """A study name every command can store, name files after and print on one line.

    Raises:
        StorageError: empty, longer than :data:`MAX_STUDY_NAME`, or holding a character
            that does not print (a newline, a tab, ...); the message names the fix.
    """
    if not name.strip():
        raise StorageError(f"study name {name!r} is empty; give a name, e.g. --study-name "
                           "adam-vs-sgd.")
    if len(name) > MAX_STUDY_NAME:
        raise StorageError(
            f"study name {name[:20]!r}... has {len(name)} characters; give at most "
            f"{MAX_STUDY_NAME} characters (it names the study's file and folders, and a "
            "database server stores at most 512).")
    hidden = next((ch for ch in name if not ch.isprintable()), None)
    if hidden is not None:
        raise StorageError(f"study name {name!r} holds the non-printing character "
                           f"{hidden!r}; use printing characters only.")


def check_storage_url(url: str, *, option: str = "--storage") -> None:
    """A database URL given on the command line (``option``), checked before anything
    opens: not empty, and one SQLAlchemy parses (:func:`open_storage` checks the rest).

    Raises:
        StorageError: the message names the value and the fix.
    """
    if not url.strip():
        raise StorageError(f"{option} {url!r} is empty; {_URL_HELP}, or leave {option} out "
                           "for the default.")
    _parse_url(url)


def checked_url(study_name: str, storage: str | None) -> str:
    """The database URL a command opens for ``study_name``: ``storage`` (its --storage) when
    given, else :func:`default_storage_url`; the name and the URL checked first.

    Raises:
        StorageError: a name or URL :func:`check_study_name` or :func:`check_storage_url`
            refuses.
    """
    check_study_name(study_name)
    if storage is None:
        return default_storage_url(study_name)
    check_storage_url(storage)
    return storage


def check_output_folder(path: Path, *, option: str) -> None:
    """``path`` (given as ``option``) is a folder, or can be made one, that this process can
    write in; nothing is left behind. Its nearest existing folder is tried by making and
    removing a folder in it: permissions alone pass a read-only disk, and every path for root.

    Raises:
        StorageError: a file stands in the way, or the folder cannot be written.
    """
    path = Path(os.path.abspath(path))
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise StorageError(f"{option} {path}: {existing} is a file, not a folder; pass the "
                           "path of a folder (it is made if missing).")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=existing))
    except OSError as exc:
        raise StorageError(f"{option} {path}: cannot write in {existing} "
                           f"({exc.strerror}); pass a folder you can write to.") from None


def _check_sqlite_url(url: str, parsed: sqlalchemy.engine.URL) -> Path:
    """The file a SQLite ``url`` names; it must name one, and one SQLite reads as written."""
    if not parsed.database or parsed.database == ":memory:":
        raise StorageError(
            f"--storage {display_url(url)!r} names no file; an in-memory database would lose the "
            f"study. {_URL_HELP}."
        )
    query = url.partition("?")[2]
    if query and not all("=" in part for part in query.split("&")):
        raise StorageError(
            f"--storage {url!r}: '?' starts the URL's query string, so the file would be "
            f"{parsed.database!r}; write a '?' in the file name as %3F "
            f"({url.replace('?', '%3F', 1)!r}), or rename the file."
        )
    return _sqlite_path(url)


def _check_readable(url: str, parsed: sqlalchemy.engine.URL, path: Path) -> None:
    """A reader's SQLite file exists; it never makes one."""
    if path.is_file():
        return
    given = url
    if not Path(parsed.database).is_absolute():
        given += f"; its relative path is read from the working directory, {Path.cwd()}"
    raise StorageError(
        f"{path} does not exist; run a study first (python -m study.run) or check "
        f"the storage URL ({given})."
    )


def _sqlite_settings(url: str, parsed: sqlalchemy.engine.URL, *, create: bool) -> dict[str, Any]:
    """Check a SQLite URL and its file (a writer's folder is made); the engine's settings."""
    path = _check_sqlite_url(url, parsed)
    if not create:
        _check_readable(url, parsed, path)
    _check_sqlite_file(path)
    if not create and path.stat().st_size == 0:  # a reader never writes a schema into it
        raise StorageError(
            f"{path} is an empty file, not a study database; run a study into it first "
            f"(python -m study.run --storage {shlex.quote(url)}) or check the storage URL."
        )
    if create:
        _check_writable(path)
    return {"connect_args": {"timeout": SQLITE_TIMEOUT}}


def server_timeout() -> int:
    """Seconds a database server may take to connect or to answer a statement:
    :data:`TIMEOUT_ENV` when set, else :data:`SERVER_TIMEOUT`.

    Raises:
        StorageError: :data:`TIMEOUT_ENV` is not a whole number of seconds >= 1.
    """
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return SERVER_TIMEOUT
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise StorageError(
            f"{TIMEOUT_ENV}={value!r} is not a number of seconds; set it to a whole number "
            f">= 1 (default {SERVER_TIMEOUT}) or unset it."
        )
    return int(value)


def _server_settings(parsed: sqlalchemy.engine.URL) -> dict[str, Any]:
    """The engine's settings for a database server: a small pool per worker; with a libpq
    driver (PostgreSQL), limits that turn a server which stops answering into an error.

    ``connect_timeout`` bounds a new connection (a frozen postmaster accepts none);
    ``statement_timeout`` a statement the server is stuck on (a lock held by a frozen
    client); ``idle_in_transaction_session_timeout`` (half as long, so the lock is free
    before a statement waiting on it gives up) has the server drop a frozen client's
    transaction, and its locks; TCP keepalives and ``tcp_user_timeout`` notice a server host
    that is gone (network down, machine frozen). A setting the URL gives itself is kept, and
    its ``options`` come after these, so theirs win.
    """
    engine_kwargs: dict[str, Any] = {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True}
    try:
        driver = parsed.get_driver_name()
    except sqlalchemy.exc.NoSuchModuleError:  # an unknown database: opening it says so
        return engine_kwargs
    if driver not in _LIBPQ_DRIVERS:
        return engine_kwargs
    seconds = server_timeout()
    millis = seconds * 1000
    limits: dict[str, Any] = {
        "connect_timeout": seconds,
        "keepalives": 1,
        "keepalives_idle": max(1, seconds // 2),
        "keepalives_interval": max(1, seconds // 6),
        "keepalives_count": 3,
        "tcp_user_timeout": millis,
    }
    connect_args = {key: value for key, value in limits.items() if key not in parsed.query}
    given = parsed.query.get("options", "")
    given = given if isinstance(given, str) else " ".join(given)
    connect_args["options"] = " ".join(filter(None, [
        f"-c statement_timeout={millis}",
        f"-c idle_in_transaction_session_timeout={max(1000, millis // 2)}", given]))
    return {**engine_kwargs, "connect_args": connect_args}


def _rdb_storage(
    url: str, engine_kwargs: dict[str, Any], *, heartbeat: int, grace: int, retry: Any
) -> optuna.storages.RDBStorage:
    """Optuna's storage for ``url``, opened again when another process was creating the same
    schema at the same moment."""
    for attempt in range(_SCHEMA_TRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=retry,
                )
        except sqlalchemy.exc.SQLAlchemyError as exc:
            # Workers started together on a new database all create its tables; all but
            # one find them made a moment ago. The schema is there now: open it again.
            if attempt + 1 == _SCHEMA_TRIES or not _SCHEMA_RACE.search(str(exc)):
                raise
            time.sleep(0.1 + 0.2 * random.random())
    raise AssertionError("unreachable")


def _cannot_open(url: str, exc: sqlalchemy.exc.SQLAlchemyError) -> StorageError:
    """The one-line error for a database ``url`` that could not be opened."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    if "timeout" in reason.lower():
        return StorageError(
            f"cannot open --storage {display_url(url)}: the server did not answer within "
            f"{server_timeout()} s ({reason}); check that it runs and answers ({TIMEOUT_ENV} "
            "sets the wait), then run the same command."
        )
    return StorageError(
        f"cannot open --storage {display_url(url)} ({reason}); check the URL, that the "
        "server runs and the credentials."
    )


def open_storage(
    url: str,
    *,
    create: bool = True,
    heartbeat: int = HEARTBEAT_INTERVAL,
    grace: int = GRACE_PERIOD,
) -> optuna.storages.BaseStorage:
    """The Optuna storage for ``url``, with this project's settings.

    SQLite: the parent folder is created, a long lock timeout (:data:`SQLITE_TIMEOUT`),
    heartbeat. PostgreSQL (and other servers): a small connection pool per worker,
    heartbeat, and trials whose worker died failed and retried (up to 3 times); a server
    that does not connect or answer within :func:`server_timeout` seconds is an error.

    Args:
        url: a SQLAlchemy database URL.
        create: make a new SQLite file when there is none; readers pass ``False`` and get
            an error instead of an empty database.
        heartbeat, grace: seconds between a running trial's heartbeats, and of silence
            after which it counts as dead (failed, and retried on a server database).

    Raises:
        ValueError: ``heartbeat`` < 1 or ``grace`` <= ``heartbeat``.
        StorageError: malformed URL, missing driver, unreachable server, not an Optuna
            database, or an incompatible schema version.
    """
    if heartbeat < 1 or grace <= heartbeat:
        raise ValueError(f"need heartbeat >= 1 and grace > heartbeat (seconds), but got "
                         f"{heartbeat=} and {grace=}.")
    parsed = _parse_url(url)
    backend = parsed.get_backend_name()
    retry: Any = None
    if backend == "sqlite":
        engine_kwargs = _sqlite_settings(url, parsed, create=create)
    else:
        engine_kwargs = _server_settings(parsed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
    try:
        return _rdb_storage(url, engine_kwargs, heartbeat=heartbeat, grace=grace, retry=retry)
    except ImportError:
        raise StorageError(
            f"no database driver for {backend!r} URLs; for PostgreSQL run "
            "`pip install -e '.[postgres]'` (psycopg 3)."
        ) from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise _cannot_open(url, exc) from None
    except RuntimeError as exc:  # Optuna's schema-version check
        raise StorageError(
            f"--storage {display_url(url)}: {str(exc).splitlines()[0]} Run "
            f"`optuna storage upgrade --storage URL` or use a new database."
        ) from None


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


#: Seconds a worker waits for another to finish writing a new study's settings.
SETTINGS_WAIT = 10.0
#: The study attribute written after all of a study's settings: a reader that finds it knows
#: the settings are complete (they are one attribute each, written one after another).
SETTINGS_COMPLETE = "settings_complete"


def stored_settings(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    *,
    legacy: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The settings study ``study_name`` was created with; ``None`` when there is no such study.

    A study's settings are complete once :data:`SETTINGS_COMPLETE` is among them. A worker
    that finds a study another one is still creating waits for it (up to
    :data:`SETTINGS_WAIT` seconds), so it never acts on half of them. Complete settings come
    back with every key of ``legacy`` they lack read as its value: an earlier version of the
    toolkit did not store that setting, and ``legacy`` is the value its studies ran with. A
    study with trials counts as complete even without the mark (such versions did not write
    it); one with neither mark nor trial after the wait (a run crashed while creating it)
    comes back as it is, without the mark: the run that opens it adopts it and writes the rest.
    """
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return None
    deadline = time.monotonic() + SETTINGS_WAIT
    while True:
        # The trials first: a creator writes all the settings before the first trial, so the
        # attributes read after a trial was seen hold them all (read the other way round, a
        # trial started between the two reads would pass half the settings as complete).
        has_trials = storage.get_n_trials(study_id) > 0
        attrs = dict(storage.get_study_user_attrs(study_id))
        complete = SETTINGS_COMPLETE in attrs or has_trials
        if complete:
            return {**(legacy or {}), **attrs, SETTINGS_COMPLETE: True}
        if time.monotonic() >= deadline:
            return attrs
        time.sleep(0.2)


def _write_settings(
    optuna_study: optuna.Study, settings: Mapping[str, Any], stored: Mapping[str, Any]
) -> None:
    """The ``settings`` missing from ``stored``, then the mark that they are complete."""
    for key, value in settings.items():
        if key not in stored:
            optuna_study.set_user_attr(key, value)
    optuna_study.set_user_attr(SETTINGS_COMPLETE, True)


def _create_study(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    settings: Mapping[str, Any],
    *,
    sampler: optuna.samplers.BaseSampler | None,
    pruner: optuna.pruners.BasePruner | None,
    direction: str,
) -> optuna.Study | None:
    """A new study ``study_name`` (in ``direction``) with ``settings``; ``None`` when another
    worker created it a moment ago."""
    try:
        optuna_study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            direction=direction,
            sampler=sampler,
            pruner=pruner,
        )
    except optuna.exceptions.DuplicatedStudyError:
        return None
    _write_settings(optuna_study, settings, {})
    return optuna_study


def _check_settings(
    study_name: str,
    stored: Mapping[str, Any],
    settings: Mapping[str, Any],
    checked: tuple[str, ...],
) -> None:
    """Each key of ``checked`` is stored with the value ``settings`` gives it."""
    for key in checked:
        if key not in stored:
            raise StorageError(
                f"study {study_name!r} exists but was not created by study.run (no {key!r}); "
                "pass another --study-name."
            )
        if stored[key] != settings[key]:
            option = "--" + key.replace("_", "-")
            was, now = _show(stored[key]), _show(settings[key])
            raise StorageError(
                f"study {study_name!r} was created with {option} {was}, not {now}; run with "
                f"{option} {was} to continue it, or pass a new --study-name."
            )


def check_direction(
    storage: optuna.storages.BaseStorage, study_name: str, *, direction: str = "maximize"
) -> None:
    """An existing study ``study_name`` optimises in ``direction`` (checked before any wait
    for its settings: a study of another tool may never get them).

    Raises:
        StorageError: it exists and goes the other way; the message names the fix.
    """
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return
    if storage.get_study_directions(study_id)[0].name.lower() != direction:
        goal = "maximises accuracy" if direction == "maximize" else "minimises"
        other = "minimises" if direction == "maximize" else "maximises"
        raise StorageError(
            f"study {study_name!r} exists and {other}; this tool {goal}. Pass another "
            "--study-name."
        )


def open_study(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    *,
    settings: Mapping[str, Any],
    checked: tuple[str, ...] = (),
    legacy: Mapping[str, Any] | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    direction: str = "maximize",
) -> optuna.Study:
    """Create study ``study_name`` (maximising accuracy, or as ``direction`` says: a range-test
    study minimises) or load it if it exists.

    ``settings`` is stored as the study's user attributes when it is created, followed by
    :data:`SETTINGS_COMPLETE`; see :func:`stored_settings` for how they are read. When it exists,
    its direction must be ``direction`` and its stored value of every key in ``checked`` must
    equal ``settings``' (a study's trials are only comparable under the same space, epochs,
    ...). A key the study lacks (an earlier version of the toolkit did not store it) is read
    as its ``legacy`` value, so such studies stay resumable.

    Raises:
        StorageError: the existing study differs; the message names the setting and the fix.
    """
    if study_name not in optuna.study.get_all_study_names(storage):
        created = _create_study(storage, study_name, settings, sampler=sampler, pruner=pruner,
                                direction=direction)
        if created is not None:
            return created
    check_direction(storage, study_name, direction=direction)
    optuna_study = optuna.load_study(
        study_name=study_name, storage=storage, sampler=sampler, pruner=pruner
    )
    found = stored_settings(storage, study_name, legacy=legacy) or {}
    adopt = SETTINGS_COMPLETE not in found  # a creation that crashed: this run completes it
    _check_settings(study_name, {**settings, **found} if adopt else found, settings, checked)
    if adopt:
        _write_settings(optuna_study, settings, found)
    return optuna_study
