"""Recurrent networks: Elman RNN, LSTM and GRU, for every kind of sequence the zoo has.

One network, three heads, chosen by what the data poses (``spec.task``):

- next-token prediction (``language_model``, token data): embedding -> stacked RNN -> a logit per
  position over the vocabulary. Unidirectional only: a backward pass would read the answer.
  ``forward_with_state`` carries the hidden state, so sampling costs one step per new token.
- classification: token ids (embedded; padded sequences are packed, so the RNN stops at each
  sequence's true length) or images read row by row (sequential MNIST: 28 steps of 28 pixels);
  the sequence is summarised by the last hidden state (both directions when bidirectional) or by
  the mean or max over its steps, then a linear head.
- forecasting (``forecast``, numeric series): the lookback window, instance-normalised (RevIN, on
  by default), summarised like a classifier's, then a linear head to horizon x target channels.

Dropout is applied between stacked layers (PyTorch's own) and before the head.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from zoo.nets.blocks import RevIN

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
POOLS = ("last", "mean", "max")


class Recurrent(nn.Module):
    accepts = ("tokens", "series", "image")
    cell = "lstm"

    def __init__(self, spec, hidden: int = 128, layers: int = 1, bidirectional: bool = False, embedding: int = 64,
                 pool: str = "last", revin: bool = True, dropout: float = 0.0, **cell_options):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"unknown pool '{pool}'; choose one of: {', '.join(POOLS)}")
        if hidden < 1 or layers < 1:
            raise ValueError(f"model.hidden and model.layers must be positive, got {hidden} and {layers}")
        self.kind, self.pool = spec.kind, pool
        self.next_token = spec.task == "language_model"
        if self.next_token and bidirectional:
            raise ValueError("a language model predicts each next token from the ones before it, and a backward "
                             "direction would read the answer; set model.bidirectional=false")
        self.pad_index = spec.pad_index if spec.kind == "tokens" and spec.pad_index >= 0 else None
        if spec.kind == "tokens":
            self.embed = nn.Embedding(spec.vocab_size, embedding, padding_idx=self.pad_index)
            width_in = embedding
        elif spec.kind == "series":
            width_in = spec.shape[1]
        else:  # an image, one row per step
            c, _, w = spec.shape
            width_in = c * w
        self.rnn = CELLS[self.cell](width_in, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                                    dropout=dropout if layers > 1 else 0.0, **cell_options)
        if self.cell == "lstm":  # forget-gate bias 1: remember by default early in training (Jozefowicz et al.)
            for name, p in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    p.data[hidden:2 * hidden] = 1.0
        self.dropout = nn.Dropout(dropout)
        width = hidden * (2 if bidirectional else 1)
        if self.next_token:
            self.head = nn.Linear(width, spec.vocab_size)
        elif spec.kind == "series":
            self.horizon, self.targets = spec.horizon, spec.target_channels
            self.head = nn.Linear(width, spec.horizon * spec.target_channels)
            self.revin = RevIN(spec.shape[1], spec.target_channels) if revin else None
        else:
            self.head = nn.Linear(width, spec.num_classes)

    def forward_with_state(self, x: torch.Tensor, state=None):
        """Next-token logits (B, T, vocab) for ids (B, T), and the state after the last step."""
        out, state = self.rnn(self.embed(x), state)
        return self.head(self.dropout(out)), state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.next_token:
            return self.forward_with_state(x)[0]
        lengths, stats = None, None
        if self.kind == "tokens":
            if self.pad_index is not None:
                lengths = (x != self.pad_index).sum(dim=1).clamp_min(1)
            x = self.embed(x)
        elif self.kind == "image":
            b, c, h, w = x.shape
            x = x.permute(0, 2, 1, 3).reshape(b, h, c * w)
        elif self.revin is not None:
            x, stats = self.revin.normalize(x)
        steps = x.shape[1]
        if lengths is not None:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, state = self.rnn(packed)
            out = pad_packed_sequence(out, batch_first=True, total_length=steps)[0]
        else:
            out, state = self.rnn(x)
        y = self.head(self.dropout(self.summarise(out, state, lengths)))
        if self.kind != "series":
            return y
        y = y.view(-1, self.horizon, self.targets)
        return self.revin.denormalize(y, stats) if stats is not None else y

    def summarise(self, out: torch.Tensor, state, lengths: torch.Tensor | None) -> torch.Tensor:
        """(B, width): the last hidden state of the top layer (each direction's own last step), or the
        mean or max of the outputs over each sequence's real steps."""
        if self.pool == "last":
            h = state[0] if isinstance(state, tuple) else state          # LSTM: (h, c)
            directions = 2 if self.rnn.bidirectional else 1
            return h[-directions:].transpose(0, 1).reshape(h.shape[1], -1)
        if lengths is None:
            return out.mean(dim=1) if self.pool == "mean" else out.amax(dim=1)
        mask = (torch.arange(out.shape[1], device=out.device)[None, :] < lengths.to(out.device)[:, None])[..., None]
        if self.pool == "mean":
            return (out * mask).sum(dim=1) / mask.sum(dim=1)
        return out.masked_fill(~mask, float("-inf")).amax(dim=1)


class RNN(Recurrent):
    """Elman RNN: h_t = tanh(W x_t + U h_{t-1} + b) (or ReLU)."""

    cell = "rnn"

    def __init__(self, spec, nonlinearity: str = "tanh", **kwargs):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"unknown nonlinearity '{nonlinearity}'; choose tanh or relu")
        super().__init__(spec, nonlinearity=nonlinearity, **kwargs)


class LSTM(Recurrent):
    """Long short-term memory (Hochreiter & Schmidhuber): gated cell state."""

    cell = "lstm"


class GRU(Recurrent):
    """Gated recurrent unit (Cho et al.): two gates, no separate cell state."""

    cell = "gru"
