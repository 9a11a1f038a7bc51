"""Search spaces written in TOML, without Python: ``python -m study.run --space my.toml``.

The file declares what :class:`~search_spaces.SearchSpace` holds, one table each::

    name = "sgd-vs-adam"                       # default: the file's name without .toml
    description = "SGD against Adam, cosine or constant"
    pruner = "asha"                            # default "median"; "none" for fixed runs
    epochs = 5                                 # optional: the --epochs this space is meant for

    [optimizers.sgd]
    lr = { low = 1e-3, high = 1.0, log = true }       # a range: sampled as sgd_lr
    momentum = { low = 0.0, high = 0.99 }
    nesterov = { choices = [false, true] }            # a choice
    weight_decay = 5e-4                               # a fixed value

    [optimizers.adam]
    lr = { low = 1e-5, high = 1e-2, log = true }

    [schedules.constant]
    [schedules.cosine]
    floor = { low = 0.0, high = 0.1 }

    [shared]
    warmup_epochs = { low = 0.0, high = "min(1.0, epochs / 2)" }   # follows --epochs

Your own optimizer, named by import path, is registered before the rest is read (in every
worker process that reads the file) and is then searched like a built-in one::

    [custom_optimizers.signsgd]
    class = "mypackage.optim:SignSGD"     # a torch.optim.Optimizer subclass
    default_lr = 1e-3
    has_momentum = false                  # capability flags, as study.train.optim.OptimInfo's

    [optimizers.signsgd]
    lr = { low = 1e-5, high = 1e-1, log = true }

A range is ``{ low, high }`` with optional ``log = true``, ``step`` and ``int = true``
(integers); a choice is ``{ choices = [...] }``; anything else is a fixed value. A number
that follows the run's length is arithmetic in ``epochs`` in quotes (a range's end, a
choice, a fixed value; :mod:`search_spaces.formulas`), worked out for the study's epochs.
A space of fixed runs (the lab's) has ``[configs.NAME]`` tables of ``TrialConfig`` fields
instead of optimizers and schedules; a grid has ``lr_grid = [low, high, points per decade]``.

:func:`load_space` checks the whole file before any trial runs: every optimizer and schedule
is one the toolkit knows, and every combination of optimizer and schedule builds a valid
``TrialConfig`` at the ends of every range; each error names the key, the bad value and what
is allowed. :func:`space_to_toml` writes any space (a built-in one as a starting point) in
this form.

Example files ship inside the package (:data:`EXAMPLES`, ``search_spaces/examples/``);
``--space lab-multistep.toml`` names one from any folder where no file of that name is.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from search_spaces.formulas import Choices, Formula, Range, at_epochs, mentions_epochs
from search_spaces.spaces import (
    BATCH_LIMIT,
    EPOCHS_LIMIT,
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    SearchSpace,
    drop_inapplicable,
)
from study.store.storage import StorageError, check_study_name
from study.train.config import ConfigError, TrialConfig
from study.train.optim import OptimInfo, get_optimizer_info, list_optimizers
from study.train.optim import register as register_optimizer
from study.train.schedules import list_schedules

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "EXAMPLES",
    "SpaceFileError",
    "load_space",
    "space_to_toml",
    "is_space_file",
    "example_spaces",
    "resolve_space_file",
    "file_epochs",
]

#: The example space files shipped in the package; ``--space NAME.toml`` finds one by name.
EXAMPLES = Path(__file__).resolve().parent / "examples"

_TOP = ("name", "description", "pruner", "epochs", "custom_optimizers", "optimizers",
        "schedules", "shared", "configs", "lr_grid")
_RANGE_KEYS = {"low", "high", "log", "step", "int"}
_TRIAL_FIELDS = tuple(f.name for f in dataclasses.fields(TrialConfig))
#: Fields the command line owns: a space may not set them.
_RUN_FIELDS = ("epochs", "batch_size", "seed", "precision")


class SpaceFileError(ValueError):
    """A space file that cannot be used; the message names the file, the key, the bad
    value and what is allowed."""


def is_space_file(value: str) -> bool:
    """``--space`` names a file (``*.toml``) rather than a registered space."""
    return value.endswith(".toml")


def example_spaces() -> list[str]:
    """The names of the example space files shipped in the package (``lab-multistep.toml``)."""
    return sorted(p.name for p in EXAMPLES.glob("*.toml"))


def resolve_space_file(path: str | Path) -> Path:
    """The file ``--space`` reads: ``path`` itself, or, where ``path`` is a bare file name
    with no such file in the current folder, the shipped example of that name (so
    ``--space lab-multistep.toml`` works from any folder)."""
    path = Path(path)
    if not path.is_file() and path.parent == Path(".") and (EXAMPLES / path.name).is_file():
        return EXAMPLES / path.name
    return path


def file_epochs(path: str | Path) -> int | None:
    """The ``epochs`` a space file declares, if any (call :func:`load_space` first: it
    checks the file)."""
    return tomllib.loads(resolve_space_file(path).read_text()).get("epochs")


def _where(path: Path, key: str) -> str:
    return f"{path}: {key}"


def _fixed(path: Path, key: str, value: Any) -> Any:
    """A fixed TOML value: a string in ``epochs`` as a :class:`Formula`, lists and tables
    looked through, anything else as it is."""
    if isinstance(value, str) and mentions_epochs(value):
        try:
            return Formula(value)
        except ValueError as exc:
            raise SpaceFileError(f"{_where(path, key)} = {value!r}: {exc}") from None
    if isinstance(value, list):
        return [_fixed(path, key, v) for v in value]
    if isinstance(value, Mapping):
        return {k: _fixed(path, f"{key}.{k}", v) for k, v in value.items()}
    return value


def _distribution(path: Path, key: str, value: Any) -> Any:
    """A TOML value as a distribution (a :class:`Range` or :class:`Choices` where a value
    follows the epochs), or the value itself when it is fixed."""
    if not isinstance(value, Mapping):
        return _fixed(path, key, value)
    if "choices" in value:
        if set(value) != {"choices"} or not isinstance(value["choices"], list) or not value[
                "choices"]:
            raise SpaceFileError(
                f"{_where(path, key)} = {value!r}: a choice is {{ choices = [a, b, ...] }} "
                f"with at least one value and no other key."
            )
        choices = tuple(_fixed(path, key, v) for v in value["choices"])
        if any(isinstance(v, Formula) for v in choices):
            return Choices(choices)
        return CategoricalDistribution(choices)
    unknown = set(value) - _RANGE_KEYS
    if unknown or not {"low", "high"} <= set(value):
        raise SpaceFileError(
            f"{_where(path, key)} = {value!r}: a range is {{ low = ..., high = ... }} with "
            f"optional log = true, step = ... and int = true; a choice is "
            f"{{ choices = [...] }}" + (f" (unknown key {sorted(unknown)[0]!r})" if unknown
                                       else " (low and high are required)") + "."
        )
    return _range(path, key, value)


def _range(path: Path, key: str, value: Mapping[str, Any]) -> Any:
    """``{ low, high, ... }`` as a distribution; a :class:`Range`, checked at the study's
    epochs, where an end is a formula in ``epochs``."""
    low, high = _fixed(path, key, value["low"]), _fixed(path, key, value["high"])
    log, integer, step = _range_options(path, key, value)
    ends = [isinstance(v, (int, float, Formula)) and not isinstance(v, bool) for v in (low, high)]
    if all(ends) and (isinstance(low, Formula) or isinstance(high, Formula)):
        return Range(low, high, log=log, step=step, integer=integer)
    if not all(ends) or not math.isfinite(low) or not math.isfinite(high) or not low <= high:
        raise SpaceFileError(
            f"{_where(path, key)}: low = {low!r}, high = {high!r}; both must be finite numbers "
            f"(or arithmetic in epochs, in quotes) with low <= high."
        )
    if log and low <= 0:
        raise SpaceFileError(
            f"{_where(path, key)}: log = true needs low > 0, but got low = {low!r}."
        )
    if integer and not (low == int(low) and high == int(high)):
        raise SpaceFileError(f"{_where(path, key)}: int = true needs whole ends, but got "
                             f"low = {low!r}, high = {high!r}.")
    if step is not None and step > high - low > 0:
        raise SpaceFileError(
            f"{_where(path, key)}: step = {step!r} is larger than high - low = "
            f"{high - low:g}, so the range holds one value, low = {low!r}; give a step of at "
            "most high - low, or leave step out.")
    try:
        if integer:
            return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
        return FloatDistribution(float(low), float(high), log=log, step=step)
    except ValueError as exc:  # Optuna's own checks (step with log, step larger than range)
        raise SpaceFileError(f"{_where(path, key)} = {value!r}: {exc}") from None


def _range_options(path: Path, key: str, value: Mapping[str, Any]) -> tuple[bool, bool, Any]:
    """A range's ``log``, ``int`` and ``step``, each checked for its type: a quoted "false"
    would otherwise read as true."""
    flags = []
    for name in ("log", "int"):
        flag = value.get(name, False)
        if not isinstance(flag, bool):
            raise SpaceFileError(f"{_where(path, key)}: {name} = {flag!r}; give true or false, "
                                 "without quotes.")
        flags.append(flag)
    step = value.get("step")
    number = isinstance(step, (int, float)) and not isinstance(step, bool)
    if step is not None and not (number and math.isfinite(step) and step > 0):
        raise SpaceFileError(f"{_where(path, key)}: step = {step!r}; give a number > 0, or "
                             "leave step out.")
    return flags[0], flags[1], step


def _at(path: Path, key: str, spec: Any, epochs: int) -> Any:
    """``spec`` for runs of ``epochs`` epochs; a formula that fails there names its key."""
    try:
        return at_epochs(spec, epochs)
    except (ValueError, TypeError) as exc:
        raise SpaceFileError(f"{_where(path, key)} at {epochs} epochs: {exc}") from None


def _table(path: Path, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SpaceFileError(f"{_where(path, key)} must be a table ([{key}]), not {value!r}.")
    return dict(value)


def _edges(spec: Any) -> list[Any]:
    """The values a check tries for one declared value: both ends of a range, every choice."""
    if isinstance(spec, CategoricalDistribution):
        return list(spec.choices)
    if isinstance(spec, (FloatDistribution, IntDistribution)):
        return [spec.low, spec.high]
    return [spec]


def _check_combinations(path: Path, space: SearchSpace, epochs: int) -> None:
    """Every optimizer with every schedule, at the ends of every range, is a valid config."""
    schedules = space.schedules or {"constant": {}}
    for (optimizer, fields), (schedule, params) in itertools.product(
            space.optimizers.items(), schedules.items()):
        shared = space.shared
        names = [*fields, *params, *shared]
        kinds = ["opt"] * len(fields) + ["sch"] * len(params) + ["sh"] * len(shared)
        keys = [*(f"optimizers.{optimizer}.{k}" for k in fields),
                *(f"schedules.{schedule}.{k}" for k in params), *(f"shared.{k}" for k in shared)]
        specs = (*fields.values(), *params.values(), *shared.values())
        options = [_edges(_at(path, key, spec, epochs)) for key, spec in zip(keys, specs,
                                                                               strict=True)]
        for values in itertools.islice(itertools.product(*options), 256):
            changes: dict[str, Any] = {"optimizer": optimizer, "schedule": schedule,
                                       "epochs": epochs}
            schedule_params = {}
            for name, kind, value in zip(names, kinds, values, strict=True):
                if kind == "sch":
                    schedule_params[name] = list(value) if isinstance(value, tuple) else value
                else:
                    changes[name] = value
            _check_batch_size(path, "shared.batch_size", changes.get("batch_size"))
            changes = drop_inapplicable(changes)  # as the space samples it
            try:
                TrialConfig(schedule_params=schedule_params, **changes)
            except (ConfigError, TypeError, ValueError) as exc:
                raise SpaceFileError(
                    f"{path}: optimizers.{optimizer} with schedules.{schedule} gives an invalid "
                    f"configuration at {dict(zip(names, values, strict=True))}: {exc}"
                ) from None


def _check_batch_size(path: Path, key: str, value: Any) -> None:
    """A batch size the file sets is at most :data:`MAX_BATCH_SIZE` (``TrialConfig`` checks
    the rest)."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if whole and value > MAX_BATCH_SIZE:
        raise SpaceFileError(f"{_where(path, key)} = {value!r}: give at most {MAX_BATCH_SIZE} "
                             f"({BATCH_LIMIT}).")


