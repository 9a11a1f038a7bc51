"""Optimizer registry, weight-decay param groups and the lab's hand-written momentum SGD.

An optimizer is a registered, frozen :class:`OptimInfo` (timm style): its capability flags
(``has_momentum``, ``has_betas``, ...) decide which hyperparameters it takes, so building any
optimizer from a config is one code path. Adding an optimizer is one :func:`register` call.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from study.registry import Registry

__all__ = [
    "OptimInfo",
    "LabMomentumSGD",
    "register",
    "get_optimizer_info",
    "list_optimizers",
    "param_groups_weight_decay",
    "create_optimizer",
]


class LabMomentumSGD(torch.optim.Optimizer):
    """The lab's ``SGD_Alternate``: momentum SGD written by hand, no weight decay.

    ``M <- momentum * M + lr * grad`` then ``theta <- theta - M``. With a constant learning
    rate this is the same trajectory as ``torch.optim.SGD(momentum=m, dampening=0)``.
    """

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9) -> None:
        if lr <= 0:
            raise ValueError(f"LabMomentumSGD needs lr > 0, but got {lr=}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"LabMomentumSGD needs 0 <= momentum < 1, but got {momentum=}.")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: D401 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                buf = state.get("momentum_buffer")
                if buf is None:
                    # First step: no history yet, the buffer is the scaled gradient.
                    buf = state["momentum_buffer"] = param.grad * group["lr"]
                else:
                    buf.mul_(group["momentum"]).add_(param.grad, alpha=group["lr"])
                param.sub_(buf)
        return loss


@dataclass(frozen=True)
class OptimInfo:
    """One registered optimizer and what it takes.

    Args:
        name: registry key (lower case), used on the command line and in the study database.
        opt_class: the ``torch.optim.Optimizer`` subclass.
        description: one line for ``--help`` and the docs.
        default_lr: the learning rate torch uses when none is given (the lab's "defaults").
            The ranges a study searches belong to its search space, not to the optimizer.
        has_momentum / has_nesterov / has_betas / has_alpha / has_weight_decay: which
            hyperparameters the optimizer accepts; a config setting one it lacks is rejected.
        decoupled_weight_decay: weight decay is applied to the weights, not added to the
            gradient (AdamW).
        has_fused: torch has a fused implementation (one kernel for the whole update, on CPU
            and CUDA); :func:`create_optimizer` uses it.
        defaults: fixed extra keyword arguments passed to the constructor.
    """

    name: str
    opt_class: type[torch.optim.Optimizer]
    description: str
    default_lr: float
    has_momentum: bool = False
    has_nesterov: bool = False
    has_betas: bool = False
    has_alpha: bool = False
    has_weight_decay: bool = True
    decoupled_weight_decay: bool = False
    has_fused: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def check_hparams(self, **hparams: Any) -> None:
        """Check the keyword arguments of :func:`create_optimizer` (all but the model and
        the name) against what this optimizer takes.

        ``None`` means "the optimizer's default" and is always allowed.

        Raises:
            ValueError: a value out of range, one this optimizer does not take, or an
                unknown name; the message names the value and the fix.
        """
        unknown = sorted(set(hparams) - set(HPARAMS))
        if unknown:
            raise ValueError(
                f"unknown optimizer hyperparameter {unknown[0]!r}; the known ones: "
                f"{', '.join(HPARAMS)}."
            )
        values = {**HPARAMS, **hparams}
        lr, momentum, nesterov = values["lr"], values["momentum"], values["nesterov"]
        beta1, beta2, alpha = values["beta1"], values["beta2"], values["alpha"]
        weight_decay = values["weight_decay"]
        if not (_is_number(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, but got lr={lr!r}.")
        for name, value, applies in (
            ("momentum", momentum, self.has_momentum),
            ("beta1", beta1, self.has_betas),
            ("beta2", beta2, self.has_betas),
            ("alpha", alpha, self.has_alpha),
        ):
            if value is None:
                continue
            if not applies:
                takers = ", ".join(i.name for i in _OPTIMIZERS if _takes(i, name))
                raise ValueError(
                    f"optimizer {self.name!r} takes no {name} (only {takers} do), but got"
                    f" {name}={value!r}; leave it None."
                )
            if not (_is_number(value) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), but got {name}={value!r}.")
        if nesterov and not (self.has_nesterov and (momentum or 0) > 0):
            raise ValueError(
                f"nesterov=True needs an optimizer with Nesterov momentum (sgd) and momentum"
                f" > 0, but got optimizer={self.name!r}, momentum={momentum!r}."
            )
        if not (_is_number(weight_decay) and weight_decay >= 0):
            raise ValueError(
                f"weight_decay must be a finite number >= 0, but got"
                f" weight_decay={weight_decay!r}."
            )
        if weight_decay and not self.has_weight_decay:
            raise ValueError(
                f"optimizer {self.name!r} takes no weight decay, but got"
                f" weight_decay={weight_decay!r}; set it to 0."
            )


#: The hyperparameters :func:`create_optimizer` takes, with their defaults (``lr`` has none).
HPARAMS: Mapping[str, Any] = {
    "lr": None,
    "momentum": None,
    "nesterov": False,
    "beta1": None,
    "beta2": None,
    "alpha": None,
    "weight_decay": 0.0,
    "no_decay_1d": True,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _takes(info: OptimInfo, hparam: str) -> bool:
    flag = {"momentum": "has_momentum", "beta1": "has_betas", "beta2": "has_betas",
            "alpha": "has_alpha"}[hparam]
    return getattr(info, flag)


_OPTIMIZERS: Registry[OptimInfo] = Registry("optimizer")
#: Add an optimizer; its name must be new.
register = _OPTIMIZERS.register
#: Names of the registered optimizers, in registration order.
list_optimizers = _OPTIMIZERS.names
#: The registry entry for a name; an unknown name lists the registered ones (ValueError).
get_optimizer_info = _OPTIMIZERS.get


register(OptimInfo(
    name="sgd",
    opt_class=torch.optim.SGD,
    has_fused=True,
    description="SGD with optional (Nesterov) momentum",
    default_lr=1e-3,
    has_momentum=True,
    has_nesterov=True,
))
register(OptimInfo(
    name="rmsprop",
    opt_class=torch.optim.RMSprop,
    description="RMSprop (torch defaults: lr 0.01, alpha 0.99)",
    default_lr=1e-2,
    has_momentum=True,
    has_alpha=True,
))
register(OptimInfo(
    name="adam",
    opt_class=torch.optim.Adam,
    has_fused=True,
    description="Adam, L2 weight decay added to the gradient",
    default_lr=1e-3,
    has_betas=True,
))
register(OptimInfo(
    name="adamw",
    opt_class=torch.optim.AdamW,
    has_fused=True,
    description="AdamW, decoupled weight decay",
    default_lr=1e-3,
    has_betas=True,
    decoupled_weight_decay=True,
))
register(OptimInfo(
    name="sgd_lab",
    opt_class=LabMomentumSGD,
    description="the lab's hand-written momentum SGD (no weight decay)",
    default_lr=0.1,
    has_momentum=True,
    has_weight_decay=False,
))


def param_groups_weight_decay(
    model: nn.Module, weight_decay: float, *, no_decay_1d: bool = True
) -> list[dict[str, Any]]:
    """Split parameters into a decayed group and a ``weight_decay=0`` group (timm style).

    Biases and other 1-d parameters (``ndim <= 1``) go to the group without decay when
    ``no_decay_1d`` is true. A group is added only when it has parameters.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if no_decay_1d and param.ndim <= 1 else decay).append(param)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def create_optimizer(
    model: nn.Module,
    name: str,
    *,
    lr: float,
    momentum: float | None = None,
    nesterov: bool = False,
    beta1: float | None = None,
    beta2: float | None = None,
    alpha: float | None = None,
    weight_decay: float = 0.0,
    no_decay_1d: bool = True,
) -> torch.optim.Optimizer:
    """Build the optimizer registered as ``name`` for ``model``'s parameters (timm style).

    Hyperparameters left as ``None`` keep the optimizer's own defaults (the lab's "default
    hyperparameters"). ``TrialConfig.optimizer_hparams()`` gives these keyword arguments.

    Raises:
        ValueError: an unknown name (the message lists the registered ones), a value out of
            range, or a hyperparameter this optimizer does not take.
    """
    info = get_optimizer_info(name)
    info.check_hparams(lr=lr, momentum=momentum, nesterov=nesterov, beta1=beta1, beta2=beta2,
                       alpha=alpha, weight_decay=weight_decay, no_decay_1d=no_decay_1d)
    kwargs: dict[str, Any] = {"lr": lr, **info.defaults}
    if momentum is not None:
        kwargs["momentum"] = momentum
    if nesterov:
        kwargs["nesterov"] = True
    if beta1 is not None or beta2 is not None:
        default_betas = (0.9, 0.999)
        kwargs["betas"] = (
            default_betas[0] if beta1 is None else beta1,
            default_betas[1] if beta2 is None else beta2,
        )
    if alpha is not None:
        kwargs["alpha"] = alpha
    devices = {p.device.type for p in model.parameters()}
    if info.has_fused and devices <= {"cpu", "cuda"}:
        # One kernel per update instead of one per parameter and operation: measured faster
        # on these small tensors (bench/epoch_speed.py), the same arithmetic.
        kwargs["fused"] = True
    if info.has_weight_decay:
        params: Any = param_groups_weight_decay(model, weight_decay, no_decay_1d=no_decay_1d)
    else:
        params = model.parameters()
    return info.opt_class(params, **kwargs)
