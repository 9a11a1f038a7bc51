"""Batched optimizer updates for stacked parameters: one update serves K members, each with
its own hyperparameters, learning rate and weight decay.

A stacked parameter is ``(members, ...)``; each member's hyperparameters come from the param
groups torch.optim builds for it (:func:`~study.train.optim.create_optimizer`), so defaults,
the head's learning rate and the no-decay group for biases are torch's own. Per update the
scalars every member needs (learning rate times its schedule's factor, bias corrections, ...)
are computed on the host in double precision, as torch.optim computes them, and go to the
device in one tensor of ``(members, 1, ...)`` columns. Member by member the arithmetic is
torch.optim's single-tensor update (tests/test_cohort.py checks each against torch.optim).

Where torch.optim runs a member with its fused kernel (``fused=True`` in its groups, as
:func:`~study.train.optim.create_optimizer` sets it where torch has one), the update calls
that kernel itself (``torch._fused_sgd_``, ``_fused_adam_``, ``_fused_adamw_``,
``_fused_adagrad_``) on each member's views of the stacked tensors: one call per set of
scalars, so members and parameters that share their learning rate and hyperparameters share
a call. That is one pass over the weights, as in ``fit``, and the result is torch.optim's
bit for bit. Adding an optimizer to the registry needs its batched update here
(:data:`STACKED`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from study.train.optim import LabMomentumSGD, get_optimizer_info

__all__ = [
    "StackedOptimizer",
    "STACKED",
    "stacked_optimizer_class",
    "groups_by_parameter",
]

Floats = list[float]


def _column(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values`` (one per member) shaped to broadcast over ``like`` (``(members, ...)``)."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def _hparam(group: Mapping[str, Any], name: str) -> float:
    if name in ("beta1", "beta2"):
        return float(group["betas"][name == "beta2"])
    return float(group[name])


def _decayed(g: torch.Tensor, p: torch.Tensor, c: Mapping[str, torch.Tensor],
             host: Mapping[str, Floats]) -> torch.Tensor:
    """The gradient with L2 weight decay added (``grad + wd * param``), where any member
    has one: in place (a new stacked tensor per update costs more than the sum itself)."""
    return g.addcmul_(p, c["weight_decay"]) if any(host["weight_decay"]) else g


class StackedOptimizer:
    """The batched update of one optimizer, for stacked parameters.

    Args:
        groups: ``groups[k][j]`` is the param group (torch.optim's dict) that holds member
            ``k``'s parameter ``j``; every member has the same parameters, in the order of
            the stacked ones given to :meth:`step`.
        params: the stacked parameters (for the state's shapes, dtype and device).

    Raises:
        ValueError: a group asks for what no batched update does (``maximize``,
            ``amsgrad``, decoupled weight decay where torch.optim adds it to the gradient).
    """

    #: the hyperparameters read from each member's groups (``lr`` and ``weight_decay``
    #: are read per parameter)
    hparams: ClassVar[tuple[str, ...]] = ()
    #: per-parameter state, zero at the start
    state_names: ClassVar[tuple[str, ...]] = ()
    #: whether torch has a fused kernel for this update (:meth:`_fused_scalars` and
    #: :meth:`_fused_kernel` then call it)
    has_kernel: ClassVar[bool] = False
    #: whether :meth:`_update` keeps its temporaries in ``state["scratch"]``, a tensor of the
    #: parameter's shape kept between updates: a stack-sized tensor allocated per update
    #: costs more than the pass that fills it
    uses_scratch: ClassVar[bool] = False

    def __init__(
        self, groups: Sequence[Sequence[Mapping[str, Any]]], params: Sequence[torch.Tensor]
    ) -> None:
        for group in (g for member in groups for g in member):
            wanted = {"maximize": False, "amsgrad": False, "decoupled_weight_decay":
                      getattr(self, "decoupled", False)}
            bad = {k: group[k] for k, v in wanted.items() if group.get(k, v) != v}
            if bad:
                raise ValueError(f"{type(self).__name__} has no batched update for {bad}.")
        n = len(params)
        # torch.optim's own choice for these members (create_optimizer's, per device)
        self.fused = self.has_kernel and all(g.get("fused") for member in groups
                                             for g in member)
        self.base_lr = [[float(member[j]["lr"]) for member in groups] for j in range(n)]
        self.weight_decay = [[float(member[j].get("weight_decay", 0.0)) for member in groups]
                             for j in range(n)]
        self.values = {name: [_hparam(member[0], name) for member in groups]
                       for name in self.hparams}
        self.state = [self._init_state(p) for p in params]
        self.steps = 0

    def _init_state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        state = {name: torch.zeros_like(p) for name in self.state_names}
        if self.uses_scratch:
            state["scratch"] = torch.empty_like(p)
        return state

    @torch.no_grad()
    def step(
        self,
        params: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor],
        factors: Floats,
        overrides: Mapping[str, Floats] | None = None,
    ) -> None:
        """One update of every member: ``factors[k]`` multiplies member ``k``'s learning
        rates (its schedule); ``overrides`` replaces hyperparameters for this update (a
        momentum or beta1 schedule), one value per member. ``grads`` are consumed: the
        update writes its temporaries into them, so their contents afterwards are
        unspecified."""
        self.steps += 1
        values = {**self.values, **(overrides or {})}
        self._begin_step(values)
        if self.fused:
            self._fused_step(params, grads, factors, values)
            return
        rows = [self._scalars([b * f for b, f in zip(base, factors, strict=True)], wd, values)
                for base, wd in zip(self.base_lr, self.weight_decay, strict=True)]
        names = list(rows[0])
        table = torch.tensor([[row[name] for name in names] for row in rows],
                             dtype=params[0].dtype).to(params[0].device, non_blocking=True)
        for j, (p, g) in enumerate(zip(params, grads, strict=True)):
            cols = {name: _column(table[j, q], p) for q, name in enumerate(names)}
            self._update(p, g, self.state[j], cols, rows[j])

    def _fused_step(self, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
                    factors: Floats, values: Mapping[str, Floats]) -> None:
        """One update by torch's fused kernel: each member's parameter ``j`` is the view
        ``params[j][k]``, and the views that share their scalars go in one call."""
        calls: dict[tuple, list[tuple[int, int]]] = {}
        for j, (base, wd) in enumerate(zip(self.base_lr, self.weight_decay, strict=True)):
            for k, f in enumerate(factors):
                own = {name: v[k] for name, v in values.items()}
                key = tuple(self._fused_scalars(k, base[k] * f, wd[k], own).items())
                calls.setdefault(key, []).append((j, k))
        views = [(p.unbind(0), g.unbind(0), {n: t.unbind(0) for n, t in s.items()})
                 for p, g, s in zip(params, grads, self.state, strict=True)]
        for key, pairs in calls.items():
            states = {name: [views[j][2][name][k] for j, k in pairs] for name in self.state[0]}
            self._fused_kernel(dict(key), [views[j][0][k] for j, k in pairs],
                               [views[j][1][k] for j, k in pairs], states)

    def _fused_scalars(self, k: int, lr: float, wd: float, v: Mapping[str, Any]) -> dict:
        """Member ``k``'s scalars of one fused call for one parameter (``v``: its
        hyperparameters in this update)."""
        raise NotImplementedError

    def _fused_kernel(self, scalars: Mapping[str, Any], params: list[torch.Tensor],
                      grads: list[torch.Tensor], states: Mapping[str, list[torch.Tensor]]
                      ) -> None:
        """Call the fused kernel on ``params`` (views that share ``scalars``)."""
        raise NotImplementedError

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the members at ``index`` (a 1-d long tensor), in that order."""
        rows = index.tolist()
        self.base_lr = [[lrs[k] for k in rows] for lrs in self.base_lr]
        self.weight_decay = [[wds[k] for k in rows] for wds in self.weight_decay]
        self.values = {name: [v[k] for k in rows] for name, v in self.values.items()}
        self.state = [{name: t.new_empty((len(rows), *t.shape[1:])) if name == "scratch"
                       else t.index_select(0, index.to(t.device)) for name, t in s.items()}
                      for s in self.state]

    def _begin_step(self, values: Mapping[str, Floats]) -> None:
        """Per-member state kept on the host, advanced once per update."""

    def _scalars(self, lr: Floats, wd: Floats, values: Mapping[str, Floats]) -> dict:
        """One parameter's per-member scalars of this update (lists of floats)."""
        raise NotImplementedError

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor],
                c: Mapping[str, torch.Tensor], host: Mapping[str, Floats]) -> None:
        """Update ``p`` in place from ``g``; ``c`` holds the scalars as columns, ``host``
        the same values as lists."""
        raise NotImplementedError


