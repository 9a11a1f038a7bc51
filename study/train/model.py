"""The lab's MLP for MNIST, and its layers' forward and backward without autograd.

The project's one hand-written backward: :func:`mlp_gradients` computes one update's
gradients for a stack of MLPs (each weight ``(members, out, in)``) from pairs of small
functions, one pair per layer (as llm.c writes them): :func:`linear_forward` /
:func:`linear_backward`, :func:`relu_dropout_forward` / :func:`relu_dropout_backward` and
:func:`cross_entropy_forward` / :func:`cross_entropy_backward`. Each pair is checked against
autograd on its own (tests/test_model.py). :meth:`MLP.train_step` runs it on a stack of one;
the cohort trainer (:mod:`study.train.stacked`) on a stack of many.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "MLP",
    "Dropout",
    "random_bits",
    "mask_from_bits",
    "linear_forward",
    "linear_backward",
    "relu_dropout_forward",
    "relu_dropout_backward",
    "cross_entropy_forward",
    "cross_entropy_backward",
    "mlp_gradients",
]

_LANES = 4  # 16-bit lanes in one random 64-bit integer


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose random mask is cheaper to draw on the CPU.

    torch draws one Bernoulli number per element on the CPU, a large share of an epoch of
    the lab's MLP. Here each element's keep/drop decision comes from 16 random bits, four per
    random 64-bit integer: it is kept with probability ``k / 65536``, ``k = round((1 - p) *
    65536)`` (0.8000031 for ``p = 0.2``), and scaled by its inverse, so the expected output
    equals the input exactly. On a GPU torch's own fused dropout is used.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        mask, scale = self.cpu_mask(x)
        return (x * mask).mul_(scale)  # in place: one tensor less per layer

    def cpu_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The keep mask (1 keeps, 0 drops; ``x``'s shape and dtype) and the scale of the
        kept elements, drawn as :meth:`forward` draws them on the CPU
        (:func:`random_bits`, then :func:`mask_from_bits`)."""
        bits = random_bits(x.numel(), device=x.device)
        return mask_from_bits(bits, x.shape, self.p, x.dtype)


