"""Train K trials of the lab's MLP as one stacked model: the cohort trainer.

``train_cohort(configs, data)`` takes K ``TrialConfig`` s that share the batch size, the
epoch count, the precision and any batch-size schedule, and returns K results of
:func:`~study.train.loop.fit`'s form. The K models are one :class:`StackedMLP` (weights
``(K, out, in)``, batched products), their updates one batched update per optimizer
(:mod:`study.train.cohort_optim`, checked against torch.optim member by member).

Each member keeps what ``fit`` gives a run: its initial weights, batch order and dropout
masks come from its own seed exactly as ``fit`` draws them, and its hyperparameters,
schedule, warm-up, momentum schedule and plateau state are its own. So a member's run does
not depend on its cohort-mates. The divergence and collapse rules are ``fit``'s (its
constants); a diverged or collapsed member leaves the stack at once, a member whose
``on_epoch`` returns true (pruned) leaves at the end of that epoch, and the rest go on.
This module never imports Optuna.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from study.train.cohort_optim import (
    StackedOptimizer,
    groups_by_parameter,
    stacked_optimizer_class,
)
from study.train.config import TrialConfig
from study.train.data import Dataset, epoch_permutation
from study.train.loop import (
    CHECK_EVERY,
    COLLAPSE_AFTER,
    LOSS_DIVERGENCE_FACTOR,
    SETTLE_UPDATES,
    EpochStats,
    FitResult,
    _get_rng_state,
    _set_rng_state,
    evaluate,
    flush_denormals,
)
from study.train.model import MLP
from study.train.optim import create_optimizer, get_optimizer_info
from study.train.schedules import (
    EpochHook,
    LrLambda,
    build_batch_factor,
    build_epoch_hook,
    build_momentum_fn,
)
from study.train.stacked import StackedMLP, stacked_evaluate

__all__ = ["train_cohort", "stack_key", "OnCohortEpoch", "OnLeave"]

#: ``on_epoch(epoch, stats)``: after every epoch, ``stats`` maps each member that trained it
#: (its index in the configs given to :func:`train_cohort`) to its stats; the members in
#: the collection it returns are pruned (they leave after this epoch).
OnCohortEpoch = Callable[[int, Mapping[int, EpochStats]], Collection[int]]
#: ``on_leave(results)``: members have left the stack (trained every epoch, pruned, diverged
#: or collapsed); ``results`` maps each (its index) to its result as ``fit`` returns it.
OnLeave = Callable[[Mapping[int, FitResult]], None]


@dataclass
class _Member:
    """One trial of the cohort: its schedule and random streams, and ``fit``'s bookkeeping."""

    index: int
    config: TrialConfig
    lr0: float  # the first param group's learning rate before any schedule
    lr_lambda: LrLambda
    momentum_fn: LrLambda | None
    momentum: float | None  # the static momentum or beta1 (None: the optimizer has neither)
    epoch_hook: EpochHook | None
    order: torch.Generator
    dropout: torch.Generator
    lr_scale: float = 1.0  # the epoch hook's reductions so far
    history: list[EpochStats] = field(default_factory=list)
    loss_limit: float | None = None
    below_updates: int = 0
    diverged: tuple[float | None, int | None, str | None] = (None, None, None)
    lr_used: float = math.nan
    lr_low: float = math.inf
    lr_high: float = -math.inf

    def factor(self, update: int) -> float:
        """The multiple of its learning rates at update ``update`` (0-based)."""
        return self.lr_scale * self.lr_lambda(update)

    def momentum_at(self, update: int) -> float | None:
        return self.momentum_fn(update) if self.momentum_fn is not None else self.momentum


def stack_key(config: TrialConfig) -> tuple:
    """What members of one cohort share: batch size, epochs, precision and the batch size of
    every epoch (a batch-size schedule's multiples). Configs with equal keys can be trained
    together."""
    fn = build_batch_factor(config.schedule, config.schedule_params)
    factors = tuple(fn(e) if fn else 1 for e in range(config.epochs))
    return config.batch_size, config.epochs, config.precision, factors


