"""Learning-rate schedule registry; linear warm-up composes onto any of them.

A schedule is a pure function of the optimizer-update index returning a factor of the base
learning rate, with its constants keyword-only and bound with :func:`functools.partial`
(picklable, trivially testable). It is stepped once per optimizer update through
``torch.optim.lr_scheduler.LambdaLR``; parameters given in epochs are converted to updates.

How each schedule counts its epochs when a warm-up of ``W`` epochs is composed onto it (the
warm-up rises linearly over the first ``W`` epochs in every case):

- ``constant``: the base rate once warm-up ends.
- ``step`` and ``multistep``: decay points are epochs of the run, counted from the start of
  training, as torch's ``StepLR``/``MultiStepLR`` stepped once per epoch count them. A
  milestone ``m`` (or a multiple ``m`` of ``step_epochs``) multiplies the rate by ``gamma``
  from the first update of 0-based epoch ``m``: the lab's milestones 6 and 11 decay before
  its 7th and 12th epochs, warm-up or not. Warm-up covers the first epochs and moves no
  decay point; a decay point inside the warm-up (``m < W``) is an error, raised by
  :func:`validate_schedule_params` (and so by ``TrialConfig``).
- ``exponential``, ``cosine``, ``linear``: shapes that start where warm-up ends.
  ``exponential`` applies ``gamma`` per epoch counted from the end of warm-up; ``cosine``
  and ``linear`` span the updates left after warm-up and reach ``floor`` at the end of the
  run.
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


def warmup_factor(
    step: int, *, warmup_steps: int, after: LrLambda, from_start: bool = False
) -> float:
    """Linear warm-up over ``warmup_steps`` updates, then ``after``.

    ``after`` is called with its own step, counted from the end of warm-up (a shape that
    spans the rest of the run), or with ``from_start`` the run's update index (decay points
    given as epochs of the run, which warm-up must not move).
    """
    # 1. warm-up: rises linearly, never exactly 0 at step 0, the full rate at its last step
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    # 2. milestones: where the user put them, counted from the start of training
    if from_start:
        return after(step)
    # 3. a shape: starts at its own step 0 where warm-up ends
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

    ``first_decay`` is set for a schedule whose decay points are epochs of the run, counted
    from the start of training (``step``, ``multistep``): given the checked parameters it
    returns the parameter that places the first decay and that epoch. ``None``: the shape
    starts where warm-up ends (or never decays).
    """

    name: str
    description: str
    make: Callable[..., LrLambda]
    params: tuple[ScheduleParam, ...] = ()
    first_decay: Callable[[Mapping[str, Any]], tuple[str, float]] | None = None

    @property
    def counts_from_start(self) -> bool:
        """Whether its decay points count epochs from the start of training."""
        return self.first_decay is not None


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
    # Milestone m is the first update of 0-based epoch m; 0 decays from the first update,
    # as MultiStepLR([0]) does.
    updates = tuple(sorted(round(m * steps_per_epoch) for m in milestones))
    return functools.partial(multistep_factor, milestones=updates, gamma=gamma)


def _make_exponential(*, total_steps: int, steps_per_epoch: int, gamma: float) -> LrLambda:
    # gamma is given per epoch, as torch's ExponentialLR stepped per epoch would apply it.
    return functools.partial(exponential_factor, gamma=gamma ** (1.0 / steps_per_epoch))


def _make_cosine(*, total_steps: int, steps_per_epoch: int, floor: float) -> LrLambda:
    return functools.partial(cosine_factor, total_steps=total_steps, floor=floor)


def _make_linear(*, total_steps: int, steps_per_epoch: int, floor: float) -> LrLambda:
    return functools.partial(linear_factor, total_steps=total_steps, floor=floor)


def _first_step_decay(params: Mapping[str, Any]) -> tuple[str, float]:
    return "step_epochs", params["step_epochs"]


def _first_milestone(params: Mapping[str, Any]) -> tuple[str, float]:
    return "milestones", min(params["milestones"], default=math.inf)


_GAMMA = ScheduleParam("gamma", 0.1, 1e-4, 1.0, "factor applied at each decay")
_FLOOR = ScheduleParam("floor", 0.0, 0.0, 1.0, "final learning rate as a fraction of the base")

register(ScheduleInfo("constant", "the base learning rate throughout", _make_constant))
register(ScheduleInfo(
    "step",
    "multiply by gamma every step_epochs epochs of the run (StepLR)",
    _make_step,
    (ScheduleParam("step_epochs", 2.0, 1e-3, 1e6, "epochs between decays"), _GAMMA),
    first_decay=_first_step_decay,
))
register(ScheduleInfo(
    "multistep",
    "multiply by gamma at each milestone epoch of the run (MultiStepLR; the lab uses 6, 11)",
    _make_multistep,
    (
        ScheduleParam(
            "milestones", (6.0, 11.0), 0.0, 1e6,
            "epochs from the start of training at which to decay", True,
        ),
        _GAMMA,
    ),
    first_decay=_first_milestone,
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


def validate_schedule_params(
    name: str, params: Mapping[str, Any], *, warmup_epochs: float = 0.0
) -> dict[str, Any]:
    """Check ``params`` against schedule ``name`` and fill in defaults.

    Args:
        name: a registered schedule.
        params: its parameters; missing ones take their defaults.
        warmup_epochs: the warm-up composed onto it; a schedule that counts epochs from the
            start of training must not place a decay inside it.

    Returns:
        A new dict with every parameter of the schedule (lists as tuples).

    Raises:
        ValueError: unknown schedule, unknown parameter, a value out of range, or a decay
            point inside the warm-up; the message names the parameter, the value and the
            allowed range or the fix.
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
    if info.first_decay is not None and warmup_epochs > 0:
        param, epoch = info.first_decay(out)
        if epoch < warmup_epochs:
            raise ValueError(
                f"schedule {name!r} counts epochs from the start of training, so"
                f" {param}={params.get(param, out[param])!r} puts a decay at epoch {epoch:g},"
                f" inside the warm-up (warmup_epochs={warmup_epochs!r}); give {param} >= "
                f"{warmup_epochs:g} or warmup_epochs <= {epoch:g}."
            )
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
        epochs: length of the run; a shape (cosine, linear) spans what is left after
            warm-up, decay points (step, multistep) count epochs from the start.
        warmup_epochs: linear warm-up length in epochs (0 for none).

    Raises:
        ValueError: as :func:`validate_schedule_params`.
    """
    info = get_schedule_info(name)
    values = validate_schedule_params(name, params or {}, warmup_epochs=warmup_epochs)
    total = max(1, epochs * steps_per_epoch)
    warmup_steps = round(warmup_epochs * steps_per_epoch) if warmup_epochs > 0 else 0
    after = info.make(
        total_steps=max(1, total - warmup_steps), steps_per_epoch=steps_per_epoch, **values
    )
    if warmup_steps == 0:
        return after
    return functools.partial(
        warmup_factor, warmup_steps=warmup_steps, after=after,
        from_start=info.counts_from_start,
    )


def create_scheduler(
    optimizer: torch.optim.Optimizer, lr_lambda: LrLambda
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` to step once per optimizer update."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
