"""K copies of the lab's MLP as one stacked model: the cohort trainer's model.

Each weight is a ``(members, out, in)`` tensor and each bias ``(members, out)``, so one
batched product computes a layer for every member, each on its own batch. The forward and
backward are :func:`~study.train.model.mlp_gradients`, the layer pairs that
:meth:`~study.train.model.MLP.train_step` runs on a stack of one. Each member's dropout
masks come from its own generator, so a member's run does not depend on which others share
the stack.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from study.train.model import MLP, cross_entropy_forward, linear_forward, mlp_gradients

__all__ = ["StackedMLP", "stacked_evaluate"]

_EVAL_ELEMENTS = 20_000_000  # hidden activations per evaluation chunk (80 MB in float32)


class StackedMLP:
    """K MLPs of one architecture (Linear, ReLU, dropout ..., Linear) as stacked float32
    tensors, with a training step that needs no autograd.

    Args:
        weights: one ``(members, out, in)`` tensor per linear layer, input layer first.
        biases: one ``(members, out)`` tensor per linear layer.
        dropout: the dropout probability after each hidden layer.
    """

    def __init__(
        self, weights: list[torch.Tensor], biases: list[torch.Tensor], *, dropout: float
    ) -> None:
        self.weights, self.biases, self.dropout = weights, biases, dropout
        self._grads: dict[str, list[torch.Tensor]] | None = None

    @classmethod
    def from_mlps(cls, models: Sequence[MLP]) -> StackedMLP:
        """The stack of ``models`` (each an :class:`~study.train.model.MLP` as built)."""
        linears = [[m for m in model.layers if isinstance(m, nn.Linear)] for model in models]
        drops = {m.p for model in models for m in model.layers if isinstance(m, nn.Dropout)}
        if len(drops) > 1 or len({len(layers) for layers in linears}) > 1:
            raise ValueError(f"a stack needs one architecture, but got dropouts {drops} and"
                             f" {sorted({len(layers) for layers in linears})} linear layers.")
        with torch.no_grad():
            weights = [torch.stack([ls[i].weight for ls in linears]).float()
                       for i in range(len(linears[0]))]
            biases = [torch.stack([ls[i].bias for ls in linears]).float()
                      for i in range(len(linears[0]))]
        return cls(weights, biases, dropout=drops.pop() if drops else 0.0)

    @property
    def members(self) -> int:
        return self.weights[0].shape[0]

    def parameters(self) -> list[torch.Tensor]:
        """The stacked parameters in ``MLP.parameters()``'s order (weight, bias per layer)."""
        return [t for pair in zip(self.weights, self.biases, strict=True) for t in pair]

    def to_mlp(self, member: int) -> MLP:
        """Member ``member`` as a fresh :class:`~study.train.model.MLP` (on the same device)."""
        widths = [w.shape[1] for w in self.weights[:-1]]
        model = MLP(self.weights[0].shape[2], widths, self.weights[-1].shape[1], self.dropout)
        linears = [m for m in model.layers if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer, w, b in zip(linears, self.weights, self.biases, strict=True):
                layer.weight.copy_(w[member])
                layer.bias.copy_(b[member])
        return model.to(self.weights[0].device)

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the members at ``index`` (a 1-d long tensor), in that order."""
        self.weights = [w.index_select(0, index) for w in self.weights]
        self.biases = [b.index_select(0, index) for b in self.biases]
        self._grads = None

    def grads(self, dtype: torch.dtype) -> dict[str, list[torch.Tensor]]:
        """The buffers :meth:`train_step` writes: ``"weights"`` and ``"biases"`` (float32,
        the gradients), ``"staged"`` (the weight gradients in ``dtype`` before their cast;
        the float32 buffers themselves in float32), and ``"cast"`` (the parameters in
        ``dtype`` for the products, in :meth:`parameters`' order; the parameters
        themselves in float32). Allocated once per stack: a stack-sized tensor allocated at
        every update costs more than a pass into a kept one."""
        if self._grads is None or self._grads["staged"][0].dtype != dtype:
            weights = [torch.empty_like(w) for w in self.weights]
            low = dtype != torch.float32
            self._grads = {
                "weights": weights,
                "staged": [torch.empty_like(w, dtype=dtype) for w in weights] if low else weights,
                "biases": [torch.empty_like(b) for b in self.biases],
                "cast": ([torch.empty_like(p, dtype=dtype) for p in self.parameters()] if low
                         else self.parameters()),
            }
        return self._grads

    @torch.no_grad()
    def train_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        generators: Sequence[torch.Generator],
        *,
        bf16: bool = False,
        nll: torch.Tensor | None = None,
        pred: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """One update's gradients for every member: ``x`` is ``(members, n, in)``, ``y``
        ``(members, n)``; member ``k``'s dropout masks come from ``generators[k]``. Writes
        each example's cross-entropy and predicted class into ``nll`` and ``pred``
        (``(members, n)``) where given, and returns the float32 gradients of the mean
        cross-entropy in :meth:`parameters`' order.

        :func:`~study.train.model.mlp_gradients`, as
        :meth:`~study.train.model.MLP.train_step` runs it for one model (in bfloat16 with
        ``bf16``: the weights cast for the products, the loss and the gradients in
        float32), each product batched over the members.
        """
        dtype = torch.bfloat16 if bf16 else torch.float32
        buffers = self.grads(dtype)
        if bf16:
            for target, p in zip(buffers["cast"], self.parameters(), strict=True):
                target.copy_(p)
        mlp_gradients(x.to(dtype), y, buffers["cast"][::2], buffers["cast"][1::2],
                      dropout=[self.dropout] * (len(self.weights) - 1), generators=generators,
                      dweights=buffers["staged"], dbiases=buffers["biases"], nll=nll, pred=pred)
        if dtype != torch.float32:
            for target, staged in zip(buffers["weights"], buffers["staged"], strict=True):
                target.copy_(staged)
        return [t for pair in zip(buffers["weights"], buffers["biases"], strict=True)
                for t in pair]


@torch.inference_mode()
def stacked_evaluate(
    model: StackedMLP, x: torch.Tensor, y: torch.Tensor, *, bf16: bool = False
) -> tuple[list[float], list[float]]:
    """Each member's mean cross-entropy and accuracy on ``(x, y)`` (no dropout), as
    :func:`~study.train.loop.evaluate` measures one model (in bfloat16 with ``bf16``, as
    under autocast): ``(losses, accuracies)``."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    weights = [(w.to(dtype), b.to(dtype)) for w, b in zip(model.weights, model.biases,
                                                           strict=True)]
    widest = max(w.shape[1] for w, _ in weights)
    chunk = max(1, _EVAL_ELEMENTS // (model.members * widest))
    loss_sum = torch.zeros(model.members, device=x.device)
    correct = torch.zeros(model.members, dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], chunk):
        h = x[start : start + chunk].to(dtype)
        for w, b in weights[:-1]:
            h = linear_forward(h, w, b).relu_()
        logits = linear_forward(h, *weights[-1])
        target = y[start : start + chunk].expand(model.members, -1)
        nll, pred, _ = cross_entropy_forward(logits, target)
        loss_sum += nll.sum(1)
        correct += (pred == target).sum(1)
    n = x.shape[0]
    return (loss_sum / n).tolist(), (correct.double() / n).tolist()
