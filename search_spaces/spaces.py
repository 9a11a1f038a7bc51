"""Named search spaces: an ``optuna.Trial`` in, a validated ``TrialConfig`` out.

A space is data. Each range is declared once, as an Optuna distribution: the trial samples
from it, and the study stores it (``SearchSpace.definition``), so the two cannot drift.
Each optimizer has ranges of its own (SGD's and Adam's good learning rates are orders of
magnitude apart); its parameters are named ``<optimizer>_<field>`` (``sgd_lr``,
``adam_beta1``), so TPE with ``group=True`` models each conditional subspace separately.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from search_spaces.formulas import Choices, Formula, Range, at_epochs
from study.store import records
from study.train.config import TrialConfig
from study.train.data import MNIST_TRAIN
from study.train.optim import get_optimizer_info
from study.train.registry import Registry
from study.train.schedules import get_schedule_info

__all__ = [
    "SearchSpace",
    "register",
    "get_space",
    "list_spaces",
    "suggest",
    "LAB_CONFIGS",
    "SEARCHED_OPTIMIZERS",
    "MAX_EPOCHS",
    "EPOCHS_LIMIT",
    "MAX_BATCH_SIZE",
    "BATCH_LIMIT",
    "WIDE_LR_RANGES",
    "drop_inapplicable",
]

#: A declared value: a distribution is sampled; one that depends on the run's length is a
#: ``Range``, ``Choices`` or ``Formula`` of ``search_spaces.formulas`` (or any function of
#: the study's epochs, which a space file can only hold for one run length); anything else is
#: a fixed value.
Spec = Any

#: The optimizers the ``default`` and ``lr-sweep`` spaces choose from.
SEARCHED_OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")

#: The most epochs a trial trains, and why (the refusal of a larger value says it): 1000
#: epochs take about half an hour per trial on a CPU (docs/speed.md); the lab's runs take 5.
MAX_EPOCHS = 1000
EPOCHS_LIMIT = "1000 epochs train about half an hour per trial on a CPU; the lab's take 5"
#: The largest batch, and why: a batch of the whole training set makes one update per epoch
#: and stays near chance (accuracy 0.10).
MAX_BATCH_SIZE = MNIST_TRAIN // 10
BATCH_LIMIT = (f"at least 10 updates per epoch on MNIST's {MNIST_TRAIN} training images; "
               "larger batches barely train")


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Sample parameter ``name`` of ``trial`` from ``distribution`` (Optuna's public API)."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step,
            log=distribution.log,
        )
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step,
            log=distribution.log,
        )
    raise TypeError(f"parameter {name!r}: unsupported distribution {distribution!r}.")


_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
#: Trials that hold their configuration: finished, running or queued.
_ALIVE = (*_FINISHED, optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)


def _always(changes: Mapping[str, Any]) -> bool:
    return True


#: Optimizer fields sampled (or set) only when the fields declared before them make them
#: meaningful; otherwise they are left at the config's default and not sampled at all, so a
#: trial records no value that had no effect. Nesterov and dampening act on a momentum
#: buffer, and torch's Nesterov needs dampening 0. Warm-up is not sampled for a schedule
#: that has its own (``one_cycle``).
_APPLIES: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "nesterov": lambda changes: bool(changes.get("momentum")),
    "dampening": lambda changes: bool(changes.get("momentum")) and not changes.get("nesterov"),
    "warmup_epochs": lambda changes: get_schedule_info(
        changes.get("schedule", "constant")).composes_warmup,
}


def drop_inapplicable(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` (``TrialConfig`` fields in declaration order) without the fields a space
    would not sample given the ones before them (``nesterov`` without momentum, ``dampening``
    without momentum or with Nesterov): what :meth:`SearchSpace.config_for` does, for code
    that checks a space's combinations without sampling."""
    kept: dict[str, Any] = {}
    for name, value in changes.items():
        if _APPLIES.get(name, _always)(kept):
            kept[name] = value
    return kept