def _check_cohort(configs: Sequence[TrialConfig]) -> list[int]:
    """The batch-size multiple of each epoch, once the configs can share a stack.

    Raises:
        ValueError: no configs, or configs that differ in what a stack shares (the message
            names the field and the values), or an optimizer without a batched update.
    """
    if not configs:
        raise ValueError("train_cohort needs at least one TrialConfig, but got none.")
    for name in ("batch_size", "epochs", "precision"):
        values = sorted({getattr(c, name) for c in configs})
        if len(values) > 1:
            raise ValueError(f"a cohort's members share {name}, but got {name} in {values};"
                             f" train them in separate cohorts.")
    factors = set()
    for config in configs:
        stacked_optimizer_class(config.optimizer)
        factors.add(stack_key(config)[3])
    if len(factors) > 1:
        raise ValueError(f"a cohort's members share the batch size of every epoch, but got"
                         f" {sorted(factors)}; train them in separate cohorts.")
    return list(factors.pop())


def _new_member(
    index: int, config: TrialConfig, data: Dataset
) -> tuple[_Member, MLP, list[dict]]:
    """Member ``index``: the model ``fit`` would start from, its param groups as
    torch.optim resolves them, and its random streams (batch order; dropout from the
    global state its seed leaves after the weights are drawn, as in ``fit``)."""
    device = data.device
    outer = _get_rng_state(device)
    torch.manual_seed(config.seed)
    model = MLP().to(device)
    streams = _get_rng_state(device)
    _set_rng_state(device, outer)
    optimizer = create_optimizer(model, config.optimizer, **config.optimizer_hparams())
    groups = groups_by_parameter(optimizer, list(model.parameters()))
    dropout = torch.Generator(device=device)
    dropout.set_state(streams[1] if device.type == "cuda" else streams[0])
    steps_per_epoch = math.ceil(data.num_train / config.batch_size)
    info = get_optimizer_info(config.optimizer)
    key = "betas" if info.has_betas else "momentum" if info.has_momentum else None
    group = optimizer.param_groups[0]
    member = _Member(
        index=index, config=config, lr0=group["lr"],
        lr_lambda=config.lr_lambda(steps_per_epoch),
        momentum_fn=None if key is None else build_momentum_fn(
            config.schedule, config.schedule_params, steps_per_epoch=steps_per_epoch,
            epochs=config.epochs),
        momentum=None if key is None else float(
            group["betas"][0] if key == "betas" else group["momentum"]),
        epoch_hook=build_epoch_hook(config.schedule, config.schedule_params),
        order=torch.Generator(device=device).manual_seed(config.seed),
        dropout=dropout,
    )
    return member, model, groups


