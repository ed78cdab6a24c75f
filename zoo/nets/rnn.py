"""Recurrent networks: Elman RNN, LSTM and GRU, for every kind of sequence the zoo has.

One stacked cell (``Recurrent``), with the input and head of what the data poses:

- ``RecurrentLanguageModel`` (next-token prediction, token data): embedding -> stacked RNN -> a logit
  per position over the vocabulary. Unidirectional only: a backward pass would read the answer.
  ``forward_with_state`` carries the hidden state, so sampling costs one step per new token.
- ``TokenRecurrentClassifier`` and ``ImageRecurrentClassifier``: token ids (embedded; padded
  sequences are packed, so the RNN stops at each sequence's true length) or images read row by row
  (sequential MNIST: 28 steps of 28 pixels); the sequence is summarised by the last hidden state
  (both directions when bidirectional) or by the mean or max over its steps, then a linear head.
- On audio (``zoo.nets.audio``): the image classifier reading a clip's spectrogram one frame per step.
- ``SegmentRecurrentForecaster`` (numeric series, ``segment``: the default): the lookback window,
  instance-normalised (RevIN), each channel read on its own in segments of ``segment`` steps, one
  cell step per segment; the horizon decoded in parallel, a segment per step (SegRNN).
- ``RecurrentForecaster`` (numeric series, ``segment=None``): the window read step by step, all
  channels together, summarised like a classifier's, then a linear head to horizon x target channels.

Dropout is applied between stacked layers (PyTorch's own) and before the head. ``RNN``, ``LSTM`` and
``GRU`` (model=rnn, lstm, gru) build the one the data needs with their cell.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from zoo.nets.blocks import Forecaster, pad_index, token_embedding
from zoo.nets.linear import TimeLinear

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
POOLS = ("last", "mean", "max")


class Recurrent(nn.Module):
    """A stacked recurrent cell over (B, T, width_in) steps and the summary of a whole sequence.

    ``embed`` (token ids, or a segment-wise forecaster's segments) is registered before the cell: it
    is created, and draws its initial values from the random generator, before the cell does."""

    def __init__(
        self,
        cell: str,
        width_in: int,
        hidden: int,
        layers: int,
        bidirectional: bool,
        dropout: float,
        pool: str = "last",
        embed: nn.Module | None = None,
        **cell_options,
    ):
        super().__init__()
        if embed is not None:
            self.embed = embed
        self.pool = pool
        self.rnn = CELLS[cell](
            width_in,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
            **cell_options,
        )
        if cell == "lstm":  # forget-gate bias 1: remember by default early in training (Jozefowicz et al.)
            for name, p in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    p.data[hidden : 2 * hidden] = 1.0
        self.dropout = nn.Dropout(dropout)
        self.width = hidden * (2 if bidirectional else 1)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, width_in) steps -> (B, width) summary, after dropout; ``lengths``: each sequence's
        real steps (the rest is padding, packed away)."""
        if lengths is not None:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, state = self.rnn(packed)
            out = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]
        else:
            out, state = self.rnn(x)
        return self.dropout(self.summarise(out, state, lengths))

    def summarise(self, out: torch.Tensor, state, lengths: torch.Tensor | None) -> torch.Tensor:
        """(B, width): the last hidden state of the top layer (each direction's own last step), or the
        mean or max of the outputs over each sequence's real steps."""
        if self.pool == "last":
            h = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
            directions = 2 if self.rnn.bidirectional else 1
            return h[-directions:].transpose(0, 1).reshape(h.shape[1], -1)
        if lengths is None:
            return out.mean(dim=1) if self.pool == "mean" else out.amax(dim=1)
        mask = (torch.arange(out.shape[1], device=out.device)[None, :] < lengths.to(out.device)[:, None])[..., None]
        if self.pool == "mean":
            return (out * mask).sum(dim=1) / mask.sum(dim=1)
        return out.masked_fill(~mask, float("-inf")).amax(dim=1)


class RecurrentLanguageModel(Recurrent):
    accepts = ("tokens",)

    def __init__(
        self,
        cell: str,
        spec,
        hidden: int = 128,
        layers: int = 1,
        embedding: int = 64,
        dropout: float = 0.0,
        **cell_options,
    ):
        super().__init__(
            cell, embedding, hidden, layers, False, dropout, embed=token_embedding(spec, embedding), **cell_options
        )
        self.head = nn.Linear(self.width, spec.vocab_size)

    def forward_with_state(self, x: torch.Tensor, state=None):
        """Next-token logits (B, T, vocab) for ids (B, T), and the state after the last step."""
        out, state = self.rnn(self.embed(x), state)
        return self.head(self.dropout(out)), state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_state(x)[0]


