"""LeNet-style convolutional net: conv blocks (conv -> [BN] -> ReLU -> pool), then a small MLP head.

Padding keeps the size through each conv, and a block pools only while the map is at least 2 px,
so the same config runs on 8x8 digits, 28x28 MNIST and 32x32 CIFAR-10.

On token sequences and numeric series ``CNN(spec, ...)`` builds a ``SequenceCNN``: the same blocks
as 1-d convolutions over time (see there).
"""
from __future__ import annotations

import torch
from torch import nn

from zoo.nets.blocks import RevIN

POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
POOLS_1D = {"max": nn.MaxPool1d, "avg": nn.AvgPool1d}


class CNN(nn.Module):
    accepts = ("image", "tokens", "series")

    def __new__(cls, spec=None, *args, **kwargs):
        # Like pathlib.Path: CNN(spec) on a sequence is a SequenceCNN (a subclass, so its __init__ runs).
        if cls is CNN and getattr(spec, "kind", "image") != "image":
            cls = SequenceCNN
        return super().__new__(cls)

    def __init__(self, spec, channels: list[int] = (32, 64), kernel_size: int = 3,
                 batchnorm: bool = True, pooling: str | None = "max", hidden: int = 128,
                 dropout: float = 0.0, embedding: int = 64, revin: bool = True):
        """``embedding`` (token sequences) and ``revin`` (series) are options of ``SequenceCNN``."""
        super().__init__()
        if pooling not in (*POOLS, None, "none"):
            raise ValueError(f"unknown pooling '{pooling}'; choose one of: max, avg, none")
        c_in, h, w = spec.shape
        blocks: list[nn.Module] = []
        for c_out in channels:
            blocks += [nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batchnorm)]
            if batchnorm:
                blocks.append(nn.BatchNorm2d(c_out))
            blocks.append(nn.ReLU(inplace=True))
            if pooling in POOLS and min(h, w) >= 2:
                blocks.append(POOLS[pooling](2))
                h, w = h // 2, w // 2
            c_in = c_out
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(c_in * h * w, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, spec.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SequenceCNN(CNN):
    """1-d convolutions over time, with the options of ``CNN``:

    - next-token prediction (text): token embedding -> causal conv blocks (each position sees itself
      and the past only; the dilation doubles per block, so 4 blocks of kernel 3 see 31 tokens), no
      batchnorm or pooling (both would mix in the future) -> a logit per position;
    - classification (padded text): embedding -> conv blocks -> the max over each sequence's real
      positions -> hidden layer -> classes;
    - forecasting (series): the lookback window, instance-normalised (RevIN), channels as conv
      channels -> conv blocks with pooling -> hidden layer -> horizon x target channels.
    """

    def __init__(self, spec, channels: list[int] = (32, 64), kernel_size: int = 3, batchnorm: bool = True,
                 pooling: str | None = "max", hidden: int = 128, dropout: float = 0.0, embedding: int = 64,
                 revin: bool = True):
        nn.Module.__init__(self)
        if pooling not in (*POOLS_1D, None, "none"):
            raise ValueError(f"unknown pooling '{pooling}'; choose one of: max, avg, none")
        self.kind, self.next_token = spec.kind, spec.task == "language_model"
        self.pad_index = spec.pad_index if spec.kind == "tokens" and spec.pad_index >= 0 else None
        if spec.kind == "tokens":
            self.embed = nn.Embedding(spec.vocab_size, embedding, padding_idx=self.pad_index)
            c_in = embedding
        else:
            c_in = spec.shape[1]
        blocks: list[nn.Module] = []
        for i, c_out in enumerate(channels):
            if self.next_token:
                dilation = 2 ** i
                blocks += [nn.ConstantPad1d(((kernel_size - 1) * dilation, 0), 0.0),
                           nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation), nn.ReLU(inplace=True),
                           nn.Dropout(dropout)]
            else:
                blocks.append(nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batchnorm))
                if batchnorm:
                    blocks.append(nn.BatchNorm1d(c_out))
                blocks.append(nn.ReLU(inplace=True))
                if spec.kind == "series" and pooling in POOLS_1D:
                    blocks.append(POOLS_1D[pooling](2, ceil_mode=True))
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        if self.next_token:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Conv1d(c_in, spec.vocab_size, 1))
        elif spec.kind == "series":
            self.out_shape = (spec.horizon, spec.target_channels)
            with torch.no_grad():  # the length left after the blocks
                flat = self.features(torch.zeros(2, spec.shape[1], spec.shape[0])).flatten(1).shape[1]
            self.head = nn.Sequential(
                nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, hidden), nn.ReLU(inplace=True),
                nn.Dropout(dropout), nn.Linear(hidden, spec.horizon * spec.target_channels))
            self.revin = RevIN(spec.shape[1], spec.target_channels) if revin else None
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, hidden), nn.ReLU(inplace=True),
                                      nn.Dropout(dropout), nn.Linear(hidden, spec.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "series":
            stats = None
            if self.revin is not None:
                x, stats = self.revin.normalize(x)
            y = self.head(self.features(x.transpose(1, 2))).view(-1, *self.out_shape)
            return self.revin.denormalize(y, stats) if stats is not None else y
        steps = x.shape[1]
        h = self.features(self.embed(x).transpose(1, 2))[..., :steps]   # (B, C, T)
        if self.next_token:
            return self.head(h).transpose(1, 2)                          # (B, T, vocab)
        if self.pad_index is not None:
            h = h.masked_fill((x == self.pad_index)[:, None, :], float("-inf"))
        return self.head(h.amax(dim=2).clamp_min(-1e4))  # an all-padding row stays finite