_FLAGS = tuple(f.name for f in dataclasses.fields(OptimInfo)
               if f.name not in ("name", "opt_class", "description", "default_lr"))


def _register_custom(path: Path, name: str, fields: dict[str, Any]) -> None:
    """Import ``fields["class"]`` and register it as optimizer ``name`` (once per process:
    the same class again is fine, another class under a taken name is an error)."""
    key = f"custom_optimizers.{name}"
    unknown = set(fields) - {"class", "description", "default_lr", *_FLAGS}
    if unknown or "class" not in fields or "default_lr" not in fields:
        raise SpaceFileError(
            f"{_where(path, key)}: give class = \"module:Class\" and default_lr, and optionally "
            f"description and the capability flags {', '.join(_FLAGS)}"
            + (f" (unknown key {sorted(unknown)[0]!r})." if unknown else ".")
        )
    target = fields["class"]
    module_name, _, attr = str(target).replace(":", ".").rpartition(".")
    try:
        opt_class = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SpaceFileError(
            f"{_where(path, key + '.class')} = {target!r}: cannot import it ({exc}); give "
            f"\"module:Class\" of a module on the Python path."
        ) from None
    if not (isinstance(opt_class, type) and issubclass(opt_class, torch.optim.Optimizer)):
        raise SpaceFileError(
            f"{_where(path, key + '.class')} = {target!r} is not a torch.optim.Optimizer "
            f"subclass."
        )
    if name in list_optimizers():
        if get_optimizer_info(name).opt_class is opt_class:
            return
        raise SpaceFileError(
            f"{_where(path, key)}: the name {name!r} is taken by another optimizer; choose a "
            f"name not among: {', '.join(list_optimizers())}."
        )
    flags = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()
             if k in _FLAGS}
    try:
        register_optimizer(OptimInfo(
            name=name, opt_class=opt_class, description=fields.get("description", str(target)),
            default_lr=fields["default_lr"], **flags,
        ))
    except (TypeError, ValueError) as exc:
        raise SpaceFileError(f"{_where(path, key)}: {exc}") from None


