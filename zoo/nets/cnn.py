"""Convolutional nets: the LeNet-style image classifier and its 1-d versions over time.

- ``ImageCNN``: conv blocks (conv -> [BN] -> ReLU -> pool), then a small MLP head. Padding keeps the
  size through each conv, and a block pools only while the map is at least 2 px, so the same config
  runs on 8x8 digits, 28x28 MNIST and 32x32 CIFAR-10.
- ``CausalCNN`` (next-token prediction on text): token embedding -> causal conv blocks (each position
  sees itself and the past only; the dilation doubles per block, so 4 blocks of kernel 3 see 31
  tokens), no batchnorm or pooling (both would mix in the future) -> a logit per position.
- ``TokenCNN`` (classification of padded text): embedding -> conv blocks -> the max over each
  sequence's real positions -> hidden layer -> classes.
- On audio (``zoo.nets.audio``): the image CNN on each clip's log-mel spectrogram or MFCCs,
  computed by the network's front end.
- ``SeriesCNN`` (forecasting): the lookback window, instance-normalised (RevIN), channels as conv
  channels -> conv blocks with pooling -> hidden layer -> horizon x target channels.

``CNN`` (model=cnn) builds the one the data needs, with the options that apply to it.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.nets.blocks import Forecaster, make_activation, pad_index, token_embedding

POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
POOLS_1D = {"max": nn.MaxPool1d, "avg": nn.AvgPool1d}


def classifier_head(
    width_in: int, hidden: int, dropout: float, outputs: int, flatten: bool = False, activation: str = "relu"
) -> nn.Sequential:
    """[Flatten ->] Dropout -> Linear -> activation -> Dropout -> Linear."""
    return nn.Sequential(
        *([nn.Flatten()] if flatten else []),
        nn.Dropout(dropout),
        nn.Linear(width_in, hidden),
        make_activation(activation, inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, outputs),
    )


def conv1d_blocks(
    c_in: int, channels: list[int], kernel_size: int, batchnorm: bool, pooling: str | None, activation: str = "relu"
) -> tuple[nn.Sequential, int]:
    """Conv1d ('same' padding) -> [BatchNorm] -> activation [-> pool halving the length] per entry of
    ``channels``; and the channels of the last."""
    blocks: list[nn.Module] = []
    for c_out in channels:
        blocks.append(nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batchnorm))
        if batchnorm:
            blocks.append(nn.BatchNorm1d(c_out))
        blocks.append(make_activation(activation, inplace=True))
        if pooling in POOLS_1D:
            blocks.append(POOLS_1D[pooling](2, ceil_mode=True))
        c_in = c_out
    return nn.Sequential(*blocks), c_in


class ImageCNN(nn.Module):
    accepts = ("image",)

    def __init__(
        self,
        spec,
        channels: list[int] = (32, 64),
        kernel_size: int = 3,
        batchnorm: bool = True,
        pooling: str | None = "max",
        hidden: int = 128,
        dropout: float = 0.0,
        activation: str = "relu",
    ):
        super().__init__()
        c_in, h, w = spec.shape
        blocks: list[nn.Module] = []
        for c_out in channels:
            blocks += [nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batchnorm)]
            if batchnorm:
                blocks.append(nn.BatchNorm2d(c_out))
            blocks.append(make_activation(activation, inplace=True))
            if pooling in POOLS and min(h, w) >= 2:
                blocks.append(POOLS[pooling](2))
                h, w = h // 2, w // 2
            c_in = c_out
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.head = classifier_head(c_in * h * w, hidden, dropout, spec.num_classes, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CausalCNN(nn.Module):
    accepts = ("tokens",)

    def __init__(
        self,
        spec,
        channels: list[int] = (32, 64),
        kernel_size: int = 3,
        dropout: float = 0.0,
        embedding: int = 64,
        activation: str = "relu",
    ):
        super().__init__()
        self.embed = token_embedding(spec, embedding)
        blocks: list[nn.Module] = []
        c_in = embedding
        for i, c_out in enumerate(channels):
            dilation = 2**i
            blocks += [
                nn.ConstantPad1d(((kernel_size - 1) * dilation, 0), 0.0),
                nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation),
                make_activation(activation, inplace=True),
                nn.Dropout(dropout),
            ]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Conv1d(c_in, spec.vocab_size, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(self.embed(x).transpose(1, 2))  # (B, C, T)
        return self.head(h).transpose(1, 2)  # (B, T, vocab)


class TokenCNN(nn.Module):
    accepts = ("tokens",)

    def __init__(
        self,
        spec,
        channels: list[int] = (32, 64),
        kernel_size: int = 3,
        batchnorm: bool = True,
        hidden: int = 128,
        dropout: float = 0.0,
        embedding: int = 64,
        activation: str = "relu",
    ):
        super().__init__()
        self.pad_index = pad_index(spec)
        self.embed = token_embedding(spec, embedding)
        self.features, c_out = conv1d_blocks(embedding, channels, kernel_size, batchnorm, None, activation)
        self.head = classifier_head(c_out, hidden, dropout, spec.num_classes, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(self.embed(x).transpose(1, 2))[..., : x.shape[1]]  # (B, C, T)
        if self.pad_index is not None:
            h = h.masked_fill((x == self.pad_index)[:, None, :], float("-inf"))
        return self.head(h.amax(dim=2).clamp_min(-1e4))  # an all-padding row stays finite


class SeriesCNN(Forecaster):
    def __init__(
        self,
        spec,
        channels: list[int] = (32, 64),
        kernel_size: int = 3,
        batchnorm: bool = True,
        pooling: str | None = "max",
        hidden: int = 128,
        dropout: float = 0.0,
        revin: bool = True,
        activation: str = "relu",
    ):
        super().__init__()
        lookback, c_in = spec.shape
        self.features, _ = conv1d_blocks(c_in, channels, kernel_size, batchnorm, pooling, activation)
        with torch.no_grad():  # the length left after the blocks
            flat = self.features(torch.zeros(2, c_in, lookback)).flatten(1).shape[1]
        self.head = classifier_head(
            flat, hidden, dropout, spec.horizon * spec.target_channels, flatten=True, activation=activation
        )
        self.add_revin(spec, revin)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.transpose(1, 2)))


def CNN(
    spec,
    channels: list[int] = (32, 64),
    kernel_size: int = 3,
    batchnorm: bool = True,
    pooling: str | None = "max",
    hidden: int = 128,
    dropout: float = 0.0,
    embedding: int = 64,
    revin: bool = True,
    activation: str = "relu",
) -> nn.Module:
    """model=cnn: the convolutional net for the data's kind and task. ``embedding`` applies to token
    sequences, ``revin`` to series; a language model's causal blocks have no batchnorm or pooling,
    and a text classifier's no pooling."""
    if pooling not in (*POOLS, None, "none"):
        raise ValueError(f"unknown pooling '{pooling}'; choose one of: max, avg, none")
    make_activation(activation)  # an unknown name is refused before anything is built
    if spec.kind == "image":
        return ImageCNN(spec, channels, kernel_size, batchnorm, pooling, hidden, dropout, activation)
    if spec.kind == "audio":  # the image CNN on the clip's spectrogram (zoo/nets/audio.py)
        from zoo.nets.audio import on_spectrogram

        return on_spectrogram(
            spec,
            ImageCNN,
            channels=channels,
            kernel_size=kernel_size,
            batchnorm=batchnorm,
            pooling=pooling,
            hidden=hidden,
            dropout=dropout,
            activation=activation,
        )
    if spec.kind == "series":
        return SeriesCNN(spec, channels, kernel_size, batchnorm, pooling, hidden, dropout, revin, activation)
    if spec.task == "language_model":
        return CausalCNN(spec, channels, kernel_size, dropout, embedding, activation)
    return TokenCNN(spec, channels, kernel_size, batchnorm, hidden, dropout, embedding, activation)


CNN.accepts = ("image", "tokens", "series", "audio")
