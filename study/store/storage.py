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
import sqlite3
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
    "default_storage_url",
    "display_url",
    "resolve_sqlite_url",
    "open_storage",
    "open_study",
    "check_direction",
    "storage_failure",
    "stored_settings",
    "SETTINGS_COMPLETE",
    "HEARTBEAT_INTERVAL",
    "GRACE_PERIOD",
]

DEFAULT_STUDY_DIR = Path("studies")
#: Seconds between heartbeats of a running trial, and the silence after which a trial whose
#: worker died is marked failed (and retried, for PostgreSQL).
HEARTBEAT_INTERVAL = 60
GRACE_PERIOD = 180
SQLITE_TIMEOUT = 300
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: How another process creating the same schema at the same moment shows (PostgreSQL: a type
#: or table name taken; SQLite: a table that already exists).
_SCHEMA_RACE = re.compile(r"already exists|duplicate key value|UniqueViolation|DuplicateTable")
_SCHEMA_TRIES = 10
_URL_HELP = "use sqlite:///path/to/file.db or postgresql://user:password@host:5432/dbname"


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


def display_url(url: str) -> str:
    """``url`` with any password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


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
    where = str(path) if path is not None else display_url(url)
    lowered = reason.lower()
    if "full" in lowered:
        fix = f"free space on the disk that holds {where}"
    elif "readonly" in lowered or "read-only" in lowered:
        fix = f"make {where} and its folder writable"
    elif "locked" in lowered:
        fix = "another program holds the database locked; close it"
    elif path is None:
        fix = "check that the server runs and answers"
    else:
        fix = f"check {where}"
    return StorageError(
        f"the study database {where} failed during the run ({reason}); {fix}, then run the "
        "same command to continue: finished trials are kept, the one being stored is not."
    )


def _parse_url(url: str) -> sqlalchemy.engine.URL:
    try:
        return make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(f"--storage {url!r} is not a database URL; {_URL_HELP}.") from None


def _check_sqlite_url(url: str, parsed: sqlalchemy.engine.URL) -> Path:
    """The file a SQLite ``url`` names; it must name one, and one SQLite reads as written."""
    if not parsed.database or parsed.database == ":memory:":
        raise StorageError(
            f"--storage {url!r} names no file; an in-memory database would lose the "
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
            f"(python -m study.run --storage {url}) or check the storage URL."
        )
    if create:
        _check_writable(path)
    return {"connect_args": {"timeout": SQLITE_TIMEOUT}}


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
    heartbeat, and trials whose worker died failed and retried (up to 3 times).

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
        engine_kwargs = {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True}
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
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StorageError(
            f"cannot open --storage {display_url(url)} ({reason}); check the URL, that the "
            "server runs and the credentials."
        ) from None
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
        attrs = dict(storage.get_study_user_attrs(study_id))
        complete = SETTINGS_COMPLETE in attrs or storage.get_n_trials(study_id) > 0
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