def load_space(path: str | Path, *, epochs: int | None = None) -> SearchSpace:
    """Read and check a TOML search space (the module docstring shows the form).

    Args:
        path: the ``.toml`` file, or the name of a shipped example
            (:func:`resolve_space_file`).
        epochs: the study's epochs, for the check of epoch-dependent values (default: the
            file's ``epochs``, else 5).

    Raises:
        SpaceFileError: the file is missing, not TOML, or declares something the toolkit
            cannot run; the message names the key, the value and what is allowed.
    """
    path = resolve_space_file(path).absolute()
    data = _read(path)
    name, declared = _name_and_epochs(path, data)
    epochs = epochs or declared or 5
    for optimizer, fields in _table(path, "custom_optimizers",
                                    data.get("custom_optimizers", {})).items():
        _register_custom(path, optimizer, _table(path, f"custom_optimizers.{optimizer}", fields))
    optimizers, schedules = _optimizers(path, data), _schedules(path, data)
    shared, configs = _shared(path, data), _configs(path, data, epochs)
    if configs and (optimizers or schedules or shared):
        raise SpaceFileError(
            f"{path}: [configs] (fixed runs) cannot be mixed with [optimizers], [schedules] "
            f"or [shared] (ranges); write two files."
        )
    if not configs and not optimizers:
        raise SpaceFileError(
            f"{path}: declare at least one [optimizers.NAME] table (ranges) or one "
            f"[configs.NAME] table (fixed runs)."
        )
    lr_grid = _lr_grid(path, data)
    pruner = data.get("pruner", "none" if configs or lr_grid else "median")
    if not isinstance(pruner, str):
        raise SpaceFileError(f"{_where(path, 'pruner')} = {pruner!r}: give a pruner's name.")
    try:
        space = SearchSpace(
            name=name, description=data.get("description", f"space file {path.name}"),
            optimizers=optimizers, schedules=schedules or {"constant": {}}, shared=shared,
            configs=configs, pruner=pruner, lr_grid=lr_grid,
        )
    except ValueError as exc:
        raise SpaceFileError(f"{path}: {exc}") from None
    if optimizers:
        _check_combinations(path, space, epochs)
    return space


