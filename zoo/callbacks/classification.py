"""What a classifier gets wrong on the test split: the confusion matrix, misclassified images and texts."""

from __future__ import annotations

import math

import lightning as L
import torch
from typing_extensions import override

from zoo.callbacks.common import logging_step, tensorboards


def _class_names(trainer, n: int) -> list[str]:
    spec = getattr(trainer.datamodule, "spec", None)
    names = list(getattr(spec, "class_names", ()) or ())
    return names if len(names) == n else [str(i) for i in range(n)]


class ConfusionMatrixLogger(L.Callback):
    """An image of the confusion matrix of the test split, ``test/confusion_matrix``.

    Reads ``outputs["preds"]`` of the task's test step and the labels of the batch."""

    def __init__(self):
        self.counts: torch.Tensor | None = None

    @override
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.counts = None

    @override
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not isinstance(outputs, dict) or "preds" not in outputs:
            return
        k = getattr(pl_module, "num_classes", None) or int(outputs["preds"].max()) + 1
        y, preds = batch[1], outputs["preds"]
        counts = torch.bincount(y * k + preds, minlength=k * k).reshape(k, k)
        self.counts = counts if self.counts is None else self.counts + counts

    @override
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if trainer.world_size > 1 and self.counts is not None:  # DDP: each process tested its part
            self.counts = trainer.strategy.reduce(self.counts, reduce_op="sum")
        writers = tensorboards(trainer)
        if self.counts is None or not writers:
            return
        fig = plot_confusion_matrix(self.counts.cpu(), _class_names(trainer, len(self.counts)))
        for w in writers:
            w.add_figure("test/confusion_matrix", fig, trainer.global_step, close=False)
        import matplotlib.pyplot as plt

        plt.close(fig)


def plot_confusion_matrix(counts: torch.Tensor, names: list[str]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * k, 1.0 + 0.5 * k), dpi=100)
    rates = counts.float() / counts.sum(1, keepdim=True).clamp_min(1)
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                int(counts[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return fig


class MisclassifiedImages(L.Callback):
    """A grid of up to ``max_images`` wrongly classified test images with their true and predicted
    labels, ``test/misclassified``."""

    def __init__(self, max_images: int = 32):
        self.max_images = max_images
        self.found: list[tuple[torch.Tensor, int, int]] = []

    @override
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.found = []

    @override
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        room = self.max_images - len(self.found)
        if room <= 0 or not isinstance(outputs, dict) or "preds" not in outputs:
            return
        x, y = batch[0], batch[1]
        if x.dim() != 4:  # images only (token sequences: MisclassifiedText)
            return
        wrong = (outputs["preds"] != y).nonzero().flatten()[:room].tolist()
        for i in wrong:
            self.found.append((x[i].detach().float().cpu(), int(y[i]), int(outputs["preds"][i])))

    @override
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        writers = tensorboards(trainer)
        if not self.found or not writers:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = _class_names(trainer, getattr(pl_module, "num_classes", 0))
        cols = min(8, len(self.found))
        rows = math.ceil(len(self.found) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows), dpi=100, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, (img, true, pred) in zip(axes.flat, self.found):
            img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-8)  # undo normalisation for display
            ax.imshow(img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img[0].numpy(), cmap="gray")
            label = lambda i: names[i] if i < len(names) else str(i)  # noqa: E731
            ax.set_title(f"{label(true)} -> {label(pred)}", fontsize=7, color="red")
        fig.suptitle("true -> predicted", fontsize=8)
        fig.tight_layout()
        for w in writers:
            w.add_figure("test/misclassified", fig, trainer.global_step, close=False)
        plt.close(fig)


def decode_tokens(ids: list[int], vocabulary: list[str], pad_index: int = -1) -> str:
    """Token ids as text: characters joined as they are, words with spaces; padding left out."""
    tokens = [vocabulary[i] if 0 <= i < len(vocabulary) else "?" for i in ids if i != pad_index]
    return ("" if all(len(t) == 1 for t in vocabulary[2:]) else " ").join(tokens)


class MisclassifiedText(L.Callback):
    """Up to ``max_texts`` wrongly classified test sequences (token data: AG News), decoded with the
    data's vocabulary, with their true and predicted classes: ``test/misclassified`` in TensorBoard's
    Text tab. Reads ``outputs["preds"]`` of the task's test step and the labels of the batch."""

    def __init__(self, max_texts: int = 20):
        self.max_texts = max_texts
        self.found: list[tuple[list[int], int, int]] = []

    @override
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.found = []

    @override
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        room = self.max_texts - len(self.found)
        x, y = batch[0], batch[1]
        if (
            room <= 0
            or not isinstance(outputs, dict)
            or "preds" not in outputs
            or x.dim() != 2
            or x.is_floating_point()
        ):
            return
        for i in (outputs["preds"] != y).nonzero().flatten()[:room].tolist():
            self.found.append((x[i].tolist(), int(y[i]), int(outputs["preds"][i])))

    @override
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        spec = getattr(trainer.datamodule, "spec", None)
        writers = tensorboards(trainer)
        if not self.found or not writers or spec is None or not spec.vocabulary:
            return
        names = _class_names(trainer, getattr(pl_module, "num_classes", 0))
        label = lambda i: names[i] if i < len(names) else str(i)  # noqa: E731
        rows = ["| true | predicted | text |", "|---|---|---|"]
        for ids, true, pred in self.found:
            text = decode_tokens(ids, list(spec.vocabulary), spec.pad_index).replace("|", "\\|")
            rows.append(f"| {label(true)} | {label(pred)} | {text} |")
        for w in writers:
            w.add_text("test/misclassified", "\n".join(rows), logging_step(trainer))
