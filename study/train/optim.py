"""Optimizer registry, weight-decay param groups and the lab's hand-written momentum SGD.

An optimizer is a registered, frozen :class:`OptimInfo` (timm style): its capability flags
(``has_momentum``, ``has_betas``, ...) decide which hyperparameters it takes, so building any
optimizer from a config is one code path. Adding an optimizer is one :func:`register` call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from study.train.registry import Registry

__all__ = [
    "HPARAMS",
    "OptimInfo",
    "LabMomentumSGD",
    "register",
    "unregister",
    "get_optimizer_info",
    "list_optimizers",
    "param_groups_weight_decay",
    "param_groups",
    "head_parameters",
    "create_optimizer",
]


class LabMomentumSGD(torch.optim.Optimizer):
    """The lab's ``SGD_Alternate``: momentum SGD written by hand, no weight decay.

    ``M <- momentum * M + lr * grad`` then ``theta <- theta - M``. With a constant learning
    rate this is the same trajectory as ``torch.optim.SGD(momentum=m, dampening=0)``, whose
    buffer holds gradients only (``B <- momentum * B + grad``, ``theta <- theta - lr * B``),
    so that ``M = lr * B`` at every step.

    They differ once the learning rate changes (any schedule but ``constant``, warm-up
    included): the lab's buffer keeps the history scaled by the *old* rates, torch's takes
    the new rate for the whole buffer at once. At the first update after the rate goes from
    ``lr`` to ``lr'`` the lab's step is larger than torch's by ``momentum * (lr - lr') * B``
    (``B`` torch's buffer before it), and the excess decays by ``momentum`` each update: after
    a decay the lab's form keeps moving at the old speed for about ``1 / (1 - momentum)``
    updates, and during a warm-up it lags behind torch's.
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
        name: registry key (lower case letters, digits, ``_``), used on the command line, in
            search-space parameter names (``<name>_lr``) and in the study database.
        opt_class: the ``torch.optim.Optimizer`` subclass (any, not only ``torch.optim``'s).
            It is called as ``opt_class(param_groups, lr=..., **flagged_hparams,
            **defaults)``; per-group ``lr`` and ``weight_decay`` come in the param groups.
        description: one line for ``--help`` and the docs.
        default_lr: the learning rate torch uses when none is given (the lab's "defaults").
            The ranges a study searches belong to its search space, not to the optimizer.
        has_momentum / has_nesterov / has_dampening / has_betas / has_alpha / has_centered:
            which constructor arguments the optimizer accepts (``momentum``, ``nesterov``,
            ``dampening``, ``betas``, ``alpha``, ``centered``); a config setting one it lacks
            is rejected, and one left unset is not passed.
        has_weight_decay: the optimizer reads ``weight_decay`` from its param groups. Off by
            default, so a weight decay given to an optimizer that would ignore it is an
            error, not a silent no-op.
        decoupled_weight_decay: weight decay is applied to the weights, not added to the
            gradient (AdamW); its useful values are larger (see the search spaces).
        has_fused: torch has a fused implementation (one kernel for the whole update) on the
            devices in ``fused_devices``; :func:`create_optimizer` uses it there.
        has_foreach: torch has a multi-tensor (``foreach``) implementation; used on CUDA
            where there is no fused one (torch's own default there, made explicit).
        defaults: fixed extra keyword arguments passed to the constructor.

    Raises:
        ValueError: a malformed entry (name, class, learning rate or flags that contradict
            each other); the message names the field.
    """

    name: str
    opt_class: type[torch.optim.Optimizer]
    description: str
    default_lr: float
    has_momentum: bool = False
    has_nesterov: bool = False
    has_dampening: bool = False
    has_betas: bool = False
    has_alpha: bool = False
    has_centered: bool = False
    has_weight_decay: bool = False
    decoupled_weight_decay: bool = False
    has_fused: bool = False
    fused_devices: tuple[str, ...] = ("cpu", "cuda")
    has_foreach: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and re.fullmatch(r"[a-z][a-z0-9_]*", self.name)):
            raise ValueError(
                f"an optimizer name is lower case letters, digits and '_' (it names search "
                f"parameters such as '<name>_lr'), but got name={self.name!r}."
            )
        if not (isinstance(self.opt_class, type)
                and issubclass(self.opt_class, torch.optim.Optimizer)):
            raise ValueError(
                f"optimizer {self.name!r}: opt_class must be a torch.optim.Optimizer subclass,"
                f" but got opt_class={self.opt_class!r}."
            )
        if not (is_number(self.default_lr) and self.default_lr > 0):
            raise ValueError(
                f"optimizer {self.name!r}: default_lr must be a finite number > 0, but got"
                f" default_lr={self.default_lr!r}."
            )
        for flag in ("has_nesterov", "has_dampening"):
            if getattr(self, flag) and not self.has_momentum:
                raise ValueError(
                    f"optimizer {self.name!r}: {flag}=True needs has_momentum=True."
                )
        if self.decoupled_weight_decay and not self.has_weight_decay:
            raise ValueError(
                f"optimizer {self.name!r}: decoupled_weight_decay=True needs"
                f" has_weight_decay=True."
            )

    def check_hparams(self, **hparams: Any) -> None:
        """Check the keyword arguments of :func:`create_optimizer` (all but the model and
        the name) against what this optimizer takes.

        ``None`` means "the optimizer's default" (or, for ``head_*``, "as the body") and is
        always allowed.

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
        self._check_rates(values)
        self._check_switches(values)
        self._check_decay(values)

    def _check_rates(self, values: Mapping[str, Any]) -> None:
        """``lr``, and the decay rates in [0, 1) this optimizer must take when set."""
        lr = values["lr"]
        if not (is_number(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, but got lr={lr!r}.")
        for name in ("momentum", "dampening", "beta1", "beta2", "alpha"):
            value = values[name]
            if value is None:
                continue
            self._check_takes(name, value)
            if not (is_number(value) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), but got {name}={value!r}.")

    def _check_switches(self, values: Mapping[str, Any]) -> None:
        """The true/false hyperparameters, and what Nesterov momentum and dampening need."""
        momentum, nesterov, dampening = values["momentum"], values["nesterov"], values["dampening"]
        for name in ("nesterov", "centered", "no_decay_1d"):
            if not isinstance(values[name], bool):
                raise ValueError(f"{name} must be True or False, but got {name}={values[name]!r}.")
        if values["centered"]:
            self._check_takes("centered", True)
        if nesterov and not (self.has_nesterov and (momentum or 0) > 0):
            raise ValueError(
                f"nesterov=True needs an optimizer with Nesterov momentum ({_takers('nesterov')})"
                f" and momentum > 0, but got optimizer={self.name!r}, momentum={momentum!r}."
            )
        if dampening and not (momentum or 0) > 0:
            raise ValueError(
                f"dampening scales the gradient added to the momentum buffer, so it needs"
                f" momentum > 0, but got dampening={dampening!r}, momentum={momentum!r};"
                f" leave dampening None or set a momentum."
            )
        if dampening and nesterov:
            raise ValueError(
                f"Nesterov momentum needs dampening 0 (torch), but got"
                f" dampening={dampening!r} with nesterov=True; leave one of them out."
            )

    def _check_decay(self, values: Mapping[str, Any]) -> None:
        """The weight decays (body and head) and the head's learning-rate multiple."""
        for name in ("weight_decay", "head_weight_decay"):
            value = values[name]
            if value is None and name == "head_weight_decay":
                continue
            if not (is_number(value) and value >= 0):
                raise ValueError(
                    f"{name} must be a finite number >= 0, but got {name}={value!r}."
                )
            if value and not self.has_weight_decay:
                raise ValueError(
                    f"optimizer {self.name!r} takes no weight decay, but got {name}={value!r};"
                    f" set it to {'0' if name == 'weight_decay' else 'None'}."
                )
        mult = values["head_lr_mult"]
        if mult is not None and not (is_number(mult) and mult > 0):
            raise ValueError(
                f"head_lr_mult must be a finite number > 0 (the output layer's learning rate"
                f" is lr x head_lr_mult), but got head_lr_mult={mult!r}."
            )

    def _check_takes(self, hparam: str, value: Any) -> None:
        if not getattr(self, _FLAGS[hparam]):
            raise ValueError(
                f"optimizer {self.name!r} takes no {hparam} (only {_takers(hparam)} do), but"
                f" got {hparam}={value!r}; leave it None."
            )


#: The hyperparameters :func:`create_optimizer` takes, with their defaults (``lr`` has none);
#: each is also a ``TrialConfig`` field of the same name.
HPARAMS: Mapping[str, Any] = {
    "lr": None,
    "momentum": None,
    "nesterov": False,
    "dampening": None,
    "beta1": None,
    "beta2": None,
    "alpha": None,
    "centered": False,
    "weight_decay": 0.0,
    "no_decay_1d": True,
    "head_lr_mult": None,
    "head_weight_decay": None,
}

#: The capability flag that allows each optional constructor argument.
_FLAGS = {
    "momentum": "has_momentum",
    "nesterov": "has_nesterov",
    "dampening": "has_dampening",
    "beta1": "has_betas",
    "beta2": "has_betas",
    "alpha": "has_alpha",
    "centered": "has_centered",
}


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): what every numeric hyperparameter must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _takers(hparam: str) -> str:
    return ", ".join(i.name for i in _OPTIMIZERS if getattr(i, _FLAGS[hparam])) or "none"


_OPTIMIZERS: Registry[OptimInfo] = Registry("optimizer")
#: Add an optimizer (a :class:`OptimInfo`); its name must be new. Any
#: ``torch.optim.Optimizer`` subclass can be registered from Python: a ``TrialConfig`` and a
#: ``SearchSpace`` can then name it, and ``fit`` trains with it (in this process; the workers
#: ``--workers N`` starts import only what the package registers).
register = _OPTIMIZERS.register
#: Remove a registered optimizer (a notebook cell re-run, a test's own optimizer).
unregister = _OPTIMIZERS.unregister
#: Names of the registered optimizers, in registration order.
list_optimizers = _OPTIMIZERS.names
#: The registry entry for a name; an unknown name lists the registered ones (ValueError).
get_optimizer_info = _OPTIMIZERS.get


def _torch_optimizer(
    name: str, opt_class: type[torch.optim.Optimizer], default_lr: float, description: str,
    **flags: Any,
) -> OptimInfo:
    """One of torch.optim's own (all but sgd_lab): they read ``weight_decay`` from their param
    groups and have a multi-tensor implementation. SGD, Adam and AdamW have a fused one on CPU
    and CUDA; Adagrad's is CPU-only in the oldest torch this project supports (2.4), so it is
    used only there."""
    return OptimInfo(name=name, opt_class=opt_class, description=description,
                     default_lr=default_lr, has_weight_decay=True, has_foreach=True, **flags)


register(_torch_optimizer(
    "sgd", torch.optim.SGD, 1e-3, "SGD with optional (Nesterov) momentum and dampening",
    has_momentum=True, has_nesterov=True, has_dampening=True, has_fused=True,
))
register(_torch_optimizer(
    "rmsprop", torch.optim.RMSprop, 1e-2,
    "RMSprop (torch defaults: lr 0.01, alpha 0.99), optional momentum, centered",
    has_momentum=True, has_alpha=True, has_centered=True,
))
register(_torch_optimizer(
    "adam", torch.optim.Adam, 1e-3, "Adam, L2 weight decay added to the gradient",
    has_betas=True, has_fused=True,
))
register(_torch_optimizer(
    "adamw", torch.optim.AdamW, 1e-3, "AdamW, decoupled weight decay",
    has_betas=True, decoupled_weight_decay=True, has_fused=True,
))
register(OptimInfo(
    name="sgd_lab", opt_class=LabMomentumSGD, default_lr=0.1, has_momentum=True,
    description="the lab's hand-written momentum SGD (no weight decay)",
))
register(_torch_optimizer(
    "nadam", torch.optim.NAdam, 2e-3,
    "NAdam: Adam with Nesterov momentum, L2 weight decay (torch lr 2e-3)", has_betas=True,
))
register(_torch_optimizer(
    "radam", torch.optim.RAdam, 1e-3,
    "RAdam: Adam with its early steps' variance rectified, L2 weight decay", has_betas=True,
))
register(_torch_optimizer(
    "adagrad", torch.optim.Adagrad, 1e-2,
    "Adagrad: squared gradients summed over the whole run (torch lr 0.01)",
    has_fused=True, fused_devices=("cpu",),
))
register(_torch_optimizer(
    "adamax", torch.optim.Adamax, 2e-3,
    "Adamax: Adam with an infinity-norm denominator (torch lr 2e-3)", has_betas=True,
))


def _split_1d(
    params: Iterable[nn.Parameter], no_decay_1d: bool
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in params:
        if param.requires_grad:
            (no_decay if no_decay_1d and param.ndim <= 1 else decay).append(param)
    return decay, no_decay


def param_groups_weight_decay(
    model: nn.Module, weight_decay: float, *, no_decay_1d: bool = True
) -> list[dict[str, Any]]:
    """Split parameters into a decayed group and a ``weight_decay=0`` group (timm style).

    Biases and other 1-d parameters (``ndim <= 1``) go to the group without decay when
    ``no_decay_1d`` is true. A group is added only when it has parameters.
    """
    decay, no_decay = _split_1d(model.parameters(), no_decay_1d)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The output layer's parameters: those of the last module that holds parameters of its
    own. For the lab's ``MLP`` these are exactly ``model.layers[6:].parameters()``."""
    last: list[nn.Parameter] = []
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if own:
            last = own
    return last


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.0,
    no_decay_1d: bool = True,
    head_lr_mult: float | None = None,
    head_weight_decay: float | None = None,
    decay: bool = True,
) -> list[dict[str, Any]]:
    """The param groups :func:`create_optimizer` builds: the lab's body/head split combined
    with timm's no-decay group for 1-d parameters.

    Without ``head_lr_mult`` and ``head_weight_decay`` this is
    :func:`param_groups_weight_decay` (one group of everything when ``decay`` is false). With
    either, the output layer (:func:`head_parameters`, the lab's ``model.layers[6:]``) gets
    groups of its own, after the body's: learning rate ``lr * head_lr_mult`` and weight decay
    ``head_weight_decay`` (``None``: as the body). A schedule multiplies every group's rate
    by the same factor, so the ratio holds throughout the run. Empty groups are left out.

    Args:
        model: the model whose trainable parameters are grouped.
        lr: the base learning rate (the body's).
        weight_decay: the body's weight decay.
        no_decay_1d: biases and other 1-d parameters get weight decay 0 (body and head).
        head_lr_mult: the head's learning rate as a multiple of ``lr``.
        head_weight_decay: the head's weight decay.
        decay: the optimizer reads ``weight_decay`` from its groups; false leaves the key out.
    """
    if head_lr_mult is None and head_weight_decay is None:
        if decay:
            return param_groups_weight_decay(model, weight_decay, no_decay_1d=no_decay_1d)
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    head_ids = {id(p) for p in head_parameters(model)}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    head = [p for p in model.parameters() if id(p) in head_ids]
    head_extra = {} if head_lr_mult is None else {"lr": lr * head_lr_mult}
    head_decay = weight_decay if head_weight_decay is None else head_weight_decay
    groups: list[dict[str, Any]] = []
    for params, wd, extra in ((body, weight_decay, {}), (head, head_decay, head_extra)):
        if not decay:
            trainable = [p for p in params if p.requires_grad]
            groups += [{"params": trainable, **extra}] if trainable else []
            continue
        decayed, not_decayed = _split_1d(params, no_decay_1d)
        groups += [{"params": decayed, "weight_decay": wd, **extra}] if decayed else []
        groups += [{"params": not_decayed, "weight_decay": 0.0, **extra}] if not_decayed else []
    return groups


def create_optimizer(
    model: nn.Module,
    name: str,
    *,
    lr: float,
    momentum: float | None = None,
    nesterov: bool = False,
    dampening: float | None = None,
    beta1: float | None = None,
    beta2: float | None = None,
    alpha: float | None = None,
    centered: bool = False,
    weight_decay: float = 0.0,
    no_decay_1d: bool = True,
    head_lr_mult: float | None = None,
    head_weight_decay: float | None = None,
) -> torch.optim.Optimizer:
    """Build the optimizer registered as ``name`` for ``model``'s parameters (timm style).

    Hyperparameters left as ``None`` keep the optimizer's own defaults (the lab's "default
    hyperparameters"). ``TrialConfig.optimizer_hparams()`` gives these keyword arguments.
    The param groups are :func:`param_groups`'s.

    Raises:
        ValueError: an unknown name (the message lists the registered ones), a value out of
            range, or a hyperparameter this optimizer does not take.
    """
    info = get_optimizer_info(name)
    hparams = {
        "lr": lr, "momentum": momentum, "nesterov": nesterov, "dampening": dampening,
        "beta1": beta1, "beta2": beta2, "alpha": alpha, "centered": centered,
        "weight_decay": weight_decay, "no_decay_1d": no_decay_1d, "head_lr_mult": head_lr_mult,
        "head_weight_decay": head_weight_decay,
    }
    info.check_hparams(**hparams)
    kwargs = {**_constructor_kwargs(info, hparams), **_implementation(info, model)}
    groups = param_groups(
        model, lr=lr, weight_decay=weight_decay, no_decay_1d=no_decay_1d,
        head_lr_mult=head_lr_mult, head_weight_decay=head_weight_decay,
        decay=info.has_weight_decay,
    )
    return info.opt_class(groups, **kwargs)


def _constructor_kwargs(info: OptimInfo, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """``info.opt_class``'s keyword arguments for the checked ``hparams``: ``lr``, its fixed
    defaults, and each hyperparameter that is set (``None`` or ``False`` leaves torch's own
    default, so an optimizer never receives an argument it lacks)."""
    kwargs: dict[str, Any] = {"lr": hparams["lr"], **info.defaults}
    if hparams["momentum"] is not None:
        kwargs["momentum"] = hparams["momentum"]
    if hparams["nesterov"]:
        kwargs["nesterov"] = True
    if hparams["dampening"] is not None:
        kwargs["dampening"] = hparams["dampening"]
    beta1, beta2 = hparams["beta1"], hparams["beta2"]
    if beta1 is not None or beta2 is not None:
        default_betas = (0.9, 0.999)
        kwargs["betas"] = (
            default_betas[0] if beta1 is None else beta1,
            default_betas[1] if beta2 is None else beta2,
        )
    if hparams["alpha"] is not None:
        kwargs["alpha"] = hparams["alpha"]
    if hparams["centered"]:
        kwargs["centered"] = True
    return kwargs


def _implementation(info: OptimInfo, model: nn.Module) -> dict[str, bool]:
    """``fused=True`` where torch has a fused update for every device of ``model``'s
    parameters (one kernel per update instead of one per parameter and operation, the same
    arithmetic); else ``foreach=True`` on CUDA (torch's own choice there, stated)."""
    devices = {p.device.type for p in model.parameters()}
    if info.has_fused and devices <= set(info.fused_devices):
        return {"fused": True}
    if info.has_foreach and devices == {"cuda"}:
        return {"foreach": True}
    return {}