class TokenRecurrentClassifier(Recurrent):
    accepts = ("tokens",)

    def __init__(
        self,
        cell: str,
        spec,
        hidden: int = 128,
        layers: int = 1,
        bidirectional: bool = False,
        embedding: int = 64,
        pool: str = "last",
        dropout: float = 0.0,
        **cell_options,
    ):
        super().__init__(
            cell,
            embedding,
            hidden,
            layers,
            bidirectional,
            dropout,
            pool,
            embed=token_embedding(spec, embedding),
            **cell_options,
        )
        self.pad_index = pad_index(spec)
        self.head = nn.Linear(self.width, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = (x != self.pad_index).sum(dim=1).clamp_min(1) if self.pad_index is not None else None
        return self.head(self.encode(self.embed(x), lengths))


class ImageRecurrentClassifier(Recurrent):
    accepts = ("image",)

    def __init__(
        self,
        cell: str,
        spec,
        hidden: int = 128,
        layers: int = 1,
        bidirectional: bool = False,
        pool: str = "last",
        dropout: float = 0.0,
        **cell_options,
    ):
        c, _, w = spec.shape
        super().__init__(cell, c * w, hidden, layers, bidirectional, dropout, pool, **cell_options)
        self.head = nn.Linear(self.width, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return self.head(self.encode(x.permute(0, 2, 1, 3).reshape(b, h, c * w)))  # one row per step


class RecurrentForecaster(Forecaster, Recurrent):
    accepts = ("series",)

    def __init__(
        self,
        cell: str,
        spec,
        hidden: int = 128,
        layers: int = 1,
        bidirectional: bool = False,
        pool: str = "last",
        revin: bool = True,
        dropout: float = 0.0,
        linear_path: bool = False,
        **cell_options,
    ):
        super().__init__(cell, spec.shape[1], hidden, layers, bidirectional, dropout, pool, **cell_options)
        self.head = nn.Linear(self.width, spec.horizon * spec.target_channels)
        self.add_revin(spec, revin)
        # A linear map from the window to the horizon beside the recurrent summary (DLinear's map,
        # shared by the channels): the recurrence learns what a linear forecast misses. Registered
        # last, so checkpoints without it keep their entries' order.
        self.linear = TimeLinear(spec.shape[0], spec.horizon, spec.shape[1], individual=False) if linear_path else None

    def body(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.encode(x)).reshape(-1, *self.out_shape)
        if self.linear is not None:
            y = y + self.linear(x.transpose(1, 2))[:, -self.out_shape[1] :].transpose(1, 2)
        return y


class SegmentRecurrentForecaster(Forecaster, Recurrent):
    """Segment-wise recurrence for numeric series (SegRNN, Lin et al. 2023). Each channel is read on
    its own: its window is cut into segments of ``segment`` steps, each segment embedded by one linear
    map, and the cell steps once per segment (a window of 96 in segments of 24 is 4 steps, not 96; a
    window that is not a whole number of segments is padded in front with its first value). The
    horizon is decoded in parallel, one segment per step from the window's final state, the cell
    reading a learned embedding of which segment and which channel it forecasts (parallel multi-step
    forecasting): no step waits for another's output, and errors do not compound."""

    accepts = ("series",)

    def __init__(
        self,
        cell: str,
        spec,
        segment: int,
        hidden: int = 128,
        layers: int = 1,
        revin: bool = True,
        dropout: float = 0.0,
        linear_path: bool = False,
        **cell_options,
    ):
        lookback, channels = spec.shape
        if not 1 <= segment <= lookback:
            raise ValueError(
                f"model.segment={segment} does not fit the lookback window of {lookback} steps; "
                f"use 1 to {lookback}, best a divisor of the window (24 for a window of 96 or 336)"
            )
        # each segment of the window embedded by one linear map: the cell's input at each step
        embed = nn.Sequential(nn.Linear(segment, hidden), nn.ReLU())
        super().__init__(cell, hidden, hidden, layers, False, dropout, embed=embed, **cell_options)
        self.segment = segment
        self.segments_in, self.segments_out = -(-lookback // segment), -(-spec.horizon // segment)
        # The decoder's input: which output segment (half the width) and which channel (the other half);
        # embeddings (not bare parameters), so that per-layer views name them embed1 and embed2.
        self.position = nn.Embedding(self.segments_out, hidden // 2)
        self.channel = nn.Embedding(channels, hidden - hidden // 2)
        self.head = nn.Linear(hidden, segment)
        self.add_revin(spec, revin)
        self.linear = TimeLinear(lookback, spec.horizon, channels, individual=False) if linear_path else None

    def body(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, channels = x.shape
        w, n_in, n_out = self.segment, self.segments_in, self.segments_out
        window = x.transpose(1, 2)  # (B, C, L)
        if window.shape[-1] < n_in * w:  # a window of 100 in segments of 24: its first step 20 times before it
            window = nn.functional.pad(window, (n_in * w - window.shape[-1], 0), mode="replicate")
        segments = window.reshape(batch * channels, n_in, w)
        _, state = self.rnn(self.embed(segments))
        # every (window, channel) state once per output segment, in the order of the queries below
        if isinstance(state, tuple):  # LSTM: (h, c)
            state = tuple(part.repeat_interleave(n_out, dim=1) for part in state)
        else:
            state = state.repeat_interleave(n_out, dim=1)
        position, channel = self.position.weight, self.channel.weight
        query = torch.cat([position.expand(channels, -1, -1), channel[:, None].expand(-1, n_out, -1)], dim=-1)
        # query: (C, n_out, hidden)
        out, _ = self.rnn(query.expand(batch, -1, -1, -1).reshape(-1, 1, query.shape[-1]), state)
        y = self.head(self.dropout(out)).reshape(batch, channels, n_out * w)[:, :, : self.out_shape[0]].transpose(1, 2)
        if self.linear is not None:
            y = y + self.linear(x.transpose(1, 2)).transpose(1, 2)
        return y[:, :, -self.out_shape[1] :]


def recurrent(
    cell: str,
    spec,
    hidden: int = 128,
    layers: int = 1,
    bidirectional: bool = False,
    embedding: int = 64,
    pool: str = "last",
    revin: bool = True,
    dropout: float = 0.0,
    linear_path: bool = False,
    segment: int | None = None,
    **cell_options,
) -> nn.Module:
    """The recurrent network with ``cell`` for the data's kind and task. ``embedding`` applies to
    token sequences, ``revin``, ``linear_path`` and ``segment`` to series, ``pool`` and
    ``bidirectional`` to all but language models and segment-wise forecasters."""
    if pool not in POOLS:
        raise ValueError(f"unknown pool '{pool}'; choose one of: {', '.join(POOLS)}")
    if hidden < 1 or layers < 1:
        raise ValueError(f"model.hidden and model.layers must be positive, got {hidden} and {layers}")
    sizes = dict(hidden=hidden, layers=layers, dropout=dropout, **cell_options)
    if spec.task == "language_model":
        if bidirectional:
            raise ValueError(
                "a language model predicts each next token from the ones before it, and a backward "
                "direction would read the answer; set model.bidirectional=false"
            )
        return RecurrentLanguageModel(cell, spec, embedding=embedding, **sizes)
    if spec.kind == "tokens":
        return TokenRecurrentClassifier(
            cell, spec, bidirectional=bidirectional, embedding=embedding, pool=pool, **sizes
        )
    if spec.kind == "series":
        if segment is None:
            return RecurrentForecaster(
                cell, spec, bidirectional=bidirectional, pool=pool, revin=revin, linear_path=linear_path, **sizes
            )
        if bidirectional or pool != "last":
            option = "model.bidirectional=false" if bidirectional else "model.pool=last"
            raise ValueError(
                "a segment-wise forecaster decodes the horizon from the state after the window's last "
                f"segment; set {option} or model.segment=null"
            )
        return SegmentRecurrentForecaster(cell, spec, segment, revin=revin, linear_path=linear_path, **sizes)
    if spec.kind == "audio":  # one spectrogram frame per step (zoo/nets/audio.py)
        from zoo.nets.audio import on_spectrogram

        body = partial(ImageRecurrentClassifier, cell)
        return on_spectrogram(spec, body, frames_as_rows=True, bidirectional=bidirectional, pool=pool, **sizes)
    return ImageRecurrentClassifier(cell, spec, bidirectional=bidirectional, pool=pool, **sizes)


def RNN(spec, nonlinearity: str = "tanh", **options) -> nn.Module:
    """model=rnn: Elman RNN, h_t = tanh(W x_t + U h_{t-1} + b) (or ReLU)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"unknown nonlinearity '{nonlinearity}'; choose tanh or relu")
    return recurrent("rnn", spec, nonlinearity=nonlinearity, **options)


def LSTM(spec, **options) -> nn.Module:
    """model=lstm: long short-term memory (Hochreiter & Schmidhuber), a gated cell state."""
    return recurrent("lstm", spec, **options)


def GRU(spec, **options) -> nn.Module:
    """model=gru: gated recurrent unit (Cho et al.), two gates and no separate cell state."""
    return recurrent("gru", spec, **options)


RNN.accepts = LSTM.accepts = GRU.accepts = ("tokens", "series", "image", "audio")