class _Cohort:
    """The members still training, their stacked model and their batched updates (one
    per optimizer, over the contiguous rows of its members)."""

    def __init__(self, configs: Sequence[TrialConfig], data: Dataset, factor: float,
                 on_leave: OnLeave | None = None) -> None:
        self.data, self.divergence_factor, self.on_leave = data, factor, on_leave
        self.bf16 = configs[0].precision == "bf16"
        # members of one optimizer sit in contiguous rows: its update takes a view
        order = sorted(range(len(configs)), key=lambda i: configs[i].optimizer)
        built = [_new_member(i, configs[i], data) for i in order]
        self.members = [m for m, _, _ in built]
        self.model = StackedMLP.from_mlps([model for _, model, _ in built])
        self.updates: list[tuple[slice, StackedOptimizer]] = []
        for name in dict.fromkeys(m.config.optimizer for m in self.members):
            rows = [r for r, m in enumerate(self.members) if m.config.optimizer == name]
            rows_slice = slice(rows[0], rows[-1] + 1)
            params = [p[rows_slice] for p in self.model.parameters()]
            update = stacked_optimizer_class(name)([built[r][2] for r in rows], params)
            self.updates.append((rows_slice, update))
        self.updates_made = 0
        self.results: dict[int, FitResult] = {}
        self.left: dict[int, FitResult] = {}  # since the last keep

    def step(self, x: torch.Tensor, y: torch.Tensor, nll: torch.Tensor,
             pred: torch.Tensor) -> None:
        """One update of every member, on its batch ``(x[k], y[k])``."""
        t = self.updates_made
        factors = [m.factor(t) for m in self.members]
        for m, f in zip(self.members, factors, strict=True):
            m.lr_used = m.lr0 * f
            m.lr_low, m.lr_high = min(m.lr_low, m.lr_used), max(m.lr_high, m.lr_used)
        grads = self.model.train_step(x, y, [m.dropout for m in self.members], bf16=self.bf16,
                                      nll=nll, pred=pred)
        params = self.model.parameters()
        for rows, update in self.updates:
            members = self.members[rows]
            overrides = None
            if any(m.momentum_fn is not None for m in members):
                key = "beta1" if "beta1" in update.values else "momentum"
                overrides = {key: [m.momentum_at(t) for m in members]}
            update.step([p[rows] for p in params], [g[rows] for g in grads],
                        factors[rows], overrides)
        self.updates_made += 1

    def keep(self, rows: list[int]) -> None:
        """Keep the members at ``rows`` (stack order); the others have left, and
        ``on_leave`` hears of them together."""
        index = torch.tensor(rows, dtype=torch.long, device=self.data.device)
        self.model.keep(index)
        updates, start = [], 0
        for old, update in self.updates:
            mine = [r - old.start for r in rows if old.start <= r < old.stop]
            if mine:
                update.keep(torch.tensor(mine, dtype=torch.long, device=self.data.device))
                updates.append((slice(start, start + len(mine)), update))
                start += len(mine)
        self.updates = updates
        self.members = [self.members[r] for r in rows]
        left, self.left = self.left, {}
        if left and self.on_leave is not None:
            self.on_leave(left)

    def leave(self, row: int) -> None:
        """Record member ``row``'s result (``fit``'s form) before it leaves the stack."""
        member, data = self.members[row], self.data
        model = self.model.to_mlp(row)
        lr, epoch, reason = member.diverged
        final, test = 0.0, None
        if reason is None:
            final = member.history[-1].eval_accuracy if member.history else math.nan
            test = final
            if data.eval_set != "test":
                with torch.autocast(data.device.type, dtype=torch.bfloat16,
                                    enabled=self.bf16):
                    test = evaluate(model, data.test_x, data.test_y)[1]
        result = self.results[member.index] = FitResult(
            config=member.config, history=tuple(member.history), diverged=reason is not None,
            diverged_lr=lr, diverged_epoch=epoch, diverged_reason=reason,
            final_accuracy=final, test_accuracy=test, eval_set=data.eval_set, model=model,
        )
        self.left[member.index] = result


def _diverge(cohort: _Cohort, row: int, epoch: int, reason: str) -> None:
    member = cohort.members[row]
    member.diverged = (member.lr_used, epoch, reason)
    cohort.leave(row)


