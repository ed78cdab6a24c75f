"""Layers named by type and position (``conv1``, ``bn1``, ``fc2``, ``lstm1``), the names every
per-layer view in TensorBoard uses (gradient norms, histograms, training diagnostics), so a chart says
which layer it shows instead of a module path such as ``net.features.0``.

A *layer* is a module that holds parameters of its own; they are numbered per type, in the order the
modules are registered (the order ``print(net)`` shows). In PyTorch's RNN, LSTM and GRU each stacked
layer is a layer of its own (``lstm1``, ``lstm2``; the reverse direction of a bidirectional one
``lstm1_reverse``), since that is where vanishing and exploding gradients show.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

# Most specific first: a ConvTranspose2d is not a "conv".
_KINDS: tuple[tuple[tuple[type, ...], str], ...] = (
    ((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), "deconv"),
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d), "conv"),
    ((nn.Linear, nn.Bilinear), "fc"),
    ((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm), "bn"),
    ((nn.LayerNorm,), "ln"),
    ((nn.GroupNorm,), "gn"),
    ((nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d), "in"),
    ((nn.Embedding, nn.EmbeddingBag), "embed"),
    ((nn.LSTM,), "lstm"),
    ((nn.GRU,), "gru"),
    ((nn.RNN,), "rnn"),
    ((nn.MultiheadAttention,), "attn"),
    ((nn.PReLU,), "prelu"),
)
# weight_ih_l0, bias_hh_l1_reverse, weight_hr_l0 (LSTM projections): the parameters of nn.RNN/LSTM/GRU
_RECURRENT_PARAM = re.compile(r"^((?:weight|bias)_(?:ih|hh|hr))_l(\d+)(_reverse)?$")


def kind_of(module: nn.Module) -> str:
    """The short name of a layer's type: conv, deconv, fc, bn, ln, gn, embed, lstm, gru, rnn, attn;
    any other module its class name in lower case."""
    for classes, kind in _KINDS:
        if isinstance(module, classes):
            return kind
    return type(module).__name__.lower()


def parameter_names(root: nn.Module, only: Iterable[str] | None = None) -> dict[str, tuple[str, str]]:
    """For each parameter of ``root`` (by its ``named_parameters`` name), its layer and its name in
    that layer: ``{"net.features.0.weight": ("conv1", "weight"), "net.rnn.weight_ih_l1": ("lstm2",
    "weight_ih"), ...}``. ``only``: number the layers among these parameters alone (one network of a
    GAN: its generator's first convolution is ``conv1`` whatever the discriminator holds)."""
    wanted = set(only) if only is not None else None
    counts: dict[str, int] = {}
    names: dict[str, tuple[str, str]] = {}
    seen: set[int] = set()
    for module_name, module in root.named_modules():
        own = [
            (f"{module_name}.{n}" if module_name else n, n)
            for n, p in module.named_parameters(recurse=False)
            if id(p) not in seen
        ]
        if wanted is not None:
            own = [(full, leaf) for full, leaf in own if full in wanted]
        if not own:
            continue
        for _, p in module.named_parameters(recurse=False):
            seen.add(id(p))
        kind = kind_of(module)
        if isinstance(module, nn.RNNBase):
            base = counts.get(kind, 0)
            stacked = 0
            for full, leaf in own:
                m = _RECURRENT_PARAM.match(leaf)
                if m is None:
                    names[full] = (f"{kind}{base + 1}", leaf)
                    continue
                stacked = max(stacked, int(m.group(2)) + 1)
                names[full] = (f"{kind}{base + int(m.group(2)) + 1}{m.group(3) or ''}", m.group(1))
            counts[kind] = base + max(stacked, 1)
            continue
        counts[kind] = counts.get(kind, 0) + 1
        for full, leaf in own:
            names[full] = (f"{kind}{counts[kind]}", leaf)
    return names


def layer_names(root: nn.Module, only: Iterable[str] | None = None) -> dict[str, str]:
    """For each parameter name of ``root``, the name of its layer (``conv1``, ``bn1``, ``fc2``)."""
    return {full: layer for full, (layer, _) in parameter_names(root, only).items()}