@dataclass(frozen=True)
class SearchSpace:
    """A named search space, declared as data.

    Args:
        name: registry key (``--space``).
        description: one line for ``--help`` and the study database.
        optimizers: the optimizers it chooses from, each mapped to its ``TrialConfig``
            fields: a distribution (sampled as ``<optimizer>_<field>``) or a fixed value.
            ``nesterov`` and ``dampening`` are sampled only where they act (momentum > 0,
            and no Nesterov for dampening), so declare them after ``momentum``.
        schedules: the schedules it chooses from (``schedule``, when more than one), each
            mapped to its schedule parameters, declared the same way.
        shared: other ``TrialConfig`` fields of every trial (``warmup_epochs``), sampled
            under their own names.
        configs: fixed configurations instead of ranges: ``name -> TrialConfig fields``
            (a value may follow the study's epochs), enqueued in turn and cycled with new
            seeds (the ``lab`` space).
        pruner: the pruner used when the command line names none (``none`` for a space of
            fixed configurations, whose runs are meant to go the full length).
        lr_grid: ``(low, high, points per decade)``: instead of sampling, visit the same log
            grid of learning rates (shared parameter ``lr``) for every optimizer, each point
            once, with Optuna's ``GridSampler`` (the DeepOBS protocol).

    A value may follow the study's epochs (``step_epochs`` runs up to the last epoch): a
    ``Range``, ``Choices`` or ``Formula`` of :mod:`search_spaces.formulas`, which a space file
    writes as arithmetic in ``epochs``; :meth:`distributions` resolves it.
    """

    name: str
    description: str
    optimizers: Mapping[str, Mapping[str, Spec]] = field(default_factory=dict)
    schedules: Mapping[str, Mapping[str, Spec]] = field(
        default_factory=lambda: {"constant": {}}
    )
    shared: Mapping[str, Spec] = field(default_factory=dict)
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pruner: str = "median"
    lr_grid: tuple[float, float, int] | None = None

    def __post_init__(self) -> None:
        for optimizer in self.optimizers:
            get_optimizer_info(optimizer)  # an unknown name lists the registered ones
        if self.lr_grid is not None:
            low, high, per_decade = self.lr_grid
            finite = all(math.isfinite(v) for v in (low, high))
            if not (finite and 0 < low < high and isinstance(per_decade, int)
                    and 1 <= per_decade <= 100):
                raise ValueError(
                    f"lr_grid must be (low, high, points per decade) with 0 < low < high, both "
                    f"finite, and an integer from 1 to 100 per decade, but got "
                    f"lr_grid={self.lr_grid!r}."
                )
            object.__setattr__(self, "shared", {**self.shared, "lr": _log(low, high)})

    def grid(self) -> dict[str, list[Any]] | None:
        """The grid ``GridSampler`` visits (``None`` for a sampled space): every optimizer
        times the same learning rates, ``per_decade`` per decade from ``low`` to ``high``
        (both included)."""
        if self.lr_grid is None:
            return None
        low, high, per_decade = self.lr_grid
        n = max(1, round(math.log10(high / low) * per_decade)) + 1
        lrs = [float(f"{10 ** (math.log10(low) + i * math.log10(high / low) / (n - 1)):.6g}")
               for i in range(n)]
        return {"optimizer": list(self.optimizer_names), "lr": lrs}

    def with_lr_grid(self, low: float, high: float, per_decade: int) -> SearchSpace:
        """This grid space over another learning-rate grid.

        Raises:
            ValueError: the space is not a grid, or the grid is malformed.
        """
        if self.lr_grid is None:
            raise ValueError(
                f"the {self.name!r} space samples its learning rates; a grid applies to: "
                f"{', '.join(s.name for s in _SPACES if s.lr_grid)}."
            )
        shared = {k: v for k, v in self.shared.items() if k != "lr"}
        return dataclasses.replace(self, shared=shared, lr_grid=(low, high, per_decade))

    @property
    def optimizer_names(self) -> tuple[str, ...]:
        """The optimizers this space chooses from (empty for fixed configurations)."""
        return tuple(self.optimizers)

    # --- the declaration, resolved -------------------------------------------------------

    def distributions(self, epochs: int) -> dict[str, BaseDistribution]:
        """Every parameter this space can sample, by its Optuna name, for runs of
        ``epochs`` epochs (a trial samples the subset its optimizer and schedule need)."""
        out: dict[str, BaseDistribution] = {}
        if self.configs:
            out[self.config_param] = CategoricalDistribution(tuple(self.configs))
            return out
        if self.optimizers:
            out["optimizer"] = CategoricalDistribution(self.optimizer_names)
        for optimizer, fields in self.optimizers.items():
            for name, spec in fields.items():
                value = at_epochs(spec, epochs)
                if isinstance(value, BaseDistribution):
                    out[f"{optimizer}_{name}"] = value
        if len(self.schedules) > 1:
            out["schedule"] = CategoricalDistribution(tuple(self.schedules))
        for schedule, params in self.schedules.items():
            for name, spec in params.items():
                value = at_epochs(spec, epochs)
                if isinstance(value, BaseDistribution):
                    out[records.schedule_param(schedule, name)] = value
        for name, spec in self.shared.items():
            value = at_epochs(spec, epochs)
            if isinstance(value, BaseDistribution):
                out[name] = value
        return out

    def definition(self, epochs: int) -> dict[str, Any]:
        """The declaration as stored with the study: JSON-ready, distributions encoded with
        :func:`study.store.records.encode_distribution`, fixed values as they are."""

        def encode(specs: Mapping[str, Spec]) -> dict[str, Any]:
            out = {}
            for name, spec in specs.items():
                value = at_epochs(spec, epochs)
                if isinstance(value, BaseDistribution):
                    value = records.encode_distribution(value)
                elif isinstance(value, tuple):
                    value = list(value)
                out[name] = value
            return out

        if self.configs:
            return {"configs": {name: {k: at_epochs(v, epochs) for k, v in c.items()}
                                for name, c in self.configs.items()}}
        definition = {
            "optimizers": {name: encode(f) for name, f in self.optimizers.items()},
            "schedules": {name: encode(p) for name, p in self.schedules.items()},
            "shared": encode(self.shared),
        }
        if self.lr_grid is not None:
            definition["grid"] = self.grid()
        return definition

    @property
    def config_param(self) -> str:
        """The parameter naming a fixed configuration (``lab_config``)."""
        return f"{self.name}_config"

    # --- sampling --------------------------------------------------------------------------

    def config_for(self, trial: optuna.Trial, base: TrialConfig) -> TrialConfig:
        """The configuration this space proposes for ``trial``; ``base`` carries what the
        command line fixes (epochs, batch size, seed)."""
        if self.configs:
            name = suggest(trial, self.config_param, CategoricalDistribution(tuple(self.configs)))
            fields = {k: at_epochs(v, base.epochs) for k, v in self.configs[name].items()}
            return base.replace(**{"schedule": "constant", "schedule_params": {}, **fields})
        epochs = base.epochs
        dists = self.distributions(epochs)

        def value(name: str, spec: Spec) -> Any:
            resolved = at_epochs(spec, epochs)
            if isinstance(resolved, BaseDistribution):
                return suggest(trial, name, dists[name])
            return resolved

        optimizer = suggest(trial, "optimizer", dists["optimizer"])
        changes: dict[str, Any] = {"optimizer": optimizer}
        for name, spec in self.optimizers[optimizer].items():
            if _APPLIES.get(name, _always)(changes):
                changes[name] = value(f"{optimizer}_{name}", spec)
        schedule = (suggest(trial, "schedule", dists["schedule"]) if "schedule" in dists
                    else next(iter(self.schedules)))
        changes["schedule"] = schedule
        changes["schedule_params"] = {
            name: value(records.schedule_param(schedule, name), spec)
            for name, spec in self.schedules[schedule].items()
        }
        for name, spec in self.shared.items():
            if _APPLIES.get(name, _always)(changes):
                changes[name] = value(name, spec)
        return base.replace(**changes)

    def restrict(self, optimizers: Sequence[str]) -> SearchSpace:
        """This space choosing only among ``optimizers`` (a subset of its own).

        Raises:
            ValueError: an unknown name, a name this space does not search, or a space of
                fixed configurations; the message lists what is allowed.
        """
        if not self.optimizers:
            raise ValueError(
                f"the {self.name!r} space runs fixed configurations; choosing optimizers "
                f"applies to: {', '.join(s.name for s in _SPACES if s.optimizers)}."
            )
        for name in optimizers:
            get_optimizer_info(name)  # unknown names list the registered ones
            if name not in self.optimizers:
                raise ValueError(
                    f"the {self.name!r} space does not search optimizer {name!r}; choose "
                    f"among: {', '.join(self.optimizers)}."
                )
        if not optimizers:
            raise ValueError("choose at least one optimizer.")
        chosen = dict.fromkeys(optimizers)  # drop repeats, keep the order
        return dataclasses.replace(self, optimizers={n: self.optimizers[n] for n in chosen})

    def grid_points_done(self, optuna_study: optuna.Study,
                         states: tuple[optuna.trial.TrialState, ...] = _FINISHED) -> int:
        """How many distinct points of the grid have a trial in ``states``."""
        grid = self.grid()
        if grid is None:
            return 0
        points = {records.grid_point(o, lr) for o in grid["optimizer"] for lr in grid["lr"]}
        done = {records.grid_point(t.params.get("optimizer"), t.params.get("lr"))
                for t in optuna_study.get_trials(deepcopy=False, states=states)}
        return len(points & done)

    def enqueue_missing(self, optuna_study: optuna.Study, n_trials: int) -> int:
        """Enqueue what the study needs besides sampling; returns the number enqueued.

        A space of fixed configurations: see :meth:`enqueue_fixed_trials`. A grid resumed
        after a failed or interrupted trial: every grid point without a finished, running or
        waiting trial (Optuna's ``GridSampler`` counts a failed trial's point as visited, so
        without this the grid would never be completed).
        """
        if self.configs:
            return self.enqueue_fixed_trials(optuna_study, n_trials)
        grid = self.grid()
        if grid is None or not optuna_study.get_trials(deepcopy=False):
            return 0  # a fresh grid: GridSampler hands out every point once
        have = {records.grid_point(t.params.get("optimizer"), t.params.get("lr"))
                for t in optuna_study.get_trials(deepcopy=False, states=_ALIVE)}
        enqueued = 0
        for optimizer in grid["optimizer"]:
            for lr in grid["lr"]:
                if records.grid_point(optimizer, lr) not in have:
                    optuna_study.enqueue_trial({"optimizer": optimizer, "lr": lr},
                                               skip_if_exists=False)
                    enqueued += 1
        return enqueued

    def enqueue_fixed_trials(self, optuna_study: optuna.Study, n_trials: int) -> int:
        """Enqueue the fixed configurations the study still needs to reach ``n_trials``.

        They are cycled (the first ``n_trials`` of ``a, b, c, a, b, c, ...``). Ones that
        already have a finished, running or waiting trial are not enqueued again, so calling
        this on every resume is safe. Returns the number enqueued.
        """
        if not self.configs:
            return 0
        wanted = list(itertools.islice(itertools.cycle(self.configs), n_trials))
        have = Counter(
            t.user_attrs.get(records.FIXED_TRIAL)
            for t in optuna_study.get_trials(deepcopy=False, states=_ALIVE)
        )
        enqueued = 0
        for name in wanted:  # in cycle order: a, b, c, a, b, c, ...
            key = f"{self.config_param}={name}"
            if have[key] > 0:
                have[key] -= 1
                continue
            optuna_study.enqueue_trial(
                {self.config_param: name}, user_attrs={records.FIXED_TRIAL: key},
                skip_if_exists=False,
            )
            enqueued += 1
        return enqueued


