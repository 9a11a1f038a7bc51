"""The lab's MLP for MNIST."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "Dropout"]

_LANES = 4  # 16-bit lanes in one random 64-bit integer


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose random mask is cheaper to draw on the CPU.

    torch draws one Bernoulli number per element on the CPU, about a sixth of an epoch of the
    lab's MLP. Here each element's keep/drop decision comes from 16 random bits, four per
    random 64-bit integer: it is kept with probability ``k / 65536``, ``k = round((1 - p) *
    65536)`` (0.8000031 for ``p = 0.2``), and scaled by its inverse, so the expected output
    equals the input exactly. On a GPU torch's own fused dropout is used.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        keep = round((1.0 - self.p) * 65536)
        n = x.numel()
        bits = torch.randint(-(2**63), 2**63 - 1, ((n + _LANES - 1) // _LANES,),
                             dtype=torch.int64, device=x.device)
        lanes = bits.view(torch.int16)[:n].view(x.shape)  # uniform in [-32768, 32767]
        mask = lanes < keep - 32768
        return (x * mask).mul_(65536.0 / keep)  # in place: one tensor less per layer



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
