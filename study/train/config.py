"""``TrialConfig``: the one currency between a search space and training.

It belongs to training and validates against the optimizer and schedule registries beside
it; a search space builds one, ``study.train.loop.fit`` consumes one. Importing it loads torch
(through the registries) but never Optuna.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from study.train.optim import HPARAMS, get_optimizer_info, is_number
from study.train.schedules import LrLambda, build_lr_lambda, validate_schedule_params

__all__ = ["TrialConfig", "ConfigError", "PRECISIONS"]

#: Numeric precisions of the forward and backward pass: ``bf16`` is autocast to bfloat16
#: with float32 master weights, optimizer state and loss.
PRECISIONS = ("fp32", "bf16")


class ConfigError(ValueError):
    """A ``TrialConfig`` field holds a value outside its allowed range."""


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class TrialConfig:
    """Everything one training run needs, validated on construction.

    Hyperparameters that do not apply to the chosen optimizer stay ``None`` (momentum for
    Adam, betas for SGD); ``None`` also means "the optimizer's own default".

    Args:
        optimizer: a name from ``study.train.optim.list_optimizers()``.
        lr: base learning rate (> 0).
        momentum: momentum in [0, 1) (SGD, RMSprop, the lab's SGD).
        nesterov: Nesterov momentum (SGD, needs momentum > 0).
        dampening: SGD's dampening in [0, 1): the buffer adds ``(1 - dampening) * grad``;
            needs momentum > 0 and no Nesterov (torch's rule).
        beta1, beta2: moment decay rates in [0, 1) (Adam, AdamW, NAdam, RAdam, Adamax).
        alpha: RMSprop's squared-gradient decay in [0, 1).
        centered: RMSprop divides by the gradient's variance instead of its second moment.
        weight_decay: >= 0; 0 for optimizers without weight decay.
        no_decay_1d: exempt biases (1-d parameters) from weight decay (timm's default); the
            lab decays every parameter (``False``).
        head_lr_mult: the output layer's learning rate as a multiple of ``lr`` (> 0; the
            lab's second param group, ``model.layers[6:]``); ``None``: the same as the body.
            Schedules scale both rates by the same factor.
        head_weight_decay: the output layer's weight decay (>= 0); ``None``: ``weight_decay``.
        schedule: a name from ``study.train.schedules.list_schedules()``.
        schedule_params: that schedule's parameters (durations in epochs); defaults filled in.
            Milestones (``multistep``) and ``step_epochs`` count epochs from the start of
            training, warm-up included, and must not fall inside the warm-up.
        warmup_epochs: linear warm-up length in epochs, in [0, epochs); composed onto the
            schedule (see ``study.train.schedules`` for how each one counts its epochs).
        batch_size: examples per optimizer update (>= 1).
        epochs: passes over the training set (>= 1).
        seed: seeds weight initialisation, dropout and the batch order (>= 0).
        precision: ``"fp32"``, or ``"bf16"`` (forward and backward autocast to bfloat16,
            float32 master weights, optimizer state and loss).

    Raises:
        ConfigError: a field out of range; the message names the field, the value and the
            allowed values.
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float | None = None
    nesterov: bool = False
    dampening: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    alpha: float | None = None
    centered: bool = False
    weight_decay: float = 0.0
    no_decay_1d: bool = True
    head_lr_mult: float | None = None
    head_weight_decay: float | None = None
    schedule: str = "constant"
    schedule_params: Mapping[str, Any] = field(default_factory=dict)
    warmup_epochs: float = 0.0
    batch_size: int = 64
    epochs: int = 5
    seed: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        try:
            info = get_optimizer_info(self.optimizer)
        except ValueError as exc:
            raise ConfigError(f"optimizer: {exc}") from None
        try:
            info.check_hparams(**self.optimizer_hparams())
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        _check(
            isinstance(self.epochs, int) and not isinstance(self.epochs, bool)
            and self.epochs >= 1,
            f"epochs must be an integer >= 1, but got epochs={self.epochs!r}.",
        )
        _check(
            is_number(self.warmup_epochs) and 0 <= self.warmup_epochs < self.epochs,
            f"warmup_epochs must be in [0, epochs={self.epochs}), but got"
            f" warmup_epochs={self.warmup_epochs!r}.",
        )
        try:
            params = validate_schedule_params(
                self.schedule, self.schedule_params, warmup_epochs=self.warmup_epochs
            )
        except ValueError as exc:
            raise ConfigError(f"schedule: {exc}") from None
        object.__setattr__(self, "schedule_params", params)
        _check(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            f"batch_size must be an integer >= 1, but got batch_size={self.batch_size!r}.",
        )
        _check(
            isinstance(self.seed, int) and self.seed >= 0,
            f"seed must be an integer >= 0, but got seed={self.seed!r}.",
        )
        _check(
            self.precision in PRECISIONS,
            f"precision must be one of {', '.join(PRECISIONS)}, but got"
            f" precision={self.precision!r}.",
        )

    def optimizer_hparams(self) -> dict[str, Any]:
        """The keyword arguments of ``study.train.optim.create_optimizer`` this config sets."""
        return {name: getattr(self, name) for name in HPARAMS}

    def lr_lambda(self, steps_per_epoch: int) -> LrLambda:
        """The factor of ``lr`` at each optimizer update of this run, with
        ``steps_per_epoch`` updates an epoch: its schedule, warm-up included."""
        return build_lr_lambda(
            self.schedule,
            self.schedule_params,
            steps_per_epoch=steps_per_epoch,
            epochs=self.epochs,
            warmup_epochs=self.warmup_epochs,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists for tuples), as stored in the study database."""
        out = dataclasses.asdict(self)
        out["schedule_params"] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in self.schedule_params.items()
        }
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"unknown TrialConfig field {unknown[0]!r}; fields: {', '.join(sorted(names))}."
            )
        return cls(**data)

    def replace(self, **changes: Any) -> TrialConfig:
        """A copy with ``changes`` applied (validated again). Another ``schedule`` without
        ``schedule_params`` starts from that schedule's defaults."""
        if changes.get("schedule", self.schedule) != self.schedule:
            changes.setdefault("schedule_params", {})
        return dataclasses.replace(self, **changes)