_SPACES: Registry[SearchSpace] = Registry("search space")
#: Add a search space; its name must be new.
register = _SPACES.register
#: Names of the registered search spaces.
list_spaces = _SPACES.names
#: The space registered under a name; an unknown name lists the registered ones (ValueError).
get_space = _SPACES.get


def _log(low: float, high: float) -> FloatDistribution:
    return FloatDistribution(low, high, log=True)


# --- default: every searched optimizer, its own ranges, a schedule and warm-up ------------

#: Learning rates (log scale): SGD's good rates sit two decades above the adaptive ones'.
#: Weight decay: AdamW's is multiplied by the learning rate, so its useful values are two
#: orders of magnitude above the L2 penalty of the others.
_BETA1 = FloatDistribution(0.5, 0.99)
_STEP: dict[str, Spec] = {
    "step_epochs": Range(1, Formula("max(1, epochs - 1)"), integer=True),
    "gamma": _log(0.05, 0.5),
}
#: At most one epoch of warm-up, and at most half the run.
_WARMUP = Range(0.0, Formula("min(1.0, epochs / 2)"))


# asha: successive halving within each optimizer (the run's default: --prune-within): at
# epoch 1, then 3, only the top third of that optimizer's trials go on, so a poor trial
# costs one epoch instead of the median pruner's several.
register(SearchSpace(
    name="default",
    pruner="asha",
    description="SGD/RMSprop/Adam/AdamW, each with its own LR and weight-decay range; "
    "momentum, Nesterov, beta1, schedule (constant/step/cosine) and warm-up",
    optimizers={
        "sgd": {
            "lr": _log(1e-3, 1.0),
            "weight_decay": _log(1e-6, 1e-3),
            "momentum": FloatDistribution(0.0, 0.99),
            "nesterov": CategoricalDistribution((False, True)),
        },
        "rmsprop": {"lr": _log(1e-5, 1e-2), "weight_decay": _log(1e-6, 1e-3)},
        "adam": {"lr": _log(1e-5, 1e-2), "weight_decay": _log(1e-6, 1e-3), "beta1": _BETA1},
        "adamw": {"lr": _log(1e-5, 1e-2), "weight_decay": _log(1e-4, 1e-1), "beta1": _BETA1},
    },
    schedules={"constant": {}, "step": _STEP, "cosine": {}},
    shared={"warmup_epochs": _WARMUP},
))


