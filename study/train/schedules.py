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
- ``cosine_restarts``, ``triangular``, ``triangular2``, ``exp_range``: cycles that start
  where warm-up ends, their periods counted from there. Warm-up rises to where the shape
  starts: the full rate for ``cosine_restarts``, ``base_ratio`` x the rate for the cyclic
  three (their first half-cycle then climbs on to the full rate).
- ``one_cycle`` has its own warm-up (``pct_start`` of the run, rising from
  ``lr / div_factor`` to ``lr``): it takes no ``warmup_epochs``.
- ``plateau``: warm-up composes as onto ``constant``; its reductions are multiplied on top.

The configured learning rate ``lr`` is always the highest rate a schedule reaches (every
factor is at most 1): the peak of ``cosine_restarts``, the cyclic ones (torch's ``max_lr``;
their lowest rate, torch's ``base_lr``, is ``base_ratio x lr``) and ``one_cycle`` (torch's
``max_lr``). So a learning-rate axis means the same under every schedule.

``one_cycle`` also schedules the momentum (``momentum``, or ``beta1`` of an optimizer with
betas), inversely to its learning rate, in every parameter group, as ``OneCycleLR`` does; it
replaces the configured momentum or beta1. :func:`build_momentum_fn` gives that pure
function; an optimizer without momentum or betas keeps only the learning-rate schedule.

``plateau`` (``ReduceLROnPlateau``, mode ``max``) is no function of the update number: it
reads the evaluated accuracy after each epoch. :func:`build_epoch_hook` gives its small
state, :class:`ReduceOnPlateau`, which says by how much to multiply the learning rate, and
:func:`scale_lr` applies that to the ``LambdaLR``.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from study.train.registry import Registry

__all__ = [
    "batch_factor",
    "build_batch_factor",
    "ScheduleParam",
    "ScheduleInfo",
    "register",
    "list_schedules",
    "get_schedule_info",
    "validate_schedule_params",
    "build_lr_lambda",
    "build_momentum_fn",
    "build_epoch_hook",
    "create_scheduler",
    "scale_lr",
    "EpochHook",
    "ReduceOnPlateau",
    "constant_factor",
    "step_factor",
    "multistep_factor",
    "exponential_factor",
    "cosine_factor",
    "linear_factor",
    "cosine_restarts_factor",
    "cyclic_factor",
    "one_cycle_factor",
    "one_cycle_momentum",
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


def cosine_restarts_factor(step: int, *, period: int, period_mult: int, floor: float) -> float:
    """Half-cosine from 1 to ``floor`` that restarts at 1 every period, each period
    ``period_mult`` times the one before (SGDR; ``CosineAnnealingWarmRestarts``)."""
    # 1. equal periods: where in its period the update falls
    if period_mult == 1:
        pos = step % period
    # 2. growing periods: skip the whole ones before it (a few: they grow geometrically)
    else:
        pos = step
        while pos >= period:
            pos -= period
            period *= period_mult
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * pos / period))


def cyclic_factor(
    step: int, *, step_size: int, base_ratio: float, mode: str, gamma: float = 1.0
) -> float:
    """Up from ``base_ratio`` to 1 in ``step_size`` updates and back down, over and over
    (``CyclicLR`` with ``max_lr`` = 1, ``base_lr`` = ``base_ratio``, symmetric cycles).

    ``mode``: ``"triangular"`` (every cycle reaches 1), ``"triangular2"`` (the height above
    the base halves every cycle) or ``"exp_range"`` (the height is multiplied by ``gamma``
    every update).
    """
    # 1. the triangle: 0 at a cycle's start and end, 1 at its middle
    cycle, pos = divmod(step, 2 * step_size)
    height = 1.0 - abs(pos - step_size) / step_size
    # 2. how high this cycle reaches
    if mode == "triangular2":
        height *= 0.5**cycle
    elif mode == "exp_range":
        height *= gamma**step
    return base_ratio + (1.0 - base_ratio) * height