def _train_epoch(cohort: _Cohort, epoch: int, batch_size: int) -> dict:
    """Every member's updates of one epoch; a member whose loss turns non-finite leaves at
    the next check (every ``CHECK_EVERY`` updates, one host synchronisation). Returns the
    epoch's sums per member still in the stack, as ``fit`` keeps them."""
    data, n, device = cohort.data, cohort.data.num_train, cohort.data.device
    judged_from = max(0, SETTLE_UPDATES - cohort.updates_made)
    inputs = data.train_inputs(torch.bfloat16 if cohort.bf16 else data.train_x.dtype)
    perms = torch.stack([epoch_permutation(n, m.order, device) for m in cohort.members])
    nll = torch.empty(len(cohort.members), n, device=device)
    pred = torch.empty(len(cohort.members), n, dtype=torch.long, device=device)
    seen = checked = 0
    for step, first in enumerate(range(0, n, batch_size)):
        idx = perms[:, first : first + batch_size]
        seen = first + idx.shape[1]
        flat = idx.reshape(-1)
        x = inputs.index_select(0, flat).view(*idx.shape, -1)
        y = data.train_y.index_select(0, flat).view(idx.shape)
        cohort.step(x, y, nll[:, first:seen], pred[:, first:seen])
        if cohort.members[0].loss_limit is None:  # the first batch: one sync per cohort
            for m, loss in zip(cohort.members, nll[:, :seen].mean(1).tolist(), strict=True):
                m.loss_limit = cohort.divergence_factor * max(loss, 1e-3)
        if (step + 1) % CHECK_EVERY == 0:
            finite = torch.isfinite(nll[:, checked:seen]).all(1).tolist()
            if not all(finite):
                rows = [r for r, ok in enumerate(finite) if ok]
                for r in (r for r, ok in enumerate(finite) if not ok):
                    _diverge(cohort, r, epoch, "non-finite loss")
                cohort.keep(rows)
                if not rows:
                    return {}
                index = torch.tensor(rows, device=device)
                perms, nll, pred = (t.index_select(0, index) for t in (perms, nll, pred))
            checked = seen
    unjudged_seen = min(judged_from * batch_size, seen)
    correct = (pred[:, :seen] == data.train_y[perms[:, :seen]]).sum(1)
    bad = ~torch.isfinite(nll[:, checked:seen]).all(1)
    sums = torch.stack([nll[:, :seen].sum(1), nll[:, :unjudged_seen].sum(1),
                        correct.float(), bad.float()]).tolist()
    return {"loss": sums[0], "unjudged": sums[1], "correct": sums[2], "bad": sums[3],
            "seen": seen, "unjudged_seen": unjudged_seen}


def _judge_training(cohort: _Cohort, epoch: int, sums: dict) -> None:
    """``fit``'s rules on the epoch's training losses: a non-finite loss, or a judged mean
    above the member's limit, is divergence; those members leave."""
    keep = []
    judged_seen = sums["seen"] - sums["unjudged_seen"]
    for r, m in enumerate(cohort.members):
        judged = (sums["loss"][r] - sums["unjudged"][r]) / judged_seen if judged_seen else None
        if sums["bad"][r]:
            _diverge(cohort, r, epoch, "non-finite loss")
        elif judged is not None and judged > m.loss_limit:
            _diverge(cohort, r, epoch, "loss blew up")
        else:
            keep.append(r)
    if len(keep) < len(cohort.members):
        for key in ("loss", "correct"):
            sums[key] = [sums[key][r] for r in keep]
        cohort.keep(keep)