# --- wide: every optimizer and every knob the lab shows -----------------------------------

#: The learning-rate range of each optimizer in the ``wide`` space and why: measured after
#: one epoch of the lab's MLP on MNIST (batch 64, torch defaults otherwise), each range spans
#: the optimizer's best rates with one to two decades on either side, like ``default``'s.
WIDE_LR_RANGES: dict[str, tuple[float, float, str]] = {
    "sgd": (1e-3, 1.0, "as in default: plain SGD steps are lr x gradient, two decades above "
            "the adaptive optimizers' per-coordinate steps"),
    "sgd_lab": (1e-3, 1.0, "SGD's range: at a constant rate the lab's update is torch's "
                "momentum SGD exactly"),
    "rmsprop": (1e-5, 1e-2, "as in default: a normalised step of about lr per coordinate, "
                "best near 1e-3 and breaking down at 3e-2"),
    "adam": (1e-5, 1e-2, "as in default: best near 1e-3, breaking down at 3e-2"),
    "adamw": (1e-5, 1e-2, "as in default: Adam's step; only its weight decay differs"),
    "nadam": (1e-5, 1e-2, "Adam's: the Nesterov look-ahead leaves the step size at about lr "
              "per coordinate (measured: the same curve as Adam, best 3e-4 to 1e-3)"),
    "radam": (3e-5, 3e-2, "half a decade above Adam's: the variance rectification damps the "
              "early steps like a built-in warm-up, so it learns slower at small rates and "
              "survives larger ones (best 1e-3 to 3e-3; 0.84 at 3e-2 where Adam gets 0.66)"),
    "adagrad": (3e-4, 0.3, "a decade above Adam's: the squared gradients are summed, never "
                "forgotten, so its step shrinks like lr / sqrt(updates) (best 1e-2 to 3e-2, "
                "torch's default 1e-2)"),
    "adamax": (3e-5, 3e-2, "half a decade above Adam's: its infinity-norm denominator "
               "max(beta2 u, |g|) is at least Adam's sqrt(v), so a step is smaller at the same "
               "rate (best 3e-3, torch's default 2e-3)"),
}