def _one_cycle_phase(step: int, *, rise_end: float, total_steps: int) -> tuple[bool, float]:
    """(rising?, progress in [0, 1] through that phase), as ``OneCycleLR`` counts them."""
    if step <= rise_end:
        return True, step / rise_end
    return False, min(1.0, (step - rise_end) / max(1.0, total_steps - 1 - rise_end))


def _cos_between(start: float, end: float, progress: float) -> float:
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def one_cycle_factor(
    step: int, *, rise_end: float, total_steps: int, div_factor: float, final_div_factor: float
) -> float:
    """Cosine up from ``1 / div_factor`` to 1 until update ``rise_end``, then cosine down to
    ``1 / (div_factor * final_div_factor)`` at update ``total_steps - 1`` (``OneCycleLR``)."""
    rising, progress = _one_cycle_phase(step, rise_end=rise_end, total_steps=total_steps)
    initial = 1.0 / div_factor
    # 1. its own warm-up: from lr / div_factor up to lr
    if rising:
        return _cos_between(initial, 1.0, progress)
    # 2. the annealing: down to lr / (div_factor * final_div_factor), held after the run
    return _cos_between(1.0, initial / final_div_factor, progress)


def one_cycle_momentum(
    step: int, *, rise_end: float, total_steps: int, base_momentum: float, max_momentum: float
) -> float:
    """The momentum (or beta1) of ``one_cycle``: the inverse of its learning rate, from
    ``max_momentum`` down to ``base_momentum`` at the peak rate, then back up."""
    rising, progress = _one_cycle_phase(step, rise_end=rise_end, total_steps=total_steps)
    if rising:
        return _cos_between(max_momentum, base_momentum, progress)
    return _cos_between(base_momentum, max_momentum, progress)


def warmup_factor(
    step: int,
    *,
    warmup_steps: int,
    after: LrLambda,
    from_start: bool = False,
    target: float = 1.0,
) -> float:
    """Linear warm-up over ``warmup_steps`` updates up to ``target``, then ``after``.

    ``after`` is called with its own step, counted from the end of warm-up (a shape that
    spans the rest of the run), or with ``from_start`` the run's update index (decay points
    given as epochs of the run, which warm-up must not move). ``target`` is where the shape
    starts (1, or ``base_ratio`` for a cyclic one), so warm-up meets it without a jump.
    """
    # 1. warm-up: rises linearly, never exactly 0 at step 0, the target at its last step
    if step < warmup_steps:
        return target * (step + 1) / warmup_steps
    # 2. milestones: where the user put them, counted from the start of training
    if from_start:
        return after(step)
    # 3. a shape: starts at its own step 0 where warm-up ends
    return after(step - warmup_steps)


# --- epoch-level state: what no function of the update index can know -------------------


