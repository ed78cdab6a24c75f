"""Multi-layer perceptron: flatten, then Linear -> [BatchNorm] -> activation -> Dropout, repeated;
with ``residual=true`` each hidden layer whose width equals the one before adds its input to its
output (x + layer(x)), so the gradient reaches the first layers of a deep MLP.

On images it classifies (``MLPClassifier``). On a table it classifies or regresses (``MLPTable``):
numeric columns as they are, categorical ones through embeddings sized from the spec. On a numeric series it forecasts (``MLPForecaster``):
the whole lookback window (instance-normalised by RevIN unless ``revin=false``) in, horizon x target
channels out. ``MLP`` (model=mlp) builds the one the data's kind needs."""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.nets.blocks import Forecaster, Residual, TableInput, make_activation, table_outputs


def hidden_layers(
    width_in: int,
    widths: list[int] | int,
    depth: int | None,
    activation: str,
    batchnorm: bool,
    dropout: float,
    residual: bool = False,
) -> tuple[nn.Sequential, int]:
    """Flatten, then the hidden layers; and the width of the last. ``widths`` is the list of hidden
    sizes, or one width and a ``depth`` to repeat it. ``residual``: a layer as wide as its input is
    ``Residual`` (x + layer(x)); without it the parameter names are those of a plain MLP."""
    if isinstance(widths, int):
        widths = [widths] * (depth if depth is not None else 1)
    elif depth is not None and depth != len(widths):
        raise ValueError(f"model.depth={depth} disagrees with {len(widths)} model.widths; give one")
    layers: list[nn.Module] = [nn.Flatten()]
    for width in widths:
        layer: list[nn.Module] = [nn.Linear(width_in, width, bias=not batchnorm)]
        if batchnorm:
            layer.append(nn.BatchNorm1d(width))
        layer += [make_activation(activation), nn.Dropout(dropout)]
        layers += [Residual(nn.Sequential(*layer))] if residual and width == width_in else layer
        width_in = width
    return nn.Sequential(*layers), width_in


class MLPClassifier(nn.Module):
    """An image -> class logits: the flattened pixels, then the hidden layers and the output layer.
    A network of another input and output (``MLPTable``) overrides ``make_input`` and ``outputs``."""

    accepts = ("image",)

    def __init__(
        self,
        spec,
        widths: list[int] | int = (256, 128),
        depth: int | None = None,
        activation: str = "relu",
        batchnorm: bool = False,
        dropout: float = 0.0,
        residual: bool = False,
    ):
        super().__init__()
        width_in = self.make_input(spec)
        self.features, width = hidden_layers(width_in, widths, depth, activation, batchnorm, dropout, residual)
        self.head = nn.Linear(width, self.outputs(spec))

    def make_input(self, spec) -> int:
        """The width of one input row, after any input layers of the network's own (registered here)."""
        return math.prod(spec.shape)

    def outputs(self, spec) -> int:
        return spec.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLPForecaster(Forecaster):
    def __init__(
        self,
        spec,
        widths: list[int] | int = (256, 128),
        depth: int | None = None,
        activation: str = "relu",
        batchnorm: bool = False,
        dropout: float = 0.0,
        revin: bool = True,
        residual: bool = False,
    ):
        super().__init__()
        self.features, width = hidden_layers(
            math.prod(spec.shape), widths, depth, activation, batchnorm, dropout, residual
        )
        self.head = nn.Linear(width, spec.horizon * spec.target_channels)
        self.add_revin(spec, revin)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLPTable(MLPClassifier):
    """A row of a table (datamodules/tables.py) -> class logits or one value: ``TableInput`` (numbers
    and categorical embeddings side by side), then the hidden layers."""

    accepts = ("table",)

    def make_input(self, spec) -> int:
        self.input = TableInput(spec)
        return self.input.width

    def outputs(self, spec) -> int:
        return table_outputs(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.input(x))


def MLP(
    spec,
    widths: list[int] | int = (256, 128),
    depth: int | None = None,
    activation: str = "relu",
    batchnorm: bool = False,
    dropout: float = 0.0,
    revin: bool = True,
    residual: bool = False,
) -> nn.Module:
    """model=mlp: a classifier of images, a forecaster of series, or a classifier or regressor of
    tables; ``revin`` applies to series."""
    if spec.kind == "table":
        return MLPTable(spec, widths, depth, activation, batchnorm, dropout, residual)
    if spec.kind == "series":
        return MLPForecaster(spec, widths, depth, activation, batchnorm, dropout, revin, residual)
    return MLPClassifier(spec, widths, depth, activation, batchnorm, dropout, residual)


MLP.accepts = ("image", "series", "table")
