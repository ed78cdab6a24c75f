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

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.RNNBase)


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
def initialise(net: nn.Module, scheme: str = "default") -> nn.Module:
    """Re-draw the weights of ``net``'s linear, convolutional and recurrent layers by ``scheme``
    (one of ``INITS``) and zero their biases; ``default`` leaves the network as built."""
    if scheme not in INITS:
        raise ValueError(f"unknown init '{scheme}'; choose one of: {', '.join(INITS)}")
    if scheme == "default":
        return net
    for module in net.modules():
        if not isinstance(module, _WEIGHTED):
            continue
        for name, p in module.named_parameters(recurse=False):
            if name.startswith("weight") and p.dim() >= 2:
                _init_weight(p, scheme)
            elif name.startswith("bias") and not isinstance(module, nn.RNNBase):  # an LSTM's forget-gate bias stays
                p.zero_()
    return net
