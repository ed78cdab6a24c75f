"""Multi-layer perceptron: flatten, then Linear -> [BatchNorm] -> activation -> Dropout, repeated.

On images it classifies. On a numeric series it forecasts: the whole lookback window (instance-
normalised by RevIN unless ``revin=false``) in, horizon x target channels out."""
from __future__ import annotations

import math

import torch
from torch import nn

from zoo.nets.blocks import RevIN

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU,
               "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "sigmoid": nn.Sigmoid}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    accepts = ("image", "series")

    def __init__(self, spec, widths: list[int] | int = (256, 128), depth: int | None = None,
                 activation: str = "relu", batchnorm: bool = False, dropout: float = 0.0, revin: bool = True):
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
        self.forecast = spec.kind == "series"
        if not self.forecast:
            self.head = nn.Linear(width_in, spec.num_classes)
        else:  # series: the next `horizon` steps of the target channels
            self.out_shape = (spec.horizon, spec.target_channels)
            self.head = nn.Linear(width_in, spec.horizon * spec.target_channels)
            self.revin = RevIN(spec.shape[1], spec.target_channels) if revin else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.forecast:
            return self.head(self.features(x))
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        y = self.head(self.features(x)).view(-1, *self.out_shape)
        return self.revin.denormalize(y, stats) if stats is not None else y
