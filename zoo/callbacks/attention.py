"""What the attention heads of a transformer look at, once per validation epoch.

Whether heads learn anything shows in their attention: a head that attends uniformly to every
position has the largest possible entropy (ln of the number of positions it may see) and tells the
model nothing; heads that learn attend sharply (to the previous character, to the start of a word).
"""

from __future__ import annotations

import math

import lightning as L
import torch
from typing_extensions import override

from zoo.callbacks.common import WATCH, image_grid, logging_step, tensorboards


class AttentionMaps(L.Callback):
    """For a network with ``attention_layers()`` (zoo/nets/transformer.py), after every validation
    epoch, on the first ``num_samples`` samples of the first validation batch:

    - ``watch/attention/entropy/layer<i>``: the mean entropy of layer i's attention, in nats, over heads,
      positions and samples; ``watch/attention/entropy_ratio/layer<i>`` the same divided by the entropy of
      attending uniformly to every position a query may see (1: the head learnt nothing; near 0:
      each query looks at one position).
    - ``watch/attention/layer<i>``: an image of each head's attention for the first sample (rows:
      queries, columns: keys; brighter: more attention), heads side by side.

    The attention matrices are formed only on this one forward pass (the training steps use the
    fused kernel, which never forms them). Any other network: nothing is logged."""

    def __init__(self, num_samples: int = 8, images: bool = True):
        self.num_samples, self.images = num_samples, images
        self._batch = None

    @override
    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and not trainer.sanity_checking:
            # a language model's evaluation windows may be longer than its context: show one context
            self._batch = batch[0][: self.num_samples, : getattr(pl_module.net, "context", None)]

    @override
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        net, x, self._batch = pl_module.net, self._batch, None
        writers = tensorboards(trainer)
        if x is None or not writers or not hasattr(net, "attention_layers"):
            return
        maps = attention_maps(net, x)
        step = logging_step(trainer)
        for i, (w, visible) in enumerate(maps):
            entropy, ratio = attention_entropy(w, visible)
            for writer in writers:
                writer.add_scalar(f"{WATCH}attention/entropy/layer{i}", entropy, step)
                writer.add_scalar(f"{WATCH}attention/entropy_ratio/layer{i}", ratio, step)
                if self.images:
                    heads = w[0][:, None]  # (heads, 1, queries, keys)
                    heads = heads / heads.flatten(1).amax(dim=1).clamp_min(1e-8)[:, None, None, None]
                    writer.add_image(f"{WATCH}attention/layer{i}", image_grid(heads, len(heads)), step)


@torch.no_grad()
def attention_maps(net: torch.nn.Module, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each attention layer's weights (B, heads, queries, keys) for input ``x``, in evaluation mode,
    and how many keys each query could see (broadcastable to (B, heads, queries))."""
    layers = net.attention_layers()
    was_training = net.training
    net.eval()
    try:
        for layer in layers:
            layer.keep_weights = True
        net(x)
        return [(layer.weights.float().cpu(), layer.visible.cpu()) for layer in layers]
    finally:
        for layer in layers:
            layer.keep_weights, layer.weights, layer.visible = False, None, None
        net.train(was_training)


def attention_entropy(weights: torch.Tensor, visible: torch.Tensor) -> tuple[float, float]:
    """(mean entropy in nats, mean of entropy / ln(positions each query may see)) of (B, H, T, S)
    attention weights, ``visible`` keys per query; a query that may see one key only is left out of
    the ratio."""
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(dim=-1)  # (B, H, T)
    visible = visible.float().expand_as(entropy)
    most = visible.clamp_min(1).log()
    seen = visible > 1
    ratio = (entropy[seen] / most[seen]).mean().item() if seen.any() else math.nan
    return entropy.mean().item(), ratio