class EpochHook(Protocol):
    """Reads each epoch's evaluated accuracy; returns the factor to multiply the learning
    rate by from the next update on (1.0: leave it)."""

    def step(self, accuracy: float) -> float: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class ReduceOnPlateau:
    """Multiply the rate by ``factor`` once the accuracy has not improved for more than
    ``patience`` evaluations in a row (``ReduceLROnPlateau(mode="max")``, relative
    ``threshold``, no cooldown, no minimum rate).

    An evaluation improves when it beats the best so far by more than ``threshold`` x best.
    After a reduction the count starts afresh, so with no further improvement the rate is
    reduced again every ``patience + 1`` evaluations.
    """

    def __init__(self, *, factor: float, patience: int, threshold: float) -> None:
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.best = -math.inf
        self.bad_epochs = 0

    def step(self, accuracy: float) -> float:
        """Take one evaluation's accuracy; return ``factor`` when it is time to reduce,
        else 1.0."""
        # 1. an improvement resets the count
        if accuracy > self.best * (1.0 + self.threshold):
            self.best, self.bad_epochs = accuracy, 0
            return 1.0
        # 2. one more without: reduce once they outnumber patience, then count afresh
        self.bad_epochs += 1
        if self.bad_epochs <= self.patience:
            return 1.0
        self.bad_epochs = 0
        return self.factor

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps to resume it (its parameters come from the config)."""
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


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
    integer: bool = False


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

    ``composes_warmup``: false for a schedule with a warm-up of its own (``one_cycle``);
    ``warmup_epochs > 0`` is then an error. ``make_momentum``, called like ``make``, returns
    the momentum (or beta1) as a function of the update index, or ``None`` where the
    parameters turn it off; only a schedule that takes no warm-up has one. ``make_epoch_hook``
    receives the parameters and returns the schedule's :class:`EpochHook`. ``check`` returns
    what is wrong with a combination of parameters (``None``: nothing).
    ``make_batch_factor`` (a batch-size schedule) receives the parameters and returns the
    multiple of the configured batch size to train each epoch with (by 0-based epoch).
    """

    name: str
    description: str
    make: Callable[..., LrLambda]
    params: tuple[ScheduleParam, ...] = ()
    first_decay: Callable[[Mapping[str, Any]], tuple[str, float]] | None = None
    composes_warmup: bool = True
    make_momentum: Callable[..., LrLambda | None] | None = None
    make_epoch_hook: Callable[..., EpochHook] | None = None
    check: Callable[[Mapping[str, Any]], str | None] | None = None
    make_batch_factor: Callable[..., Callable[[int], int]] | None = None

    def __post_init__(self) -> None:
        if self.make_momentum is not None and self.composes_warmup:
            raise ValueError(
                f"schedule {self.name!r}: a momentum schedule needs composes_warmup=False"
                " (warm-up would shift the learning rate but not the momentum)."
            )

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


def _make_cosine_restarts(
    *, total_steps: int, steps_per_epoch: int, period_epochs: float, period_mult: float,
    floor: float,
) -> LrLambda:
    return functools.partial(
        cosine_restarts_factor, period=_epochs_to_steps(period_epochs, steps_per_epoch),
        period_mult=int(period_mult), floor=floor,
    )


def _make_cyclic(mode: str) -> Callable[..., LrLambda]:
    def make(
        *, total_steps: int, steps_per_epoch: int, step_epochs: float, base_ratio: float,
        gamma: float = 1.0,
    ) -> LrLambda:
        # gamma is given per epoch, as for exponential; CyclicLR's is per update
        return functools.partial(
            cyclic_factor, step_size=_epochs_to_steps(step_epochs, steps_per_epoch),
            base_ratio=base_ratio, mode=mode, gamma=gamma ** (1.0 / steps_per_epoch),
        )

    return make


def _one_cycle_rise_end(total_steps: int, pct_start: float) -> float:
    # OneCycleLR's last rising update (a float, as torch computes it), at least 1
    return max(1.0, pct_start * total_steps - 1)


def _make_one_cycle(
    *, total_steps: int, steps_per_epoch: int, pct_start: float, div_factor: float,
    final_div_factor: float, **momentum: float,
) -> LrLambda:
    return functools.partial(
        one_cycle_factor, rise_end=_one_cycle_rise_end(total_steps, pct_start),
        total_steps=total_steps, div_factor=div_factor, final_div_factor=final_div_factor,
    )


def _make_one_cycle_momentum(
    *, total_steps: int, steps_per_epoch: int, pct_start: float, cycle_momentum: float,
    base_momentum: float, max_momentum: float, **lr: float,
) -> LrLambda | None:
    if not cycle_momentum:
        return None
    return functools.partial(
        one_cycle_momentum, rise_end=_one_cycle_rise_end(total_steps, pct_start),
        total_steps=total_steps, base_momentum=base_momentum, max_momentum=max_momentum,
    )


def _check_one_cycle(params: Mapping[str, Any]) -> str | None:
    low, high = params["base_momentum"], params["max_momentum"]
    if low <= high:
        return None
    return (
        f"base_momentum (at the peak rate) must be <= max_momentum (at the lowest), but"
        f" got base_momentum={low!r}, max_momentum={high!r}; swap them"
    )