def random_bits(
    n: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Random 64-bit integers holding ``n`` 16-bit lanes, one per element of a dropout mask,
    drawn from ``generator`` (default: torch's global one), into ``out`` where given."""
    words = (n + _LANES - 1) // _LANES
    return torch.randint(-(2**63), 2**63 - 1, (words,), dtype=torch.int64, device=device,
                         generator=generator, out=out)


def mask_from_bits(
    bits: torch.Tensor, shape: Sequence[int], p: float, dtype: torch.dtype
) -> tuple[torch.Tensor, float]:
    """:class:`Dropout`'s keep mask of ``shape`` (in ``dtype``) from :func:`random_bits`,
    and the scale of the kept elements. ``bits`` holds one row of words per leading index
    of ``shape`` (a stack of masks, each from its own generator) or one row for all.

    The mask is made with float arithmetic only (on the CPU a comparison, or a product with
    a bool tensor, is slower than its float form): ``clamp(t - lanes, 0, 1)`` is 1 exactly
    where the integer ``lanes < t``, and float32 holds these integers exactly.
    """
    keep = round((1.0 - p) * 65536)
    per_row = math.prod(shape) // math.prod(bits.shape[:-1])
    lanes = bits.view(torch.int16)[..., :per_row].reshape(shape).to(torch.float32)
    mask = torch.rsub(lanes, keep - 32768).clamp_(0.0, 1.0)  # lanes: -32768..32767
    return mask if dtype == torch.float32 else mask.to(dtype), 65536.0 / keep


# --- one layer each: forward and backward, no autograd ------------------------------------
#
# A scalar rides on the products as their ``alpha`` instead of costing an elementwise pass:
# the dropout scale on the next layer's product (``scale``), and in the backward the loss's
# ``1 / n`` and the scales passed so far (``factor``: the true gradient is ``factor`` times
# the tensor handed down).


def linear_forward(
    inp: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *, scale: float = 1.0
) -> torch.Tensor:
    """``scale * inp @ weight.T + bias`` for every member of a stack in one product
    (``scale``: the dropout scale of the layer below, whose kept units ``inp`` holds
    unscaled). ``weight`` is ``(members, out, in)``, ``bias`` ``(members, out)`` and ``inp``
    ``(members, n, in)``, each member on its own batch, or ``(n, in)``, one input for all
    (the evaluation set). One model is a stack of one."""
    if inp.dim() == 2:  # one product for all members: (n, in) @ (in, members * out)
        members, out = weight.shape[:2]
        flat = torch.addmm(bias.reshape(1, -1), inp, weight.reshape(-1, weight.shape[2]).t(),
                           alpha=scale)
        return flat.view(inp.shape[0], members, out).transpose(0, 1)
    return torch.baddbmm(bias.unsqueeze(1), inp, weight.transpose(1, 2), alpha=scale)


def linear_backward(
    dout: torch.Tensor,
    inp: torch.Tensor,
    weight: torch.Tensor,
    *,
    scale: float,
    factor: float,
    dweight: torch.Tensor,
    dbias: torch.Tensor,
    input_grad: bool = True,
) -> torch.Tensor | None:
    """The backward of :func:`linear_forward` (``(members, n, in)`` input) when the true
    gradient of its output is ``factor * dout``: writes each member's weight gradient into
    ``dweight`` and bias gradient into ``dbias`` (summed in float32), and returns ``dout @
    weight`` per member, which times ``factor * scale`` is the gradient of ``inp`` (``None``
    without ``input_grad``: the first layer's input needs none)."""
    torch.baddbmm(dweight, dout.transpose(1, 2), inp, beta=0, alpha=factor * scale,
                  out=dweight)
    torch.sum(dout, 1, dtype=torch.float32, out=dbias).mul_(factor)
    return torch.bmm(dout, weight) if input_grad else None


def relu_dropout_forward(
    pre: torch.Tensor, p: float, generators: Sequence[torch.Generator | None]
) -> tuple[torch.Tensor, float]:
    """ReLU, then dropout with probability ``p``, in place on ``pre`` (``(members, n,
    units)``): member ``k``'s mask is drawn from ``generators[k]`` (``None``: torch's global
    generator) exactly as :meth:`Dropout.cpu_mask` draws one. Returns ``(out, scale)``, the
    layer's output being ``scale * out`` (the kept units stay unscaled: ``scale`` rides on
    the next :func:`linear_forward`)."""
    if len(generators) != pre.shape[0]:
        raise ValueError(f"relu_dropout_forward needs one generator per member: got "
                         f"{len(generators)} for a stack of {pre.shape[0]}.")
    out = pre.relu_()
    if p == 0:
        return out, 1.0
    per_member = out[0].numel()
    if len(generators) == 1:  # one model: its one row of words
        bits = random_bits(per_member, generator=generators[0], device=out.device)
    else:
        bits = torch.empty(len(generators), (per_member + _LANES - 1) // _LANES,
                           dtype=torch.int64, device=out.device)
        for row, generator in zip(bits, generators, strict=True):
            random_bits(per_member, generator=generator, device=out.device, out=row)
    mask, scale = mask_from_bits(bits, out.shape, p, out.dtype)
    return out.mul_(mask), scale


def relu_dropout_backward(dout: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The backward of :func:`relu_dropout_forward`, given the gradient of ``out``: the
    gradient of ``pre`` is ``dout`` where the unit gave a non-zero output (positive and
    kept), 0 elsewhere; one pass for both."""
    return torch.ops.aten.threshold_backward(dout, out, 0)


def cross_entropy_forward(
    logits: torch.Tensor,
    y: torch.Tensor,
    *,
    nll: torch.Tensor | None = None,
    pred: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each example's cross-entropy (float32) and predicted class, written into ``nll`` and
    ``pred`` where given, and the log-probabilities (float32) for the backward:
    ``(nll, pred, log_p)``. The classes are the last dimension: ``logits`` of shape
    ``(n, classes)``, or ``(members, n, classes)`` for a stack of models (``y`` then
    ``(members, n)``)."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    target = y.unsqueeze(-1)
    nll = torch.gather(log_p, -1, target, out=None if nll is None else nll.unsqueeze(-1))
    nll = nll.view(y.shape).neg_()
    pred = torch.argmax(logits, dim=-1, out=pred)
    return nll, pred, log_p


def cross_entropy_backward(log_p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``n`` times the gradient of the mean cross-entropy with respect to the logits,
    ``softmax - one_hot(y)``, computed in place in ``log_p`` (which it consumes); any
    leading dimensions, as :func:`cross_entropy_forward`."""
    grad = log_p.exp_()
    return grad.scatter_add_(-1, y.unsqueeze(-1), grad.new_full((*y.shape, 1), -1.0))


def mlp_gradients(
    x: torch.Tensor,
    y: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    *,
    dropout: Sequence[float],
    generators: Sequence[torch.Generator | None],
    dweights: Sequence[torch.Tensor],
    dbiases: Sequence[torch.Tensor],
    nll: torch.Tensor | None = None,
    pred: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One update's forward and backward of a stack of MLPs (Linear, ReLU, dropout ...,
    Linear), layer by layer with the pairs above: the gradients of each member's mean
    cross-entropy go into ``dweights`` and ``dbiases``; returns each example's
    cross-entropy (float32) and predicted class, written into ``nll`` and ``pred`` where
    given. ``x`` is ``(members, n, in)`` and ``y`` ``(members, n)``; ``weights`` and
    ``biases`` are the stacked parameters in the products' dtype (``x``'s); ``dropout``
    holds the probability after each hidden layer, and member ``k``'s masks come from
    ``generators[k]``. The only hand-written backward of the
    project: :meth:`MLP.train_step` is a stack of one, the cohort trainer's
    :class:`~study.train.stacked.StackedMLP` a stack of many."""
    h = x
    inputs, scales = [h], [1.0]  # each product's input, and the scale it stands for
    for w, b, p in zip(weights[:-1], biases[:-1], dropout, strict=True):
        h, scale = relu_dropout_forward(linear_forward(h, w, b, scale=scales[-1]), p,
                                        generators)
        inputs.append(h)
        scales.append(scale)
    logits = linear_forward(h, weights[-1], biases[-1], scale=scales[-1])
    nll, pred, log_p = cross_entropy_forward(logits, y, nll=nll, pred=pred)
    grad = cross_entropy_backward(log_p, y).to(x.dtype)
    factor = 1.0 / y.shape[-1]  # the true gradient of the logits is factor * grad
    for k in range(len(weights) - 1, -1, -1):
        grad = linear_backward(grad, inputs[k], weights[k], scale=scales[k], factor=factor,
                               dweight=dweights[k], dbias=dbiases[k], input_grad=k > 0)
        if k > 0:  # through the ReLU and dropout below
            grad = relu_dropout_backward(grad, inputs[k])
            factor *= scales[k]
    return nll, pred


class MLP(nn.Module):
    """Multilayer perceptron with ReLU and dropout, its layers in one ``nn.Sequential``.

    With the defaults, ``layers`` is Flatten, Linear 784->512, ReLU, Dropout 0.2,
    Linear 512->256, ReLU, Dropout 0.2, Linear 256->10, so the lab's split into param groups
    ``model.layers[:6]`` / ``model.layers[6:]`` works unchanged.

    Args:
        in_features: input size after flattening (28 x 28 for MNIST).
        hidden: width of each hidden layer.
        num_classes: output logits.
        dropout: dropout probability after each hidden layer (0 disables it).
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (512, 256),
        num_classes: int = 10,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), but got {dropout=}.")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def __getstate__(self) -> dict:
        # copies and pickles leave out train_step's gradient buffers (made again on use)
        state = self.__dict__.copy()
        state.pop("_step_cache", None)
        return state

    def has_train_step(self, device: torch.device) -> bool:
        """:meth:`train_step` can stand in for autograd: a CPU, float32 parameters, and the
        layers as built (no layer or hook added since)."""
        layers = list(self.layers)
        shape = [nn.Flatten] + [nn.Linear, nn.ReLU, Dropout] * ((len(layers) - 2) // 3)
        return (device.type == "cpu" and len(layers) == len(shape) + 1
                and all(p.dtype == torch.float32 for p in self.parameters())
                and [type(m) for m in layers[:-1]] == shape and type(layers[-1]) is nn.Linear
                and not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                            for m in self.modules()))

    @torch.no_grad()
    def train_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bf16: bool = False,
        nll: torch.Tensor | None = None,
        pred: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step's forward and backward without autograd: sets every
        parameter's ``.grad`` (float32) to the gradient of the mean cross-entropy of
        ``(x, y)`` and returns ``(nll, pred)``: each example's cross-entropy (float32) and
        predicted class, written into ``nll`` and ``pred`` where given (views of an epoch's
        buffers: no tensor per update to add up).

        The operations of ``cross_entropy(model(x).float(), y).backward()`` in training mode
        (under ``torch.autocast(..., torch.bfloat16)`` with ``bf16``: the weights cast to
        bfloat16 for the products, the loss and the gradients in float32) with the same
        dropout masks, layer by layer (:func:`mlp_gradients` on a stack of this one model),
        so that no update pays for more than the products need: no autograd graph, the
        scalars on the products, and the gradients written into buffers allocated once
        (:meth:`_grad_buffers`; with ``bf16`` one cast of all weight gradients at once).

        The gradients equal autograd's to float32 rounding (within 1e-5 relative; in bf16
        within bfloat16 rounding, as the products are rounded at other points). Only for the
        layers as built (:meth:`has_train_step`).
        """
        dtype = torch.bfloat16 if bf16 else torch.float32
        linears = [m for m in self.layers if isinstance(m, nn.Linear)]
        buffers = self._grad_buffers(linears, dtype)
        nll, pred = mlp_gradients(  # a stack of one
            x.flatten(1).to(dtype).unsqueeze(0), y.unsqueeze(0),
            [m.weight.to(dtype).unsqueeze(0) for m in linears],
            [m.bias.to(dtype).unsqueeze(0) for m in linears],
            dropout=[m.p for m in self.layers if isinstance(m, Dropout)], generators=[None],
            dweights=buffers["weight_targets"], dbiases=buffers["bias_targets"],
            nll=None if nll is None else nll.unsqueeze(0),
            pred=None if pred is None else pred.unsqueeze(0),
        )
        if buffers["weights16"] is not None:
            buffers["weights32"].copy_(buffers["weights16"])
        return nll[0], pred[0]

    def _grad_buffers(self, linears: list[nn.Linear], dtype: torch.dtype) -> dict:
        """Where :meth:`train_step` writes the gradients (with a leading dimension of one, a
        stack of one model): views of one float32 buffer, which are the parameters'
        ``.grad`` (made again when a ``.grad`` was replaced, e.g. by ``zero_grad``); with
        bfloat16 the weight gradients go to a bfloat16 buffer first, copied into the float32
        one in one pass. Keys: ``weight_targets``,
        ``bias_targets``, ``weights16`` (``None`` in float32) and ``weights32``."""
        weights, biases = [m.weight for m in linears], [m.bias for m in linears]
        params = weights + biases
        cache = self.__dict__.get("_step_cache")
        if (cache is not None and cache["dtype"] == dtype
                and all(p.grad is g for p, g in zip(params, cache["grads"], strict=True))):
            return cache
        n_weights = sum(w.numel() for w in weights)
        flat = torch.empty(n_weights + sum(b.numel() for b in biases), device=weights[0].device)
        weights16 = (None if dtype == torch.float32
                     else torch.empty(n_weights, dtype=dtype, device=flat.device))
        targets, offset = [], 0
        for p in params:
            p.grad = flat[offset : offset + p.numel()].view_as(p)
            if weights16 is not None and offset < n_weights:
                targets.append(weights16[offset : offset + p.numel()].view_as(p))
            else:
                targets.append(p.grad)
            offset += p.numel()
        targets = [t.unsqueeze(0) for t in targets]  # as a stack of one model
        cache = {"dtype": dtype, "grads": [p.grad for p in params],
                 "weight_targets": targets[: len(weights)],
                 "bias_targets": targets[len(weights) :],
                 "weights16": weights16, "weights32": flat[:n_weights]}
        self.__dict__["_step_cache"] = cache  # not a module attribute: no state_dict
        return cache