class StackedSGD(StackedOptimizer):
    """``torch.optim.SGD``: weight decay, (Nesterov) momentum, dampening."""

    hparams = ("momentum", "dampening", "nesterov")
    has_kernel = True

    def __init__(self, groups, params) -> None:
        super().__init__(groups, params)
        # a member's buffers start at its first update with momentum (torch's first step)
        self.started = [False] * len(groups)
        if self.fused:
            for s, p in zip(self.state, params, strict=True):
                s["momentum_buffer"] = torch.zeros_like(p)

    def _begin_step(self, values: Mapping[str, Floats]) -> None:
        self.first = [bool(m) and not s for m, s in zip(values["momentum"], self.started,
                                                         strict=True)]
        self.started = [s or bool(m) for m, s in zip(values["momentum"], self.started,
                                                     strict=True)]

    def _fused_scalars(self, k, lr, wd, v) -> dict:
        return {"lr": lr, "weight_decay": wd, "momentum": v["momentum"],
                "dampening": v["dampening"], "nesterov": bool(v["nesterov"]),
                "is_first_step": self.first[k]}

    def _fused_kernel(self, scalars, params, grads, states) -> None:
        buffers = states["momentum_buffer"] if scalars["momentum"] else []
        torch._fused_sgd_(params, grads, buffers, maximize=False, **scalars)

    def keep(self, index: torch.Tensor) -> None:
        super().keep(index)
        self.started = [self.started[k] for k in index.tolist()]

    def _scalars(self, lr: Floats, wd: Floats, v: Mapping[str, Floats]) -> dict:
        return {"neg_lr": [-x for x in lr], "weight_decay": wd, "momentum": v["momentum"],
                "one_minus_dampening": [1 - d for d in v["dampening"]],
                "nesterov": v["nesterov"]}

    def _update(self, p, g, state, c, host) -> None:
        g = _decayed(g, p, c, host)
        if any(host["momentum"]):  # a member without momentum keeps buf == grad
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.clone()
            else:
                buf.mul_(c["momentum"]).addcmul_(g, c["one_minus_dampening"])
            if any(host["nesterov"]):
                g = torch.where(c["nesterov"] > 0, torch.addcmul(g, buf, c["momentum"]), buf)
            else:
                g = buf
        p.addcmul_(g, c["neg_lr"])


