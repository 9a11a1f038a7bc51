"""Optimizer registry, weight-decay param groups and the lab's hand-written momentum SGD.

An optimizer is a registered, frozen :class:`OptimInfo` (timm style): its capability flags
(``has_momentum``, ``has_betas``, ...) decide which hyperparameters it takes, so building any
optimizer from a config is one code path. Adding an optimizer is one :func:`register` call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from study.registry import Registry

if TYPE_CHECKING:
    from search_spaces.config import TrialConfig

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
        lr_range: the log-uniform learning-rate range the ``default`` search space samples.
            SGD's and Adam's good learning rates are orders of magnitude apart.
        default_lr: the learning rate torch uses when none is given (the lab's "defaults").
        has_momentum / has_nesterov / has_betas / has_alpha / has_weight_decay: which
            hyperparameters the optimizer accepts; a config setting one it lacks is rejected.
        decoupled_weight_decay: weight decay is applied to the weights, not added to the
            gradient (AdamW).
        defaults: fixed extra keyword arguments passed to the constructor.
    """

    name: str
    opt_class: type[torch.optim.Optimizer]
    description: str
    lr_range: tuple[float, float]
    default_lr: float
    has_momentum: bool = False
    has_nesterov: bool = False
    has_betas: bool = False
    has_alpha: bool = False
    has_weight_decay: bool = True
    decoupled_weight_decay: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        low, high = self.lr_range
        if not 0 < low < high:
            raise ValueError(f"lr_range must satisfy 0 < low < high, but got {self.lr_range=}.")


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
    description="SGD with optional (Nesterov) momentum",
    lr_range=(1e-3, 1.0),
    default_lr=1e-3,
    has_momentum=True,
    has_nesterov=True,
))
register(OptimInfo(
    name="rmsprop",
    opt_class=torch.optim.RMSprop,
    description="RMSprop (torch defaults: lr 0.01, alpha 0.99)",
    lr_range=(1e-5, 1e-2),
    default_lr=1e-2,
    has_momentum=True,
    has_alpha=True,
))
register(OptimInfo(
    name="adam",
    opt_class=torch.optim.Adam,
    description="Adam, L2 weight decay added to the gradient",
    lr_range=(1e-5, 1e-2),
    default_lr=1e-3,
    has_betas=True,
))
register(OptimInfo(
    name="adamw",
    opt_class=torch.optim.AdamW,
    description="AdamW, decoupled weight decay",
    lr_range=(1e-5, 1e-2),
    default_lr=1e-3,
    has_betas=True,
    decoupled_weight_decay=True,
))
register(OptimInfo(
    name="sgd_lab",
    opt_class=LabMomentumSGD,
    description="the lab's hand-written momentum SGD (no weight decay)",
    lr_range=(1e-3, 1.0),
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


def create_optimizer(config: TrialConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Build the optimizer ``config`` names for ``model``'s parameters.

    Hyperparameters the config leaves as ``None`` keep the optimizer's own defaults (the lab's
    "default hyperparameters").
    """
    info = get_optimizer_info(config.optimizer)
    kwargs: dict[str, Any] = {"lr": config.lr, **info.defaults}
    if info.has_momentum and config.momentum is not None:
        kwargs["momentum"] = config.momentum
    if info.has_nesterov and config.nesterov:
        kwargs["nesterov"] = True
    if info.has_betas and (config.beta1 is not None or config.beta2 is not None):
        default_betas = (0.9, 0.999)
        kwargs["betas"] = (
            default_betas[0] if config.beta1 is None else config.beta1,
            default_betas[1] if config.beta2 is None else config.beta2,
        )
    if info.has_alpha and config.alpha is not None:
        kwargs["alpha"] = config.alpha
    if info.has_weight_decay:
        params: Any = param_groups_weight_decay(
            model, config.weight_decay, no_decay_1d=config.no_decay_1d
        )
    else:
        params = model.parameters()
    return info.opt_class(params, **kwargs)
