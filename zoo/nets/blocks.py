"""Building blocks the network families share: activations by name, token embeddings, and the
RevIN-wrapped forecast every forecaster is (``Forecaster``).

Reversible instance normalisation (RevIN, Kim et al., ICLR 2022): each input window is normalised
by its own per-channel mean and standard deviation (then a learnable per-channel scale and shift),
and the forecast is mapped back with the same statistics of the target channels. A series whose
level drifts between the training and the test period (ETT's oil temperature does) is then
forecast from its shape, not its level.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
}


INPLACE = ("relu", "leaky_relu", "elu", "silu")


def make_activation(name: str, inplace: bool = False) -> nn.Module:
    """The activation called ``name``; ``inplace`` where it can overwrite its input (ReLU and kin)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name](inplace=True) if inplace and name in INPLACE else ACTIVATIONS[name]()


class Residual(nn.Module):
    """x + block(x): the identity path carries the gradient past the block (He et al. 2016)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def pad_index(spec) -> int | None:
    """The id that pads the data's token sequences, or None when they are never padded."""
    return spec.pad_index if spec.kind == "tokens" and spec.pad_index >= 0 else None


def token_embedding(spec, size: int) -> nn.Embedding:
    """A vector of ``size`` per token id of the data's vocabulary; the padding id's stays zero."""
    return nn.Embedding(spec.vocab_size, size, padding_idx=pad_index(spec))


class RevIN(nn.Module):
    def __init__(self, channels: int, target_channels: int, affine: bool = True, eps: float = 1e-5):
        """``target_channels``: how many of the last input channels the forecast has."""
        super().__init__()
        self.targets, self.eps = target_channels, eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(B, L, C) window -> the normalised window and the statistics ``denormalize`` needs."""
        mean = x.mean(dim=1, keepdim=True).detach()
        std = (x.var(dim=1, keepdim=True, unbiased=False) + self.eps).sqrt().detach()
        x = (x - mean) / std
        if self.weight is not None:
            x = x * self.weight + self.bias
        return x, (mean, std)

    def denormalize(self, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B, H, target_channels) forecast in normalised units -> the units of the input."""
        mean, std = (s[..., -self.targets :] for s in stats)
        if self.weight is not None:
            y = (y - self.bias[-self.targets :]) / (self.weight[-self.targets :] + self.eps * self.eps)
        return y * std + mean


class Forecaster(nn.Module):
    """A network that maps a lookback window (B, L, C) to the next ``horizon`` steps of the target
    channels (B, H, targets): the window is instance-normalised (RevIN, unless ``revin=false``),
    ``body`` forecasts from it, and the forecast is mapped back to the window's own level and scale.

    A subclass builds its layers, calls ``add_revin`` (where it does so sets the order of the
    state-dict entries, which checkpoints rely on) and writes ``body``."""

    accepts = ("series",)

    def add_revin(self, spec, revin: bool) -> None:
        self.out_shape = (spec.horizon, spec.target_channels)
        self.revin = RevIN(spec.shape[1], spec.target_channels) if revin else None

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) window, normalised -> (B, H * targets) or (B, H, targets) forecast, normalised."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        y = self.body(x).reshape(-1, *self.out_shape)
        return self.revin.denormalize(y, stats) if stats is not None else y


def table_outputs(spec) -> int:
    """What a network on a table predicts per row: a logit per class, or one value (regression)."""
    return spec.num_classes if spec.task == "classify" else 1


def embedding_size(cardinality: int) -> int:
    """The width of a categorical column's embedding: fastai's rule of thumb (1.6 x cardinality^0.56),
    at least 2 and at most 32."""
    return int(min(32, max(2, round(1.6 * cardinality**0.56))))


class TableInput(nn.Module):
    """A row of a table (B, features), as datamodules/tables.py encodes it (spec.column_kinds), ->
    (B, width): the numeric values and missing indicators as they are, each categorical feature's
    index looked up in an embedding of its own (``embedding_size``; row 0 is "unknown"), side by side."""

    def __init__(self, spec):
        super().__init__()
        kinds = list(spec.column_kinds)
        dense = [i for i, k in enumerate(kinds) if k != "categorical"]
        categorical = [i for i, k in enumerate(kinds) if k == "categorical"]
        self.plain = not categorical  # all numbers: the row is the input as it is
        self.register_buffer("dense", torch.tensor(dense, dtype=torch.long), persistent=False)
        self.register_buffer("categorical", torch.tensor(categorical, dtype=torch.long), persistent=False)
        self.embeddings = nn.ModuleList(
            nn.Embedding(spec.cardinalities[i], embedding_size(spec.cardinalities[i])) for i in categorical
        )
        self.width = len(dense) + sum(e.embedding_dim for e in self.embeddings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.plain:
            return x
        codes = x.index_select(1, self.categorical).long()
        parts = [x.index_select(1, self.dense)] + [e(codes[:, j]) for j, e in enumerate(self.embeddings)]
        return torch.cat(parts, dim=1)
