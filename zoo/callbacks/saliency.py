"""Saliency maps of an image classifier: which pixels the prediction is most sensitive to.

For a few test images, the gradient of the predicted class's logit with respect to the input
(Simonyan et al. 2014, "Deep inside convolutional networks"): its absolute value, the largest over
the colour channels, scaled to [0, 1] per image. A network that has learnt the digit lights up on
its strokes; one that has learnt a shortcut lights up elsewhere. Backpropagation run once more, to
the input instead of the weights.
"""

from __future__ import annotations

import lightning as L
import torch
from typing_extensions import override

from zoo.callbacks.common import logging_step, tensorboards


def saliency(net: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, C, H, W) images -> the (N, H, W) saliency maps in [0, 1], the predicted classes and their
    probabilities. Runs with gradients on, whatever mode the caller is in; the weights' gradients
    are left as they were."""
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x = images.detach().clone().float().requires_grad_(True)
            logits = net(x)
            probs = logits.softmax(dim=1)
            preds = probs.argmax(dim=1)
            chosen = logits.gather(1, preds[:, None]).sum()
            (grad,) = torch.autograd.grad(chosen, x)
        maps = grad.abs().amax(dim=1)
        flat = maps.flatten(1)
        low, high = flat.min(dim=1).values, flat.max(dim=1).values
        maps = (maps - low[:, None, None]) / (high - low).clamp_min(1e-12)[:, None, None]
        return maps.detach(), preds.detach(), probs.gather(1, preds[:, None]).squeeze(1).detach()
    finally:
        net.train(was_training)


class SaliencyMaps(L.Callback):
    """``test/saliency`` (Images tab): the first ``num_images`` test images, each above its saliency
    map, titled with the true and the predicted class and its probability. Image classifiers only
    (a batch of (N, C, H, W) images and a network giving class logits); for anything else it does
    nothing."""

    def __init__(self, num_images: int = 8):
        self.num_images = num_images
        self._done = False

    @override
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._done = False

    @override
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._done or self.num_images <= 0 or not trainer.is_global_zero:
            return
        self._done = True
        writers = tensorboards(trainer)
        x = batch[0] if isinstance(batch, (list, tuple)) else None
        if not writers or not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            return
        if not hasattr(pl_module, "num_classes"):
            return
        images, labels = x[: self.num_images], batch[1][: self.num_images]
        maps, preds, probs = saliency(pl_module.net, images)
        spec = getattr(trainer.datamodule, "spec", None)
        names = list(getattr(spec, "class_names", ()) or ())
        fig = saliency_figure(images.cpu(), maps.cpu(), labels.cpu(), preds.cpu(), probs.cpu(), names)
        for w in writers:
            w.add_figure("test/saliency", fig, logging_step(trainer), close=False)
        import matplotlib.pyplot as plt

        plt.close(fig)


def saliency_figure(images, maps, labels, preds, probs, names: list[str]):
    """Two rows: the images (scaled to [0, 1] each) and their saliency maps (bright: sensitive)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.2), dpi=100, squeeze=False)

    def name(i: int) -> str:
        return names[i] if 0 <= i < len(names) else str(i)

    for i in range(n):
        img = images[i].float()
        img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-12)
        if img.shape[0] == 1:
            axes[0, i].imshow(img[0].numpy(), cmap="gray")
        else:
            axes[0, i].imshow(img[:3].permute(1, 2, 0).numpy())
        axes[1, i].imshow(maps[i].numpy(), cmap="hot", vmin=0, vmax=1)
        ok = int(labels[i]) == int(preds[i])
        axes[0, i].set_title(
            f"{name(int(labels[i]))} -> {name(int(preds[i]))}\n{float(probs[i]):.0%}",
            fontsize=7,
            color="black" if ok else "red",
        )
        for row in (0, 1):
            axes[row, i].axis("off")
    fig.suptitle("true -> predicted (probability); below: |d logit / d pixel|", fontsize=8)
    fig.tight_layout()
    return fig