def _record_epoch(
    cohort: _Cohort, epoch: int, sums: dict, steps: int, batch_size: int, seconds: float,
    on_epoch: OnCohortEpoch | None,
) -> None:
    """Evaluate the members, apply ``fit``'s collapse rule, record each epoch's stats, step
    the epoch-level schedules and ask ``on_epoch``; members that collapsed, were pruned or
    have trained every epoch leave."""
    losses, accuracies = stacked_evaluate(cohort.model, cohort.data.eval_x,
                                          cohort.data.eval_y, bf16=cohort.bf16)
    share = seconds / len(cohort.members)
    trained: dict[int, EpochStats] = {}
    collapsed = set()
    for r, m in enumerate(cohort.members):
        best = max((s.eval_accuracy for s in m.history), default=0.0)
        below = best >= COLLAPSE_AFTER and accuracies[r] < 2.0 / cohort.data.num_classes
        m.below_updates = m.below_updates + steps if below else 0
        if m.below_updates >= SETTLE_UPDATES:
            m.diverged = (m.lr_used, epoch, "collapsed to chance")
            collapsed.add(r)
            continue
        stats = trained[m.index] = EpochStats(
            epoch=epoch, train_loss=sums["loss"][r] / sums["seen"],
            train_accuracy=sums["correct"][r] / sums["seen"], eval_loss=losses[r],
            eval_accuracy=accuracies[r], lr=m.lr_used, batch_size=batch_size,
            seconds=share, lr_min=m.lr_low, lr_max=m.lr_high,
            momentum=m.momentum_at(cohort.updates_made - 1),
        )
        m.history.append(stats)
        if m.epoch_hook is not None:
            m.lr_scale *= m.epoch_hook.step(accuracies[r])
    if collapsed:  # they leave (and on_leave hears of them) before the epoch's callback
        for r in sorted(collapsed):
            cohort.leave(r)
        cohort.keep([r for r in range(len(cohort.members)) if r not in collapsed])
    pruned = set(on_epoch(epoch, trained)) if on_epoch is not None and trained else set()
    keep = []
    for r, m in enumerate(cohort.members):
        if m.index in pruned or epoch >= m.config.epochs:
            cohort.leave(r)
        else:
            keep.append(r)
    cohort.keep(keep)


def train_cohort(
    configs: Sequence[TrialConfig],
    data: Dataset,
    *,
    on_epoch: OnCohortEpoch | None = None,
    on_leave: OnLeave | None = None,
    divergence_factor: float = LOSS_DIVERGENCE_FACTOR,
) -> list[FitResult]:
    """Train the lab's MLP once per config, all members as one stacked model.

    Args:
        configs: K configs sharing ``batch_size``, ``epochs``, ``precision`` and the batch
            size of every epoch (a batch-size schedule); optimizers, learning rates,
            schedules, warm-ups, weight decays and seeds may all differ.
        data: tensors from :func:`study.train.data.load_mnist` (training runs on their
            device, CPU or CUDA).
        on_epoch: ``on_epoch(epoch, stats)`` after each epoch, ``stats`` mapping each member
            that trained it (its index in ``configs``) to its stats; the members it returns
            are pruned: they leave the stack after this epoch. An exception propagates and
            stops the whole cohort.
        on_leave: ``on_leave(results)`` when members leave the stack (every epoch trained,
            pruned, diverged or collapsed), ``results`` mapping each member that left to its
            final result: a caller can store a trial's outcome while the others train on.
        divergence_factor: as :func:`~study.train.loop.fit`'s.

    Returns:
        One :class:`~study.train.loop.FitResult` per config, in order, as ``fit`` returns
        it (a pruned member's holds the epochs it trained). ``EpochStats.seconds`` is the
        member's share of the cohort's epoch (its time over the members that trained in it).

    Raises:
        ValueError: configs that cannot share a stack (see :func:`_check_cohort`).
    """
    factors = _check_cohort(configs)
    with flush_denormals():
        return _train(configs, data, factors, _Cohort(configs, data, divergence_factor, on_leave),
                      on_epoch)


def _train(configs: Sequence[TrialConfig], data: Dataset, factors: list[int], cohort: _Cohort,
           on_epoch: OnCohortEpoch | None) -> list[FitResult]:
    """:func:`train_cohort`'s epochs."""
    for epoch in range(1, configs[0].epochs + 1):
        if not cohort.members:
            break
        start = time.perf_counter()
        batch_size = configs[0].batch_size * factors[epoch - 1]
        for m in cohort.members:
            m.lr_low, m.lr_high = math.inf, -math.inf
        sums = _train_epoch(cohort, epoch, batch_size)
        if not cohort.members:
            break
        _judge_training(cohort, epoch, sums)
        if not cohort.members:
            break
        steps = math.ceil(data.num_train / batch_size)
        _record_epoch(cohort, epoch, sums, steps, batch_size, time.perf_counter() - start,
                      on_epoch)
    return [cohort.results[i] for i in range(len(configs))]
