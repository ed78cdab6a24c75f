"""Multi-layer perceptron: flatten, then Linear -> [BatchNorm] -> activation -> Dropout, repeated."""
from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU,
               "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "sigmoid": nn.Sigmoid}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    accepts = ("image",)

    def __init__(self, spec, widths: list[int] | int = (256, 128), depth: int | None = None,
                 activation: str = "relu", batchnorm: bool = False, dropout: float = 0.0):
        """``widths`` is the list of hidden sizes; or give one width and a ``depth`` to repeat it."""
        super().__init__()
        if isinstance(widths, int):
            widths = [widths] * (depth if depth is not None else 1)
        elif depth is not None and depth != len(widths):
            raise ValueError(f"model.depth={depth} disagrees with {len(widths)} model.widths; give one")
        layers: list[nn.Module] = [nn.Flatten()]
        width_in = math.prod(spec.shape)
        for width in widths:
            layers.append(nn.Linear(width_in, width, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers += [make_activation(activation), nn.Dropout(dropout)]
            width_in = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width_in, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
