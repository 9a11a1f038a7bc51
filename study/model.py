"""The lab's MLP for MNIST."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP"]


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
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
