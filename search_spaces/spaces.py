"""Named search spaces: an ``optuna.Trial`` in, a validated ``TrialConfig`` out.

Each optimizer has its own learning-rate (and weight-decay) range, taken from its registry
entry: SGD's and Adam's good learning rates are orders of magnitude apart. Parameters that
only exist for some optimizers (momentum for SGD, beta1 for Adam) get names of their own, so
TPE with ``group=True`` models each conditional subspace separately.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from search_spaces.config import TrialConfig
from study.optim import get_optimizer_info
from study.registry import Registry

__all__ = ["SearchSpace", "register", "get_space", "list_spaces", "LAB_CONFIGS"]

#: The optimizers the ``default`` and ``lr-sweep`` spaces choose from.
SEARCHED_OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
#: The schedules the ``default`` space chooses from.
SEARCHED_SCHEDULES = ("constant", "step", "cosine")


@dataclass(frozen=True)
class SearchSpace:
    """A named search space.

    Args:
        name: registry key (``--space``).
        description: one line for ``--help`` and the study database.
        suggest: ``(trial, base, optimizers) -> TrialConfig``; ``base`` carries what the
            command line fixes (epochs, batch size, seed), ``optimizers`` the optimizer
            choices, and the space fills in the rest.
        optimizers: the optimizers it chooses from (empty for spaces of fixed
            configurations); :meth:`restrict` narrows them.
        fixed_trials: parameter sets to enqueue, cycled up to the study's target (the
            ``lab`` space runs exactly the lab's configurations this way).
        definition: a JSON-ready description of the ranges, stored with the study.
        pruner: the pruner used when the command line names none (``none`` for the lab
            space, whose runs are meant to go the full length).
    """

    name: str
    description: str
    suggest: Callable[[optuna.Trial, TrialConfig, tuple[str, ...]], TrialConfig]
    optimizers: tuple[str, ...] = ()
    fixed_trials: tuple[Mapping[str, Any], ...] = ()
    definition: Mapping[str, Any] | None = None
    pruner: str = "median"

    def config_for(self, trial: optuna.Trial, base: TrialConfig) -> TrialConfig:
        """The configuration this space proposes for ``trial``."""
        return self.suggest(trial, base, self.optimizers)

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
        chosen = tuple(dict.fromkeys(optimizers))  # drop repeats, keep the order
        return dataclasses.replace(self, optimizers=chosen)

    def enqueue_fixed_trials(self, optuna_study: optuna.Study, n_trials: int) -> int:
        """Enqueue the fixed parameter sets the study still needs to reach ``n_trials``.

        The sets are cycled (the first ``n_trials`` of ``a, b, c, a, b, c, ...``). Sets that
        already have a finished, running or waiting trial are not enqueued again, so calling
        this on every resume is safe. Returns the number enqueued.
        """
        if not self.fixed_trials:
            return 0
        by_key = {_fixed_key(p): p for p in self.fixed_trials}
        wanted = list(itertools.islice(itertools.cycle(by_key), n_trials))
        alive = (
            optuna.trial.TrialState.COMPLETE,
            optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.RUNNING,
            optuna.trial.TrialState.WAITING,
        )
        have = Counter(
            t.user_attrs.get("fixed_trial")
            for t in optuna_study.get_trials(deepcopy=False, states=alive)
        )
        enqueued = 0
        for key in wanted:  # in cycle order: a, b, c, a, b, c, ...
            if have[key] > 0:
                have[key] -= 1
                continue
            optuna_study.enqueue_trial(
                dict(by_key[key]), user_attrs={"fixed_trial": key}, skip_if_exists=False
            )
            enqueued += 1
        return enqueued


def _fixed_key(params: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={params[k]}" for k in sorted(params))


_SPACES: Registry[SearchSpace] = Registry("search space")
#: Add a search space; its name must be new.
register = _SPACES.register
#: Names of the registered search spaces.
list_spaces = _SPACES.names
#: The space registered under a name; an unknown name lists the registered ones (ValueError).
get_space = _SPACES.get


# --- default: every searched optimizer, its own ranges, a schedule and warm-up ------------

#: Weight-decay ranges (log scale). AdamW's decay is multiplied by the learning rate, so its
#: useful values are two orders of magnitude above the L2 penalty of the others.
WEIGHT_DECAY_RANGES = {
    "sgd": (1e-6, 1e-3),
    "rmsprop": (1e-6, 1e-3),
    "adam": (1e-6, 1e-3),
    "adamw": (1e-4, 1e-1),
}


def _suggest_default(
    trial: optuna.Trial, base: TrialConfig, optimizers: tuple[str, ...]
) -> TrialConfig:
    name = trial.suggest_categorical("optimizer", optimizers)
    info = get_optimizer_info(name)
    changes: dict[str, Any] = {
        "optimizer": name,
        "lr": trial.suggest_float(f"{name}_lr", *info.lr_range, log=True),
        "weight_decay": trial.suggest_float(
            f"{name}_weight_decay", *WEIGHT_DECAY_RANGES[name], log=True
        ),
    }
    if name == "sgd":
        changes["momentum"] = trial.suggest_float("sgd_momentum", 0.0, 0.99)
        if changes["momentum"] > 0:
            changes["nesterov"] = trial.suggest_categorical("sgd_nesterov", (False, True))
    if info.has_betas:
        changes["beta1"] = trial.suggest_float(f"{name}_beta1", 0.5, 0.99)
    schedule = trial.suggest_categorical("schedule", SEARCHED_SCHEDULES)
    changes["schedule"] = schedule
    if schedule == "step":
        changes["schedule_params"] = {
            "step_epochs": trial.suggest_int("step_epochs", 1, max(1, base.epochs - 1)),
            "gamma": trial.suggest_float("step_gamma", 0.05, 0.5, log=True),
        }
    else:
        changes["schedule_params"] = {}
    changes["warmup_epochs"] = trial.suggest_float(
        "warmup_epochs", 0.0, min(1.0, base.epochs / 2)
    )
    return base.replace(**changes)


def _definition_default() -> dict[str, Any]:
    return {
        "optimizer": list(SEARCHED_OPTIMIZERS),
        "lr (log)": {n: list(get_optimizer_info(n).lr_range) for n in SEARCHED_OPTIMIZERS},
        "weight_decay (log)": {n: list(r) for n, r in WEIGHT_DECAY_RANGES.items()},
        "sgd_momentum": [0.0, 0.99],
        "sgd_nesterov": [False, True],
        "beta1 (adam, adamw)": [0.5, 0.99],
        "schedule": list(SEARCHED_SCHEDULES),
        "step_epochs": "1 .. epochs-1",
        "step_gamma (log)": [0.05, 0.5],
        "warmup_epochs": "0 .. min(1, epochs/2)",
    }


register(SearchSpace(
    name="default",
    description="SGD/RMSprop/Adam/AdamW, each with its own LR and weight-decay range; "
    "momentum, Nesterov, beta1, schedule (constant/step/cosine) and warm-up",
    suggest=_suggest_default,
    optimizers=SEARCHED_OPTIMIZERS,
    definition=_definition_default(),
))


# --- lr-sweep: only the learning rate moves, everything else at the optimizer's defaults --


def _suggest_lr_sweep(
    trial: optuna.Trial, base: TrialConfig, optimizers: tuple[str, ...]
) -> TrialConfig:
    name = trial.suggest_categorical("optimizer", optimizers)
    low, high = get_optimizer_info(name).lr_range
    # Two decades wider than the default space on each side: the sweep is meant to find
    # where each optimizer stops learning and where it diverges.
    lr = trial.suggest_float(f"{name}_lr", low / 100, high * 10, log=True)
    momentum = 0.9 if name == "sgd" else None
    return base.replace(optimizer=name, lr=lr, momentum=momentum, schedule="constant")


register(SearchSpace(
    name="lr-sweep",
    description="only the learning rate, over a wide log range per optimizer "
    "(SGD with momentum 0.9, the rest at torch defaults, constant schedule)",
    suggest=_suggest_lr_sweep,
    optimizers=SEARCHED_OPTIMIZERS,
    definition={
        "optimizer": list(SEARCHED_OPTIMIZERS),
        "lr (log)": {
            n: [get_optimizer_info(n).lr_range[0] / 100, get_optimizer_info(n).lr_range[1] * 10]
            for n in SEARCHED_OPTIMIZERS
        },
    },
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


def _suggest_lab(
    trial: optuna.Trial, base: TrialConfig, optimizers: tuple[str, ...]
) -> TrialConfig:
    name = trial.suggest_categorical("lab_config", tuple(LAB_CONFIGS))
    return base.replace(schedule="constant", schedule_params={}, **LAB_CONFIGS[name])


register(SearchSpace(
    name="lab",
    description="the lab's three runs: SGD (lr 0.1, momentum 0.9, wd 5e-4), RMSprop and "
    "Adam with torch defaults; constant LR (cycled with new seeds past 3 trials)",
    suggest=_suggest_lab,
    fixed_trials=tuple({"lab_config": name} for name in LAB_CONFIGS),
    definition={"lab_config": LAB_CONFIGS},
    pruner="none",
))