class StackedLabSGD(StackedOptimizer):
    """The lab's :class:`~study.train.optim.LabMomentumSGD`: ``M <- m M + lr g``,
    ``theta <- theta - M``."""

    hparams = ("momentum",)

    def _scalars(self, lr: Floats, wd: Floats, v: Mapping[str, Floats]) -> dict:
        return {"lr": lr, "momentum": v["momentum"]}

    def _update(self, p, g, state, c, host) -> None:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = g * c["lr"]
        else:
            buf.mul_(c["momentum"]).addcmul_(g, c["lr"])
        p.sub_(buf)


#: The most calls an update makes where a per-member scalar saves a pass over the weights
#: (beyond it, one call with a column of values: on a GPU each call is a kernel launch)
_MAX_RUNS = 8


def _runs(values: Floats) -> list[tuple[int, int, float]]:
    """``values`` (one per member) as runs of equal values: ``(start, stop, value)``."""
    runs: list[tuple[int, int, float]] = []
    for k, value in enumerate(values):
        if runs and runs[-1][2] == value:
            runs[-1] = (runs[-1][0], k + 1, value)
        else:
            runs.append((k, k + 1, value))
    return runs


def _add_quotients(p: torch.Tensor, num: torch.Tensor, den: torch.Tensor, values: Floats,
                   column: torch.Tensor, room: torch.Tensor) -> None:
    """``p += values[k] * num / den`` for each member ``k``: torch's ``addcdiv_``, one pass,
    one call per run of equal values; past :data:`_MAX_RUNS` runs, the quotient into
    ``room`` (which may be ``num`` or ``den``) and one product with ``column`` (the values
    as a column), two passes."""
    runs = _runs(values)
    if len(runs) <= _MAX_RUNS:
        for start, stop, value in runs:
            p[start:stop].addcdiv_(num[start:stop], den[start:stop], value=value)
    else:
        p.addcmul_(torch.div(num, den, out=room), column)