def _wide_lr(name: str) -> FloatDistribution:
    low, high, _ = WIDE_LR_RANGES[name]
    return _log(low, high)


def _decay(weight_decay: FloatDistribution) -> dict[str, Spec]:
    """Weight decay as the lab's param groups split it: the body's, the output layer's (its
    own range, the same as the body's), and whether biases are exempt."""
    return {"weight_decay": weight_decay, "head_weight_decay": weight_decay,
            "no_decay_1d": CategoricalDistribution((True, False))}


#: The lab's milestones (6 and 11 of 15 epochs) scaled to the study's epochs: 40 % of the
#: run (at least epoch 1), and 73 % (at least one epoch after the first).
_FIRST_MILESTONE = "max(1, round(0.4 * epochs))"
_LAB_MILESTONES = [Formula(_FIRST_MILESTONE),
                   Formula(f"max({_FIRST_MILESTONE} + 1, round(11 / 15 * epochs))")]

#: First periods whose restarts (period multiplier 1 or 2) end on the run's last update for
#: some multiplier: a tenth, a fifth, a third or half of the run.
_RESTART_PERIODS = Choices(tuple(Formula(f"round(epochs / {k}, 6)") for k in (10, 5, 3, 2)))


def _lab_schedule(**params: Any) -> dict[str, Any]:
    """Schedule parameters with the lab's milestones scaled to the study's epochs."""
    return {"milestones": _LAB_MILESTONES, **params}