def _name_and_epochs(path: Path, data: Mapping[str, Any]) -> tuple[str, int | None]:
    """The space's name (the study's, unless --study-name is given; the file's name without
    .toml by default) and the ``epochs`` the file declares, if any."""
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise SpaceFileError(f"{_where(path, 'name')} = {name!r}: give a non-empty string.")
    try:
        check_study_name(name)
    except StorageError as exc:
        raise SpaceFileError(f"{_where(path, 'name')}: {exc}") from None
    declared = data.get("epochs")
    whole = isinstance(declared, int) and not isinstance(declared, bool)
    if declared is not None and not (whole and 1 <= declared <= MAX_EPOCHS):
        raise SpaceFileError(f"{_where(path, 'epochs')} = {declared!r}: give an integer in "
                             f"[1, {MAX_EPOCHS}] ({EPOCHS_LIMIT}).")
    return name, declared


def _read(path: Path) -> dict[str, Any]:
    """The file's TOML, once it exists, parses and has only the keys a space file has."""
    if not path.is_file():
        raise SpaceFileError(
            f"space file {path} does not exist; give the path of a .toml file, or the name of "
            f"a shipped example: {', '.join(example_spaces())}."
        )
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpaceFileError(f"{path} is not valid TOML: {exc}.") from None
    unknown = [k for k in data if k not in _TOP]
    if unknown:
        raise SpaceFileError(
            f"{_where(path, unknown[0])}: unknown key; a space file has: {', '.join(_TOP)}."
        )
    return data


