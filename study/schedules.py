"""Learning-rate schedule registry; linear warm-up composes onto any of them.

A schedule is a pure function of the optimizer-update index returning a factor of the base
learning rate, with its constants keyword-only and bound with :func:`functools.partial`
(picklable, trivially testable). It is stepped once per optimizer update through
``torch.optim.lr_scheduler.LambdaLR``; parameters given in epochs are converted to updates.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from study.registry import Registry

__all__ = [
    "ScheduleParam",
    "ScheduleInfo",
    "register",
    "list_schedules",
    "get_schedule_info",
    "validate_schedule_params",
    "build_lr_lambda",
    "create_scheduler",
    "constant_factor",
    "step_factor",
    "multistep_factor",
    "exponential_factor",
    "cosine_factor",
    "linear_factor",
    "warmup_factor",
]

LrLambda = Callable[[int], float]


# --- the shapes: pure functions of the update index --------------------------------------


def constant_factor(step: int) -> float:
    """The base learning rate throughout."""
    return 1.0


def step_factor(step: int, *, step_size: int, gamma: float) -> float:
    """Multiply by ``gamma`` every ``step_size`` updates (``StepLR``)."""
    return gamma ** (step // step_size)


def multistep_factor(step: int, *, milestones: tuple[int, ...], gamma: float) -> float:
    """Multiply by ``gamma`` at each milestone update (``MultiStepLR``; the lab's 6, 11)."""
    return gamma ** bisect.bisect_right(milestones, step)


def exponential_factor(step: int, *, gamma: float) -> float:
    """Multiply by ``gamma`` every update (``ExponentialLR`` per update)."""
    return gamma**step


def cosine_factor(step: int, *, total_steps: int, floor: float) -> float:
    """Half-cosine from 1 down to ``floor`` over ``total_steps`` updates, then ``floor``."""
    progress = min(step, total_steps) / max(1, total_steps)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_factor(step: int, *, total_steps: int, floor: float) -> float:
    """Straight line from 1 down to ``floor`` over ``total_steps`` updates, then ``floor``."""
    progress = min(step, total_steps) / max(1, total_steps)
    return 1.0 - (1.0 - floor) * progress


def warmup_factor(step: int, *, warmup_steps: int, after: LrLambda) -> float:
    """Linear warm-up over ``warmup_steps`` updates, then ``after`` from its own step 0."""
    # 1. warm-up: rises linearly, never exactly 0 at step 0, the full rate at its last step
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    # 2. afterwards: the decay shape, counted from the end of warm-up
    return after(step - warmup_steps)


# --- the registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleParam:
    """One parameter of a schedule, its default and its allowed range (inclusive)."""

    name: str
    default: float | tuple[float, ...]
    low: float
    high: float
    help: str
    is_list: bool = False


@dataclass(frozen=True)
class ScheduleInfo:
    """A registered schedule.

    ``make`` receives ``total_steps`` (updates after warm-up), ``steps_per_epoch`` and the
    schedule's own parameters (in epochs where they are durations) and returns the factor
    function of the update index.
    """

    name: str
    description: str
    make: Callable[..., LrLambda]
    params: tuple[ScheduleParam, ...] = ()


_SCHEDULES: Registry[ScheduleInfo] = Registry("schedule")
#: Add a schedule; its name must be new.
register = _SCHEDULES.register
#: Names of the registered schedules, in registration order.
list_schedules = _SCHEDULES.names
#: The registry entry for a name; an unknown name lists the registered ones (ValueError).
get_schedule_info = _SCHEDULES.get


def _epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    return max(1, round(epochs * steps_per_epoch))


def _make_constant(*, total_steps: int, steps_per_epoch: int) -> LrLambda:
    return constant_factor


def _make_step(
    *, total_steps: int, steps_per_epoch: int, step_epochs: float, gamma: float
) -> LrLambda:
    return functools.partial(
        step_factor, step_size=_epochs_to_steps(step_epochs, steps_per_epoch), gamma=gamma
    )


def _make_multistep(
    *, total_steps: int, steps_per_epoch: int, milestones: tuple[float, ...], gamma: float
) -> LrLambda:
    updates = tuple(sorted(_epochs_to_steps(m, steps_per_epoch) for m in milestones))
    return functools.partial(multistep_factor, milestones=updates, gamma=gamma)


def _make_exponential(*, total_steps: int, steps_per_epoch: int, gamma: float) -> LrLambda:
    # gamma is given per epoch, as torch's ExponentialLR stepped per epoch would apply it.
    return functools.partial(exponential_factor, gamma=gamma ** (1.0 / steps_per_epoch))


def _make_cosine(*, total_steps: int, steps_per_epoch: int, floor: float) -> LrLambda:
    return functools.partial(cosine_factor, total_steps=total_steps, floor=floor)


def _make_linear(*, total_steps: int, steps_per_epoch: int, floor: float) -> LrLambda:
    return functools.partial(linear_factor, total_steps=total_steps, floor=floor)


_GAMMA = ScheduleParam("gamma", 0.1, 1e-4, 1.0, "factor applied at each decay")
_FLOOR = ScheduleParam("floor", 0.0, 0.0, 1.0, "final learning rate as a fraction of the base")

register(ScheduleInfo("constant", "the base learning rate throughout", _make_constant))
register(ScheduleInfo(
    "step",
    "multiply by gamma every step_epochs epochs (StepLR)",
    _make_step,
    (ScheduleParam("step_epochs", 2.0, 1e-3, 1e6, "epochs between decays"), _GAMMA),
))
register(ScheduleInfo(
    "multistep",
    "multiply by gamma at each milestone epoch (MultiStepLR; the lab uses 6, 11)",
    _make_multistep,
    (
        ScheduleParam("milestones", (6.0, 11.0), 0.0, 1e6, "epochs at which to decay", True),
        _GAMMA,
    ),
))
register(ScheduleInfo(
    "exponential",
    "multiply by gamma every epoch, smoothly per update (ExponentialLR)",
    _make_exponential,
    (ScheduleParam("gamma", 0.7, 1e-4, 1.0, "factor per epoch"),),
))
register(ScheduleInfo(
    "cosine", "half-cosine from the base down to floor x base", _make_cosine, (_FLOOR,)
))
register(ScheduleInfo(
    "linear", "straight line from the base down to floor x base", _make_linear, (_FLOOR,)
))


def validate_schedule_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``params`` against schedule ``name`` and fill in defaults.

    Returns:
        A new dict with every parameter of the schedule (lists as tuples).

    Raises:
        ValueError: unknown schedule, unknown parameter, or a value out of range; the message
            names the parameter, the value and the allowed range.
    """
    info = get_schedule_info(name)
    known = {p.name: p for p in info.params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        allowed = ", ".join(known) or "none"
        raise ValueError(
            f"schedule {name!r} takes no parameter {unknown[0]!r}; its parameters: {allowed}."
        )
    out: dict[str, Any] = {}
    for spec in info.params:
        value = params.get(spec.name, spec.default)
        values = tuple(value) if spec.is_list else (value,)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                spec.low <= v <= spec.high
            ):
                raise ValueError(
                    f"schedule {name!r}: {spec.name} must be in [{spec.low:g}, {spec.high:g}]"
                    f" ({spec.help}), but got {spec.name}={value!r}."
                )
        out[spec.name] = tuple(float(v) for v in values) if spec.is_list else float(value)
    return out


def build_lr_lambda(
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float = 0.0,
) -> LrLambda:
    """The factor of the base learning rate at each optimizer update, warm-up included.

    Args:
        name: a registered schedule.
        params: its parameters (defaults where missing); durations are in epochs.
        steps_per_epoch: optimizer updates per epoch.
        epochs: length of the run; the decay phase spans what is left after warm-up.
        warmup_epochs: linear warm-up length in epochs (0 for none).
    """
    info = get_schedule_info(name)
    values = validate_schedule_params(name, params or {})
    total = max(1, epochs * steps_per_epoch)
    warmup_steps = round(warmup_epochs * steps_per_epoch) if warmup_epochs > 0 else 0
    after = info.make(
        total_steps=max(1, total - warmup_steps), steps_per_epoch=steps_per_epoch, **values
    )
    if warmup_steps == 0:
        return after
    return functools.partial(warmup_factor, warmup_steps=warmup_steps, after=after)


def create_scheduler(
    optimizer: torch.optim.Optimizer, lr_lambda: LrLambda
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` to step once per optimizer update."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