class StackedRMSprop(StackedOptimizer):
    """``torch.optim.RMSprop``: weight decay, momentum, centered."""

    hparams = ("alpha", "eps", "momentum", "centered")
    state_names = ("square_avg", "grad_avg", "momentum_buffer")
    uses_scratch = True

    def _scalars(self, lr: Floats, wd: Floats, v: Mapping[str, Floats]) -> dict:
        return {"neg_lr": [-x for x in lr], "weight_decay": wd, "alpha": v["alpha"],
                "one_minus_alpha": [1 - a for a in v["alpha"]], "eps": v["eps"],
                "momentum": v["momentum"], "centered": v["centered"]}

    def _update(self, p, g, state, c, host) -> None:
        g = _decayed(g, p, c, host)
        square_avg, scratch = state["square_avg"], state["scratch"]
        if len(set(host["alpha"])) == 1:  # torch's own expression: one pass less
            alpha = host["alpha"][0]
            square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        else:
            square_avg.mul_(c["alpha"]).addcmul_(torch.mul(g, c["one_minus_alpha"], out=scratch),
                                                 g)
        if any(host["centered"]):
            grad_avg = state["grad_avg"].lerp_(g, c["one_minus_alpha"])
            centered = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
            avg = torch.where(c["centered"] > 0, centered, square_avg.sqrt(), out=scratch)
        else:
            avg = torch.sqrt(square_avg, out=scratch)
        avg.add_(c["eps"])
        if any(host["momentum"]):  # momentum 0: buf == grad / avg, torch's plain step
            buf = state["momentum_buffer"].mul_(c["momentum"]).addcdiv_(g, avg)
            p.addcmul_(buf, c["neg_lr"])
        else:
            _add_quotients(p, g, avg, host["neg_lr"], c["neg_lr"], room=g)


def _betas(v: Mapping[str, Floats]) -> dict:
    return {"one_minus_beta1": [1 - b for b in v["beta1"]], "beta2": v["beta2"],
            "one_minus_beta2": [1 - b for b in v["beta2"]], "eps": v["eps"]}