def _make_plateau(*, total_steps: int, steps_per_epoch: int, **hook: float) -> LrLambda:
    # the base throughout; its reductions come from its epoch hook
    return constant_factor


def _make_plateau_hook(*, factor: float, patience: float, threshold: float) -> EpochHook:
    return ReduceOnPlateau(factor=factor, patience=int(patience), threshold=threshold)


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
def batch_factor(epoch: int, *, milestones: Sequence[float], gamma: float) -> int:
    """The batch size's multiple in 0-based ``epoch``: ``round(1 / gamma)`` to the power of
    the milestones passed (Smith et al. 2017: instead of dividing the learning rate by
    ``1 / gamma`` at a milestone, multiply the batch size by it)."""
    return round(1.0 / gamma) ** sum(epoch >= m for m in milestones)


def _make_held(*, total_steps: int, steps_per_epoch: int, **batch_params: Any) -> LrLambda:
    return constant_factor  # the batch size moves instead (make_batch_factor)


def _make_batch_factor(*, milestones: Sequence[float], gamma: float) -> Callable[[int], int]:
    return functools.partial(batch_factor, milestones=tuple(milestones), gamma=gamma)


register(ScheduleInfo(
    "batch_multistep",
    "the learning rate held; the batch size multiplied by round(1/gamma) at each milestone "
    "epoch instead (Smith et al. 2017, 'Don't decay the learning rate, increase the batch "
    "size'); the batch size in effect is recorded per epoch",
    _make_held,
    (
        ScheduleParam(
            "milestones", (6.0, 11.0), 0.0, 1e6,
            "epochs from the start of training at which the batch size grows", True,
        ),
        ScheduleParam("gamma", 0.2, 0.01, 0.5,
                      "the learning-rate factor it replaces: the batch grows round(1/gamma)x"),
    ),
    first_decay=_first_milestone,
    make_batch_factor=_make_batch_factor,
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
register(ScheduleInfo(
    "cosine_restarts",
    "half-cosine from the base down to floor x base, restarting at the base every period,"
    " each period period_mult times the last (SGDR, CosineAnnealingWarmRestarts)",
    _make_cosine_restarts,
    (
        ScheduleParam("period_epochs", 1.0, 1e-3, 1e6, "epochs of the first period (T_0)"),
        ScheduleParam(
            "period_mult", 2.0, 1.0, 10.0, "each period's length over the last (T_mult)",
            integer=True,
        ),
        _FLOOR,
    ),
))
_STEP_EPOCHS = ScheduleParam(
    "step_epochs", 2.0, 1e-3, 1e6, "epochs of each half-cycle, base to peak (step_size_up)"
)
_BASE_RATIO = ScheduleParam(
    "base_ratio", 0.1, 1e-4, 1.0, "the lowest rate as a fraction of lr (base_lr / max_lr)"
)
register(ScheduleInfo(
    "triangular",
    "linearly from base_ratio x base up to the base and back, every 2 x step_epochs"
    " (CyclicLR mode triangular)",
    _make_cyclic("triangular"),
    (_STEP_EPOCHS, _BASE_RATIO),
))
register(ScheduleInfo(
    "triangular2",
    "as triangular, the height above the lowest rate halved every cycle"
    " (CyclicLR mode triangular2)",
    _make_cyclic("triangular2"),
    (_STEP_EPOCHS, _BASE_RATIO),
))
register(ScheduleInfo(
    "exp_range",
    "as triangular, the height above the lowest rate multiplied by gamma every epoch,"
    " smoothly per update (CyclicLR mode exp_range)",
    _make_cyclic("exp_range"),
    (
        _STEP_EPOCHS,
        _BASE_RATIO,
        ScheduleParam("gamma", 0.7, 1e-4, 1.0, "factor of the height per epoch"),
    ),
))
register(ScheduleInfo(
    "one_cycle",
    "cosine up from base / div_factor to the base over pct_start of the run, then down to"
    " base / (div_factor x final_div_factor); momentum or beta1 the other way (OneCycleLR)",
    _make_one_cycle,
    (
        ScheduleParam("pct_start", 0.3, 0.01, 0.99, "fraction of the run spent rising"),
        ScheduleParam("div_factor", 25.0, 1.0, 1e4, "the base over the starting rate"),
        ScheduleParam("final_div_factor", 1e4, 1.0, 1e6, "the starting rate over the final rate"),
        ScheduleParam(
            "cycle_momentum", 1.0, 0.0, 1.0,
            "1: cycle momentum/beta1 inversely to the rate, 0: keep the configured one",
            integer=True,
        ),
        ScheduleParam("base_momentum", 0.85, 0.0, 0.999, "momentum or beta1 at the peak rate"),
        ScheduleParam(
            "max_momentum", 0.95, 0.0, 0.999,
            "momentum or beta1 at the start and the end of the run",
        ),
    ),
    composes_warmup=False,
    make_momentum=_make_one_cycle_momentum,
    check=_check_one_cycle,
))
register(ScheduleInfo(
    "plateau",
    "the base, multiplied by factor whenever the evaluated accuracy has not improved for"
    " more than patience epochs (ReduceLROnPlateau, mode max)",
    _make_plateau,
    (
        ScheduleParam("factor", 0.1, 1e-3, 1.0, "factor applied at each reduction"),
        ScheduleParam(
            "patience", 1.0, 0.0, 1e6,
            "epochs without improvement tolerated before a reduction", integer=True,
        ),
        ScheduleParam(
            "threshold", 1e-4, 0.0, 1.0,
            "relative gain over the best accuracy that counts as an improvement",
        ),
    ),
    make_epoch_hook=_make_plateau_hook,
))


def validate_schedule_params(
    name: str, params: Mapping[str, Any], *, warmup_epochs: float = 0.0
) -> dict[str, Any]:
    """Check ``params`` against schedule ``name`` and fill in defaults.

    Args:
        name: a registered schedule.
        params: its parameters; missing ones take their defaults.
        warmup_epochs: the warm-up composed onto it; a schedule that counts epochs from the
            start of training must not place a decay inside it, and one with a warm-up of
            its own (``one_cycle``) takes none.

    Returns:
        A new dict with every parameter of the schedule (lists as tuples).

    Raises:
        ValueError: unknown schedule, unknown parameter, a value out of range (or not a
            whole number where one is needed), parameters that contradict each other, a
            decay point inside the warm-up, or a warm-up for a schedule that has its own;
            the message names the parameter, the value and the allowed range or the fix.
    """
    info = get_schedule_info(name)
    known = {p.name: p for p in info.params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        allowed = ", ".join(known) or "none"
        raise ValueError(
            f"schedule {name!r} takes no parameter {unknown[0]!r}; its parameters: {allowed}."
        )
    out = {spec.name: _checked_value(name, spec, params.get(spec.name, spec.default))
           for spec in info.params}
    problem = info.check(out) if info.check is not None else None
    if problem:
        raise ValueError(f"schedule {name!r}: {problem}.")
    _check_warmup(info, params, out, warmup_epochs)
    return out


def _checked_value(name: str, spec: ScheduleParam, value: Any) -> float | tuple[float, ...]:
    """``value`` of parameter ``spec`` of schedule ``name`` as a float (a tuple of floats for
    a list), once every number is in range (and whole where it must be)."""
    values = tuple(value) if spec.is_list else (value,)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
            spec.low <= v <= spec.high
        ):
            raise ValueError(
                f"schedule {name!r}: {spec.name} must be in [{spec.low:g}, {spec.high:g}]"
                f" ({spec.help}), but got {spec.name}={value!r}."
            )
        if spec.integer and v != int(v):
            raise ValueError(
                f"schedule {name!r}: {spec.name} must be a whole number in"
                f" [{spec.low:g}, {spec.high:g}] ({spec.help}), but got"
                f" {spec.name}={value!r}."
            )
    return tuple(float(v) for v in values) if spec.is_list else float(value)


def _check_warmup(
    info: ScheduleInfo, params: Mapping[str, Any], out: Mapping[str, Any], warmup_epochs: float
) -> None:
    """A warm-up composes onto schedule ``info`` (checked parameters ``out``, as given
    ``params``): it has no warm-up of its own and places no decay inside it."""
    name = info.name
    if not info.composes_warmup and warmup_epochs > 0:
        raise ValueError(
            f"schedule {name!r} has a warm-up of its own, so it takes no warmup_epochs, but"
            f" got warmup_epochs={warmup_epochs!r}; set warmup_epochs=0 (its pct_start is"
            f" the fraction of the run spent rising)."
        )
    if info.first_decay is not None and warmup_epochs > 0:
        param, epoch = info.first_decay(out)
        if epoch < warmup_epochs:
            raise ValueError(
                f"schedule {name!r} counts epochs from the start of training, so"
                f" {param}={params.get(param, out[param])!r} puts a decay at epoch {epoch:g},"
                f" inside the warm-up (warmup_epochs={warmup_epochs!r}); give {param} >= "
                f"{warmup_epochs:g} or warmup_epochs <= {epoch:g}."
            )


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
    # warm-up meets a shape where it starts (a cyclic one at base_ratio); decay points
    # counted from the start of training are not a shape: warm-up rises to the base rate
    start = 1.0 if info.counts_from_start else after(0)
    extra = {} if math.isclose(start, 1.0) else {"target": start}
    return functools.partial(
        warmup_factor, warmup_steps=warmup_steps, after=after,
        from_start=info.counts_from_start, **extra,
    )


def build_momentum_fn(
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    steps_per_epoch: int,
    epochs: int,
) -> LrLambda | None:
    """The momentum (or beta1) to set in every parameter group at each optimizer update,
    or ``None`` where the schedule leaves the optimizer's own (every schedule but
    ``one_cycle`` with ``cycle_momentum=1``).

    Args:
        name: a registered schedule.
        params: its parameters (defaults where missing).
        steps_per_epoch: optimizer updates per epoch.
        epochs: length of the run.

    Raises:
        ValueError: as :func:`validate_schedule_params`.
    """
    return _make_optional(
        name, params, "make_momentum",
        total_steps=max(1, epochs * steps_per_epoch), steps_per_epoch=steps_per_epoch,
    )


def build_epoch_hook(name: str, params: Mapping[str, Any] | None = None) -> EpochHook | None:
    """A fresh :class:`EpochHook` for one run of schedule ``name`` (``plateau``), or
    ``None`` for a schedule that is a function of the update index alone.

    Raises:
        ValueError: as :func:`validate_schedule_params`.
    """
    return _make_optional(name, params, "make_epoch_hook")


def build_batch_factor(
    name: str, params: Mapping[str, Any] | None = None
) -> Callable[[int], int] | None:
    """The multiple of the batch size per 0-based epoch for a batch-size schedule
    (``batch_multistep``), or ``None`` for one that keeps the batch size.

    Raises:
        ValueError: as :func:`validate_schedule_params`.
    """
    return _make_optional(name, params, "make_batch_factor")


def _make_optional(
    name: str, params: Mapping[str, Any] | None, maker: str, **sizes: int
) -> Any:
    """What the field ``maker`` of schedule ``name`` makes from its checked parameters (and
    ``sizes``), or ``None`` for a schedule without one."""
    values = validate_schedule_params(name, params or {})
    make = getattr(get_schedule_info(name), maker)
    return None if make is None else make(**sizes, **values)


def create_scheduler(
    optimizer: torch.optim.Optimizer, lr_lambda: LrLambda
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` to step once per optimizer update."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def scale_lr(scheduler: torch.optim.lr_scheduler.LambdaLR, factor: float) -> None:
    """Multiply the rates ``scheduler`` gives by ``factor`` from the next update on: the
    current ones and those of every later step (an :class:`EpochHook`'s reduction)."""
    scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
    for group in scheduler.optimizer.param_groups:
        group["lr"] *= factor
