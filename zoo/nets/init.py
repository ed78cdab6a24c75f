"""Weight initialisation by name (``model.init``), for any network of the zoo.

- ``default``: what each layer does by itself (PyTorch's uniform fan-in rule; a GAN's N(0, 0.02)).
- ``xavier``: Glorot & Bengio (2010), uniform, variance 2 / (fan_in + fan_out): keeps the signal's
  scale through sigmoid and tanh layers.
- ``kaiming``: He et al. (2015), normal, variance 2 / fan_in: keeps the scale through ReLU layers.
- ``orthogonal``: Saxe et al. (2014), orthogonal matrices: every direction kept, the classic choice
  for recurrent weights.
- ``normal``: N(0, 1), the naive choice: the sums of a wide layer are large, sigmoid and tanh
  saturate and gradients vanish (the initialisation lesson shows it).

Weights of linear, convolutional and recurrent layers get the scheme and the biases of linear and
convolutional layers zero (a recurrent layer keeps its biases: an LSTM's forget-gate bias of 1);
embeddings and normalisation layers keep their own initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

INITS = ("default", "xavier", "kaiming", "orthogonal", "normal")

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
# Layers that keep their own initialisation: embeddings (a lookup, not a map) and normalisation.
_OWN = (nn.Embedding, nn.EmbeddingBag, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


def _init_weight(w: torch.Tensor, scheme: str) -> None:
    if scheme == "xavier":
        nn.init.xavier_uniform_(w)
    elif scheme == "kaiming":
        nn.init.kaiming_normal_(w, nonlinearity="relu")
    elif scheme == "orthogonal":
        nn.init.orthogonal_(w)
    else:
        nn.init.normal_(w, 0.0, 1.0)


@torch.no_grad()
def initialise(net: nn.Module, scheme: str = "default", gain: float = 1.0) -> nn.Module:
    """Re-draw the weights of ``net``'s linear, convolutional and recurrent layers by ``scheme``
    (one of ``INITS``) and zero their biases, then scale those weights by ``gain``; ``default``
    with gain 1 leaves the network as built. (A recurrent layer's weights scaled by a gain above 1,
    after ``orthogonal``, grow its state at every step: exploding gradients.)"""
    if scheme not in INITS:
        raise ValueError(f"unknown init '{scheme}'; choose one of: {', '.join(INITS)}")
    if not gain > 0:
        raise ValueError(f"model.init_gain must be positive, got {gain}")
    if scheme == "default" and gain == 1.0:
        return net
    for module in net.modules():
        if isinstance(module, _OWN):
            continue
        for name, p in module.named_parameters(recurse=False):
            if name.startswith("weight") and p.dim() >= 2:
                if scheme != "default":
                    # a convolution's kernel is one map (torch counts its fans); another layer's
                    # stack of matrices (zoo.nets.linear.TimeLinear's, one per channel) is one each
                    for w in [p] if p.dim() == 2 or isinstance(module, _CONV) else p.flatten(0, -3):
                        _init_weight(w, scheme)
                p.mul_(gain)
            elif (
                name.startswith("bias") and scheme != "default" and not isinstance(module, nn.RNNBase)
            ):  # an LSTM's forget-gate bias stays
                p.zero_()
    return net