def _moments(g: torch.Tensor, state: dict[str, torch.Tensor], c: Mapping[str, torch.Tensor],
             host: Mapping[str, Floats]) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam's first and second moments, updated in place. Where the members share a beta,
    torch's own expressions with a scalar; otherwise a column of them (``g * (1 - beta2)``
    then goes through ``state["scratch"]`` where the update keeps one: a pass more)."""
    if len(set(host["one_minus_beta1"])) == 1:
        exp_avg = state["exp_avg"].lerp_(g, host["one_minus_beta1"][0])
    else:
        exp_avg = state["exp_avg"].lerp_(g, c["one_minus_beta1"])
    if len(set(host["beta2"])) == 1:
        beta2 = host["beta2"][0]
        return exp_avg, state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
    scaled = torch.mul(g, c["one_minus_beta2"], out=state.get("scratch"))
    return exp_avg, state["exp_avg_sq"].mul_(c["beta2"]).addcmul_(scaled, g)


class _StepCount:
    """The update count a fused kernel reads from its ``state_steps`` (torch's fused
    optimizers keep it in a float32 scalar tensor, advanced before the call)."""

    def __init__(self, like: torch.Tensor) -> None:
        self.tensor = torch.zeros((), dtype=torch.float32, device=like.device)

    def at(self, steps: int, n: int) -> list[torch.Tensor]:
        """``n`` references to the count, set to ``steps`` (the kernel only reads it)."""
        self.tensor.fill_(steps)
        return [self.tensor] * n


class StackedAdam(StackedOptimizer):
    """``torch.optim.Adam`` (L2 weight decay added to the gradient)."""

    hparams = ("beta1", "beta2", "eps")
    state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False
    has_kernel = True

    def __init__(self, groups, params) -> None:
        super().__init__(groups, params)
        self.count = _StepCount(params[0])

    def _fused_scalars(self, k, lr, wd, v) -> dict:
        return {"lr": lr, "beta1": v["beta1"], "beta2": v["beta2"], "weight_decay": wd,
                "eps": v["eps"]}

    def _fused_kernel(self, scalars, params, grads, states) -> None:
        kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
        kernel(params, grads, states["exp_avg"], states["exp_avg_sq"], [],
               self.count.at(self.steps, len(params)), amsgrad=False, maximize=False,
               **scalars)

    def _scalars(self, lr: Floats, wd: Floats, v: Mapping[str, Floats]) -> dict:
        t = self.steps
        return {"weight_decay": wd, "decay": [1 - x * w for x, w in zip(lr, wd, strict=True)],
                **_betas(v),
                "neg_step_size": [-x / (1 - b**t) for x, b in zip(lr, v["beta1"], strict=True)],
                "bc2_sqrt": [(1 - b**t) ** 0.5 for b in v["beta2"]]}

    def _update(self, p, g, state, c, host) -> None:
        if self.decoupled:
            if any(host["weight_decay"]):
                p.mul_(c["decay"])
        else:
            g = _decayed(g, p, c, host)
        exp_avg, exp_avg_sq = _moments(g, state, c, host)
        denom = (exp_avg_sq.sqrt() / c["bc2_sqrt"]).add_(c["eps"])
        p.addcmul_(exp_avg / denom, c["neg_step_size"])


class StackedAdamW(StackedAdam):
    """``torch.optim.AdamW``: weight decay applied to the weights."""

    decoupled = True


class StackedNAdam(StackedOptimizer):
    """``torch.optim.NAdam`` (L2 weight decay, momentum decay)."""

    hparams = ("beta1", "beta2", "eps", "momentum_decay")
    state_names = ("exp_avg", "exp_avg_sq")
    uses_scratch = True

    def __init__(self, groups, params) -> None:
        super().__init__(groups, params)
        # torch keeps the product of the momenta in its default scalar dtype
        dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        self.mu_product = torch.ones(len(groups), dtype=dtype)

    def _momenta(self, v: Mapping[str, Floats], t: int) -> Floats:
        return [b * (1.0 - 0.5 * 0.96 ** (t * d))
                for b, d in zip(v["beta1"], v["momentum_decay"], strict=True)]

    def _begin_step(self, values: Mapping[str, Floats]) -> None:
        self.mu = self._momenta(values, self.steps)
        self.mu_next = self._momenta(values, self.steps + 1)
        self.mu_product *= torch.tensor(self.mu, dtype=self.mu_product.dtype)

    def _scalars(self, lr: Floats, wd: Floats, v: Mapping[str, Floats]) -> dict:
        t, prod = self.steps, self.mu_product.tolist()
        rows = zip(lr, self.mu, self.mu_next, prod, strict=True)
        grad_c, avg_c = zip(*[(-x * (1 - mu) / (1 - pr), -x * mn / (1 - pr * mn))
                              for x, mu, mn, pr in rows], strict=True)
        return {"weight_decay": wd, **_betas(v), "bc2": [1 - b**t for b in v["beta2"]],
                "grad_c": list(grad_c), "avg_c": list(avg_c)}

    def _update(self, p, g, state, c, host) -> None:
        g = _decayed(g, p, c, host)
        exp_avg, exp_avg_sq = _moments(g, state, c, host)
        denom = torch.div(exp_avg_sq, c["bc2"], out=state["scratch"]).sqrt_().add_(c["eps"])
        _add_quotients(p, g, denom, host["grad_c"], c["grad_c"], room=g)
        _add_quotients(p, exp_avg, denom, host["avg_c"], c["avg_c"], room=g)  # g is spent

    def keep(self, index: torch.Tensor) -> None:
        super().keep(index)
        self.mu_product = self.mu_product.index_select(0, index.cpu())


class StackedRAdam(StackedOptimizer):
    """``torch.optim.RAdam`` (L2 weight decay): the rectified step once the variance's
    length ``rho_t`` passes 5, the plain momentum step before."""

    hparams = ("beta1", "beta2", "eps")
    state_names = ("exp_avg", "exp_avg_sq")
    uses_scratch = True

    def _scalars(self, lr: Floats, wd: Floats, v: Mapping[str, Floats]) -> dict:
        t, rect = self.steps, []
        for b2 in v["beta2"]:
            rho_inf = 2 / (1 - b2) - 1
            rho_t = rho_inf - 2 * t * (b2**t) / (1 - b2**t)
            rect.append(((rho_t - 4) * (rho_t - 2) * rho_inf
                         / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5 if rho_t > 5 else 0.0)
        bc1 = [1 - b**t for b in v["beta1"]]
        bc2_sqrt = [(1 - b**t) ** 0.5 for b in v["beta2"]]
        rect_step = [-x * r * s / b for x, r, s, b in zip(lr, rect, bc2_sqrt, bc1, strict=True)]
        return {"weight_decay": wd, **_betas(v), "lr": lr, "rect": rect, "bc1": bc1,
                "bc2_sqrt": bc2_sqrt, "rect_step": rect_step}

    def _update(self, p, g, state, c, host) -> None:
        g = _decayed(g, p, c, host)
        exp_avg, exp_avg_sq = _moments(g, state, c, host)
        if all(host["rect"]):  # p -= lr * rect * sqrt(bc2) / bc1 * exp_avg / (sqrt(v) + eps)
            denom = torch.sqrt(exp_avg_sq, out=g).add_(c["eps"])  # g is spent: its room
            _add_quotients(p, exp_avg, denom, host["rect_step"], c["rect_step"], room=denom)
            return
        step = torch.div(exp_avg, c["bc1"], out=state["scratch"]).mul_(c["lr"])
        if any(host["rect"]):  # members whose variance is not yet long enough: the plain step
            adaptive = torch.sqrt(exp_avg_sq, out=g).add_(c["eps"])
            adaptive = torch.div(c["bc2_sqrt"], adaptive, out=adaptive)
            step = torch.where(c["rect"] > 0, step * adaptive * c["rect"], step)
        p.sub_(step)


class StackedAdagrad(StackedOptimizer):
    """``torch.optim.Adagrad`` (L2 weight decay, learning-rate decay)."""

    hparams = ("eps", "lr_decay", "initial_accumulator_value")
    has_kernel = True

    def __init__(self, groups, params) -> None:
        super().__init__(groups, params)
        self.count = _StepCount(params[0])

    def _fused_scalars(self, k, lr, wd, v) -> dict:
        return {"lr": lr, "lr_decay": v["lr_decay"], "weight_decay": wd, "eps": v["eps"]}

    def _fused_kernel(self, scalars, params, grads, states) -> None:
        torch._fused_adagrad_(params, grads, states["sum"],
                              self.count.at(self.steps, len(params)), maximize=False,
                              **scalars)

    def _init_state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        start = torch.tensor(self.values["initial_accumulator_value"], dtype=p.dtype)
        return {"sum": torch.zeros_like(p).add_(_column(start.to(p.device), p))}

    def _scalars(self, lr: Floats, wd: Floats, v: Mapping[str, Floats]) -> dict:
        t = self.steps
        return {"weight_decay": wd, "eps": v["eps"],
                "neg_clr": [-x / (1 + (t - 1) * d) for x, d in zip(lr, v["lr_decay"],
                                                                   strict=True)]}

    def _update(self, p, g, state, c, host) -> None:
        g = _decayed(g, p, c, host)
        std = state["sum"].addcmul_(g, g).sqrt().add_(c["eps"])
        p.addcmul_(g / std, c["neg_clr"])


class StackedAdamax(StackedOptimizer):
    """``torch.optim.Adamax`` (L2 weight decay): an infinity-norm denominator."""

    hparams = ("beta1", "beta2", "eps")
    state_names = ("exp_avg", "exp_inf")

    def _scalars(self, lr: Floats, wd: Floats, v: Mapping[str, Floats]) -> dict:
        t = self.steps
        return {"weight_decay": wd, **_betas(v),
                "neg_clr": [-x / (1 - b**t) for x, b in zip(lr, v["beta1"], strict=True)]}

    def _update(self, p, g, state, c, host) -> None:
        g = _decayed(g, p, c, host)
        exp_avg = state["exp_avg"].lerp_(g, c["one_minus_beta1"])
        exp_inf = state["exp_inf"]
        torch.maximum(exp_inf.mul_(c["beta2"]), g.abs_().add_(c["eps"]), out=exp_inf)
        _add_quotients(p, exp_avg, exp_inf, host["neg_clr"], c["neg_clr"], room=g)  # g spent


#: The batched update of each optimizer class the registry can name.
STACKED: dict[type[torch.optim.Optimizer], type[StackedOptimizer]] = {
    torch.optim.SGD: StackedSGD,
    LabMomentumSGD: StackedLabSGD,
    torch.optim.RMSprop: StackedRMSprop,
    torch.optim.Adam: StackedAdam,
    torch.optim.AdamW: StackedAdamW,
    torch.optim.NAdam: StackedNAdam,
    torch.optim.RAdam: StackedRAdam,
    torch.optim.Adagrad: StackedAdagrad,
    torch.optim.Adamax: StackedAdamax,
}


def stacked_optimizer_class(name: str) -> type[StackedOptimizer]:
    """The batched update of registered optimizer ``name``.

    Raises:
        ValueError: an unknown name, or an optimizer with no batched update (the message
            names the ones that have one).
    """
    info = get_optimizer_info(name)
    if info.opt_class not in STACKED:
        known = sorted(c.__name__ for c in STACKED)
        raise ValueError(
            f"optimizer {name!r} ({info.opt_class.__name__}) has no batched update for a"
            f" cohort; the classes that have one: {', '.join(known)}. Train it with fit, or"
            f" add its update to study.train.cohort_optim.STACKED."
        )
    return STACKED[info.opt_class]


def groups_by_parameter(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]
) -> list[dict[str, Any]]:
    """The param group of ``optimizer`` that holds each of ``params`` (its hyperparameters
    as torch.optim resolved them: defaults, the head's rate, the biases' weight decay)."""
    owner = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    return [owner[id(p)] for p in params]