def _cyclic() -> dict[str, Spec]:
    """A half-cycle that ends the run at the base rate (the run is 2, 4, 8 or 10
    half-cycles), and a base rate from 1 % to half of the peak (``lr``)."""
    return {"step_epochs": Choices(tuple(Formula(f"round(epochs / {2 * k}, 6)")
                                         for k in (1, 2, 4, 5))),
            "base_ratio": _log(0.01, 0.5)}


_WD = _log(1e-6, 1e-3)  # an L2 penalty added to the gradient
_WD_DECOUPLED = _log(1e-4, 1e-1)  # AdamW's: multiplied by the learning rate
_MOMENTUM = FloatDistribution(0.0, 0.99)
_BOOL = CategoricalDistribution((False, True))
_ADAPTIVE = {"beta1": _BETA1, **_decay(_WD)}

# default stays at its four optimizers: its trials are shared equally among the optimizers,
# so each added one would shrink every other's share of a 50-trial study.
register(SearchSpace(
    name="wide",
    pruner="asha",
    description="every optimizer (SGD, the lab's SGD, RMSprop, Adam, AdamW, NAdam, RAdam, "
    "Adagrad, Adamax), each with its own LR range; momentum, Nesterov, dampening, centered "
    "RMSprop, betas, weight decay with the lab's param groups (bias exemption, output-layer "
    "LR multiplier and weight decay), every schedule (step, multistep, exponential, cosine, "
    "linear, restarts, the three cyclic ones, one-cycle, plateau, the batch-size schedule), "
    "warm-up and the batch size (32 to 256, overriding --batch-size); give it 10+ trials per "
    "optimizer (--trials 90 or more)",
    optimizers={
        "sgd": {"lr": _wide_lr("sgd"), "momentum": _MOMENTUM, "nesterov": _BOOL,
                "dampening": FloatDistribution(0.0, 0.9), **_decay(_WD)},
        "sgd_lab": {"lr": _wide_lr("sgd_lab"), "momentum": _MOMENTUM},
        "rmsprop": {"lr": _wide_lr("rmsprop"), "momentum": FloatDistribution(0.0, 0.9),
                    "centered": _BOOL, "alpha": FloatDistribution(0.9, 0.999), **_decay(_WD)},
        "adam": {"lr": _wide_lr("adam"), **_ADAPTIVE},
        "adamw": {"lr": _wide_lr("adamw"), "beta1": _BETA1, **_decay(_WD_DECOUPLED)},
        "nadam": {"lr": _wide_lr("nadam"), **_ADAPTIVE},
        "radam": {"lr": _wide_lr("radam"), **_ADAPTIVE},
        "adagrad": {"lr": _wide_lr("adagrad"), **_decay(_WD)},
        "adamax": {"lr": _wide_lr("adamax"), **_ADAPTIVE},
    },
    schedules={
        "constant": {},
        "step": _STEP,
        "multistep": {"milestones": _LAB_MILESTONES, "gamma": _log(0.05, 0.5)},
        "exponential": {"gamma": FloatDistribution(0.3, 0.95)},
        "cosine": {},
        "linear": {},
        "cosine_restarts": {"period_epochs": _RESTART_PERIODS,
                            "period_mult": IntDistribution(1, 2),
                            "floor": FloatDistribution(0.0, 0.1)},
        "triangular": _cyclic(),
        "triangular2": _cyclic(),
        "exp_range": {**_cyclic(), "gamma": FloatDistribution(0.3, 1.0)},
        "one_cycle": {"pct_start": FloatDistribution(0.1, 0.5),
                      "div_factor": _log(5.0, 100.0),
                      "final_div_factor": _log(10.0, 1e4)},
        "plateau": {"factor": _log(0.1, 0.5), "patience": IntDistribution(0, 2)},
        "batch_multistep": {"milestones": _LAB_MILESTONES, "gamma": _log(0.1, 0.5)},
    },
    shared={"warmup_epochs": _WARMUP, "head_lr_mult": _log(0.1, 10.0),
            "batch_size": CategoricalDistribution((32, 64, 128, 256))},
))


# --- lr-sweep: only the learning rate moves, everything else at the optimizer's defaults --

# Two decades wider below and one above the default space's ranges: the sweep is meant to
# find where each optimizer stops learning and where it diverges.
register(SearchSpace(
    name="lr-sweep",
    description="only the learning rate, over a wide log range per optimizer "
    "(SGD with momentum 0.9, the rest at torch defaults, constant schedule)",
    optimizers={
        "sgd": {"lr": _log(1e-5, 10.0), "momentum": 0.9},
        "rmsprop": {"lr": _log(1e-7, 1e-1)},
        "adam": {"lr": _log(1e-7, 1e-1)},
        "adamw": {"lr": _log(1e-7, 1e-1)},
    },
    pruner="none",  # a sweep measures sensitivity: stopping the bad learning rates biases it
))