def _optimizers(path: Path, data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``[optimizers.NAME]``: registered optimizers, each with optimizer settings only."""
    not_settings = ("optimizer", "schedule", "schedule_params", *_RUN_FIELDS)
    allowed = [f for f in _TRIAL_FIELDS if f not in (*not_settings, "warmup_epochs")]
    optimizers = {}
    for optimizer, fields in _table(path, "optimizers", data.get("optimizers", {})).items():
        try:
            get_optimizer_info(optimizer)
        except ValueError:
            raise SpaceFileError(
                f"{_where(path, 'optimizers.' + optimizer)}: unknown optimizer; choose among: "
                f"{', '.join(list_optimizers())}."
            ) from None
        fields = _table(path, f"optimizers.{optimizer}", fields)
        for field in fields:
            if field not in _TRIAL_FIELDS or field in not_settings:
                raise SpaceFileError(
                    f"{_where(path, f'optimizers.{optimizer}.{field}')}: not an optimizer "
                    f"setting; use: {', '.join(allowed)}."
                )
        optimizers[optimizer] = {
            k: _distribution(path, f"optimizers.{optimizer}.{k}", v) for k, v in fields.items()}
    return optimizers


def _schedules(path: Path, data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``[schedules.NAME]``: registered schedules and their parameters."""
    schedules = {}
    for schedule, params in _table(path, "schedules", data.get("schedules", {})).items():
        if schedule not in list_schedules():
            raise SpaceFileError(
                f"{_where(path, 'schedules.' + schedule)}: unknown schedule; choose among: "
                f"{', '.join(list_schedules())}."
            )
        params = _table(path, f"schedules.{schedule}", params)
        schedules[schedule] = {
            k: _distribution(path, f"schedules.{schedule}.{k}", v) for k, v in params.items()}
    return schedules


def _shared(path: Path, data: Mapping[str, Any]) -> dict[str, Any]:
    """``[shared]``: ``TrialConfig`` fields every trial shares."""
    shared = {}
    for field, value in _table(path, "shared", data.get("shared", {})).items():
        if field not in _TRIAL_FIELDS or field in ("optimizer", "epochs", "seed", "precision"):
            raise SpaceFileError(
                f"{_where(path, 'shared.' + field)}: not a setting every trial shares; use "
                f"TrialConfig fields such as warmup_epochs, no_decay_1d or batch_size (which "
                f"then overrides --batch-size)."
            )
        shared[field] = _distribution(path, f"shared.{field}", value)
    return shared


def _configs(path: Path, data: Mapping[str, Any], epochs: int) -> dict[str, dict[str, Any]]:
    """``[configs.NAME]``: fixed runs, each a valid ``TrialConfig`` of ``epochs``."""
    configs = {}
    for config_name, fields in _table(path, "configs", data.get("configs", {})).items():
        key = f"configs.{config_name}"
        fields = _fixed(path, key, _table(path, key, fields))
        resolved = _at(path, key, fields, epochs)
        _check_batch_size(path, f"{key}.batch_size", resolved.get("batch_size"))
        try:
            TrialConfig(**{"epochs": epochs, **resolved})
        except (ConfigError, TypeError, ValueError) as exc:
            raise SpaceFileError(f"{_where(path, key)}: {exc}") from None
        configs[config_name] = fields
    return configs


def _lr_grid(path: Path, data: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """``lr_grid = [low, high, points per decade]`` as a tuple (its values are checked by
    ``SearchSpace``)."""
    lr_grid = data.get("lr_grid")
    if lr_grid is None:
        return None
    if not (isinstance(lr_grid, list) and len(lr_grid) == 3):
        raise SpaceFileError(
            f"{_where(path, 'lr_grid')} = {lr_grid!r}: give [low, high, points per decade].")
    return tuple(lr_grid)


# --- writing -------------------------------------------------------------------------------

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if value is None:
        raise TypeError("TOML has no null")
    raise TypeError(f"cannot write {value!r} as TOML")


def _spec(spec: Any, epochs: int) -> Any:
    """A declared value as TOML data: a formula as its text (so it keeps following the
    epochs), ranges and choices as tables, a Python function of the epochs (which has no
    text) as its value for ``epochs``."""
    if isinstance(spec, Formula):
        return spec.text
    if isinstance(spec, Choices):
        return {"choices": [_spec(v, epochs) for v in spec.values]}
    if isinstance(spec, Range):
        out: dict[str, Any] = {"low": _spec(spec.low, epochs), "high": _spec(spec.high, epochs)}
        if spec.log:
            out["log"] = True
        if spec.step is not None and not (spec.integer and spec.step == 1):
            out["step"] = spec.step
        return {**out, "int": True} if spec.integer else out
    if callable(spec):
        return _spec(spec(epochs), epochs)
    if isinstance(spec, Mapping):
        return {k: _spec(v, epochs) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_spec(v, epochs) for v in spec]
    if isinstance(spec, CategoricalDistribution):
        return {"choices": list(spec.choices)}
    if isinstance(spec, (FloatDistribution, IntDistribution)):
        out = {"low": spec.low, "high": spec.high}
        if spec.log:
            out["log"] = True
        if spec.step is not None and not (isinstance(spec, IntDistribution) and spec.step == 1):
            out["step"] = spec.step
        if isinstance(spec, IntDistribution):
            out["int"] = True
        return out
    return spec


def space_to_toml(space: SearchSpace, *, epochs: int) -> str:
    """``space`` as a TOML space file that :func:`load_space` reads back to the same space.

    The file has no ``name``: its study takes the file's name, never the name of the space it
    was printed from (whose study may exist already). Values that follow the epochs are
    written as arithmetic in ``epochs``, so the file runs at any ``--epochs`` the space
    does; ``epochs`` is the run length when ``--epochs`` is not given.
    """
    lines = [f"# The {space.name!r} search space (python -m study.run --print-space).",
             "# Edit it and run: python -m study.run --space THIS-FILE.toml",
             "# Its study takes the file's name; add name = \"...\" to choose another.",
             "# Quoted values in epochs follow --epochs; without it, the runs have `epochs`.",
             "",
             f"description = {_toml_value(space.description)}",
             f"pruner = {_toml_value(space.pruner)}",
             f"epochs = {epochs}"]
    if space.lr_grid is not None:
        lines.append(f"lr_grid = {_toml_value(list(space.lr_grid))}")

    def table(header: str, specs: Mapping[str, Any]) -> None:
        lines.extend(["", f"[{header}]"])
        for key, spec in specs.items():
            value = _spec(spec, epochs)
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")

    for config_name, fields in space.configs.items():
        table(f"configs.{config_name}", fields)
    for optimizer, fields in space.optimizers.items():
        table(f"optimizers.{optimizer}", fields)
    if space.optimizers:
        for schedule, params in space.schedules.items():
            table(f"schedules.{schedule}", params)
    shared = {k: v for k, v in space.shared.items() if not (space.lr_grid and k == "lr")}
    if shared:
        table("shared", shared)
    return "\n".join(lines) + "\n"
