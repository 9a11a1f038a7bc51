"""Checkpoints: the lab's dict, written atomically, and a run rebuilt from one.

A checkpoint is what the lab saves (``parameters``, ``optimizer``, ``epoch``) plus what a
run needs to go on exactly where it stopped: ``config`` (the :class:`TrialConfig` as a dict),
``scheduler`` (the learning-rate schedule's state) and ``run`` (its random streams, history
and divergence bookkeeping). It is a plain ``torch.save`` file: ``torch.load(path)["parameters"]``
is the model's ``state_dict``, as in the lab.

    save_checkpoint(run, "ckpt.pt")            # after any epoch
    checkpoint = load_checkpoint("ckpt.pt")    # the model and optimizer, rebuilt
    run = checkpoint.resume(load_mnist())      # the same run, continued
    run = checkpoint.resume(load_mnist(), epochs=10)          # a finished run, trained on
    run = checkpoint.resume(load_mnist(), epochs=8, lr=1e-4)  # fine-tuned at another rate
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from study.train.config import TrialConfig
from study.train.data import Dataset
from study.train.loop import EpochStats, TrainingRun
from study.train.model import MLP
from study.train.optim import create_optimizer

__all__ = ["FORMAT", "Checkpoint", "save_checkpoint", "load_checkpoint"]

#: Version of the file's layout, stored in it.
FORMAT = 1


def save_checkpoint(run: TrainingRun, path: str | Path) -> Path:
    """Write ``run``'s state to ``path`` atomically (a temporary file beside it, then a
    rename): a reader never sees half a file, and a crash leaves the old one intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = run.state_dict()
    payload = {
        "parameters": state.pop("model"),
        "optimizer": state.pop("optimizer"),
        "epoch": len(run.history),
        "config": run.config.to_dict(),
        "scheduler": state.pop("scheduler"),
        "run": state,
        "format": FORMAT,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@dataclass
class Checkpoint:
    """A checkpoint read back: the model and optimizer rebuilt, with their states loaded.

    Attributes:
        path: where it was read from.
        config: the run's configuration.
        epoch: epochs trained when it was written.
        model: the trained model (in eval mode, on the device it was loaded to).
        optimizer: its optimizer, with its state (momentum buffers, Adam moments).
        history: the per-epoch figures up to ``epoch``.
    """

    path: Path
    config: TrialConfig
    epoch: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: list[EpochStats]
    _payload: dict[str, Any]

    def resume(
        self, data: Dataset, *, epochs: int | None = None, lr: float | None = None
    ) -> TrainingRun:
        """The run this checkpoint came from, ready to train its next epoch.

        Without options it continues exactly as the uninterrupted run would have (same
        batches, dropout and schedule), up to its own epoch count.

        Args:
            epochs: train on to this many epochs in all (more than :attr:`epoch`): a
                finished run goes on. A schedule that depends on the epoch count (cosine,
                one-cycle, ...) is recomputed over the new total, so its learning rate
                changes at the join.
            lr: fine-tune at this constant learning rate from here on (the schedule and
                warm-up are dropped; param groups keep their ratios, e.g. the head's
                multiplier); the optimizer's state (momentum, Adam's moments) is kept.

        Raises:
            ValueError: ``epochs`` is not above the epochs trained, or ``lr`` is not a
                positive number.
        """
        config = self._continued(epochs, lr)
        run = TrainingRun(config, data, model=self.model)
        fresh = _group_settings(run)  # the new configuration's rates and momenta
        run.load_state_dict({
            "model": self._payload["parameters"],
            "optimizer": self._payload["optimizer"],
            "scheduler": self._payload["scheduler"],
            **self._payload["run"],
        })
        if lr is not None:
            _restore_group_settings(run, fresh)
        run.model.train()
        return run

    def _continued(self, epochs: int | None, lr: float | None) -> TrialConfig:
        """The configuration :meth:`resume` trains on with ``epochs`` and ``lr``."""
        changes: dict[str, Any] = {}
        if epochs is not None:
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= self.epoch:
                raise ValueError(f"epochs is the total to train to, above the {self.epoch} "
                                 f"trained in {self.path.name}, but got {epochs=}.")
            changes["epochs"] = epochs
        if lr is not None:
            if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
                raise ValueError(f"lr must be a positive learning rate, but got {lr=}.")
            changes.update(lr=float(lr), schedule="constant", schedule_params={},
                           warmup_epochs=0.0)
        return dataclasses.replace(self.config, **changes) if changes else self.config


#: The param-group settings a fine-tuning run takes from its new configuration; the loaded
#: checkpoint holds the old run's (a plateau's cuts, a one-cycle's last momentum).
_GROUP_SETTINGS = ("lr", "initial_lr", "momentum", "betas")


def _group_settings(run: TrainingRun) -> tuple[list[dict[str, Any]], list[float]]:
    """Each param group's :data:`_GROUP_SETTINGS` and the schedule's base rates."""
    groups = [{k: g[k] for k in _GROUP_SETTINGS if k in g} for g in run.optimizer.param_groups]
    return groups, list(run.scheduler.base_lrs)


def _restore_group_settings(run: TrainingRun,
                            saved: tuple[list[dict[str, Any]], list[float]]) -> None:
    """Put back what :func:`_group_settings` saved, over the loaded checkpoint's values; the
    optimizer's buffers (momentum, Adam's moments) stay the checkpoint's."""
    groups, base_lrs = saved
    for group, settings in zip(run.optimizer.param_groups, groups, strict=True):
        group.update(settings)
    run.scheduler.base_lrs = base_lrs


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (by ``--checkpoints``).

    Raises:
        FileNotFoundError: no file at ``path`` (the message gives the absolute path).
        ValueError: the file is not such a checkpoint.
    """
    path = Path(path).absolute()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist.")
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch raises several kinds for a file that is not its own
        raise ValueError(f"{path} is not a readable checkpoint ({exc}).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a checkpoint of this toolkit (format {FORMAT}); write one with "
            f"study.save_checkpoint or python -m study.run --checkpoints DIR."
        )
    config = TrialConfig.from_dict(payload["config"])
    model = MLP().to(device)
    model.load_state_dict(payload["parameters"])
    model.eval()
    optimizer = create_optimizer(model, config.optimizer, **config.optimizer_hparams())
    optimizer.load_state_dict(payload["optimizer"])
    history = [EpochStats(**e) for e in payload["run"]["history"]]
    return Checkpoint(path, config, payload["epoch"], model, optimizer, history, payload)