# --- lr-grid: the same learning-rate grid for every optimizer (DeepOBS) --------------------

# Everything but the learning rate fixed as in lr-sweep. A common range for all optimizers is
# what makes their sensitivity scores comparable: each is averaged over the same decades.
register(SearchSpace(
    name="lr-grid",
    description="the same log grid of learning rates for every optimizer (1e-5 to 1, 4 per "
    "decade), each point once; SGD with momentum 0.9, the rest at torch defaults",
    optimizers={"sgd": {"momentum": 0.9}, "rmsprop": {}, "adam": {}, "adamw": {}},
    pruner="none",
    lr_grid=(1e-5, 1.0, 4),
))


# --- lab: exactly the three configurations of the course lab ------------------------------

#: The lab's configurations: SGD lr 0.1 momentum 0.9 weight decay 5e-4 (on every parameter,
#: as ``SGD(model.parameters(), ...)`` does); RMSprop and Adam with torch's defaults.
LAB_CONFIGS: dict[str, dict[str, Any]] = {
    "sgd": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
            "no_decay_1d": False},
    "rmsprop": {"optimizer": "rmsprop", "lr": get_optimizer_info("rmsprop").default_lr},
    "adam": {"optimizer": "adam", "lr": get_optimizer_info("adam").default_lr},
}

register(SearchSpace(
    name="lab",
    description="the lab's three runs: SGD (lr 0.1, momentum 0.9, wd 5e-4), RMSprop and "
    "Adam with torch defaults; constant LR (cycled with new seeds past 3 trials)",
    configs=LAB_CONFIGS,
    pruner="none",
))


# --- batch-vs-decay: Smith et al. 2017 at equal epochs -------------------------------------

#: The lab's SGD, its learning rate divided by 5 at 40 % and 73 % of the run (the lab's 6 and
#: 11 of 15 epochs), against the same run holding the rate and multiplying the batch size by
#: 5 there instead ("Don't decay the learning rate, increase the batch size").
_LAB_SGD = dict(LAB_CONFIGS["sgd"])
register(SearchSpace(
    name="batch-vs-decay",
    description="the lab's SGD with its learning rate divided by 5 at 40 % and 73 % of the "
    "run, against the batch size multiplied by 5 there instead (Smith et al. 2017), at "
    "equal epochs; cycled with new seeds",
    configs={
        "lr-decay": {**_LAB_SGD, "schedule": "multistep",
                     "schedule_params": _lab_schedule(gamma=0.2)},
        "batch-growth": {**_LAB_SGD, "schedule": "batch_multistep",
                         "schedule_params": _lab_schedule(gamma=0.2)},
    },
    pruner="none",
))


# --- lab-full: every idea of the lab, one fixed run each ----------------------------------



register(SearchSpace(
    name="lab-full",
    description="every idea of the lab, one run each: its SGD, RMSprop and Adam; its "
    "hand-written momentum SGD; the output layer as its own param group (lr x 0.1); the "
    "learning rate divided by 10 at 40 % and 73 % of the run (6 and 11 of 15 epochs); a "
    "triangular cycle; linear warm-up then linear decay; the batch size multiplied by 10 "
    "instead; cycled with new seeds (run it with --epochs 15 for the lab's length)",
    configs={
        **LAB_CONFIGS,
        "sgd_lab": {"optimizer": "sgd_lab", "lr": 0.1, "momentum": 0.9},
        "sgd-head-group": {**_LAB_SGD, "head_lr_mult": 0.1},
        "sgd-multistep": {**_LAB_SGD, "schedule": "multistep",
                          "schedule_params": _lab_schedule(gamma=0.1)},
        "sgd-triangular": {**_LAB_SGD, "schedule": "triangular",
                           "schedule_params": {"step_epochs": Formula("epochs / 4"),
                                               "base_ratio": 0.1}},
        "sgd-warmup-linear": {**_LAB_SGD, "schedule": "linear", "warmup_epochs": 1.0},
        "sgd-batch-growth": {**_LAB_SGD, "schedule": "batch_multistep",
                             "schedule_params": _lab_schedule(gamma=0.1)},
    },
    pruner="none",
))
