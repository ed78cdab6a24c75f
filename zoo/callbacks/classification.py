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
    labels, ``test/misclassified``. On audio the clips themselves, playable in the Audio dashboard
    (``test/misclassified/<i>_true_<class>_pred_<class>``), beside a figure of their spectrograms
    (``test/misclassified`` in the Images dashboard; zoo/callbacks/audio.py)."""

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
        from zoo.callbacks.audio import is_audio

        if x.dim() != 4 and not is_audio(trainer, x):  # images and clips (token sequences: MisclassifiedText)
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
        if self.found[0][0].dim() == 1:  # audio clips
            from zoo.callbacks.audio import write_audio_view

            name = lambda i: names[i] if i < len(names) else str(i)  # noqa: E731
            titles = [f"true {name(t)} pred {name(p)}" for _, t, p in self.found]
            waves = torch.stack([w for w, _, _ in self.found])
            write_audio_view(trainer, "test/misclassified", waves, titles, trainer.global_step, ["red"] * len(titles))
            return
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


# ---- per-class quality, top losses, embeddings (test split) -----------------------------------


def _safe_tag(name: str) -> str:
    """A class name as one tag component (no '/' or spaces)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name)) or "_"


class _TestOutputs(L.Callback):
    """Collects the test split's labels and the task's ``outputs["logits"]`` (on the host)."""

    def __init__(self):
        self.labels: list[torch.Tensor] = []
        self.logits: list[torch.Tensor] = []

    @override
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.labels, self.logits = [], []

    @override
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if isinstance(outputs, dict) and "logits" in outputs and outputs["logits"].dim() == 2:
            self.labels.append(batch[1].detach().cpu())
            self.logits.append(outputs["logits"].detach().float().cpu())


class PerClassMetrics(_TestOutputs):
    """For a classifier, on the test split: precision, recall, F1 and support of every class as a
    table (``test/per_class`` in the Text tab, torchmetrics), and a precision-recall curve per
    class, one class against the rest (``test/pr_curve/<class>`` in the PR Curves tab). Reads the
    task's ``outputs["logits"]``; with DDP, the rank-zero process's part of the split."""

    def __init__(self, pr_curves: bool = True, max_classes: int = 50):
        super().__init__()
        self.pr_curves, self.max_classes = pr_curves, max_classes

    @override
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        writers = tensorboards(trainer)
        if not writers or not self.logits:
            return
        from torchmetrics.functional.classification import (
            multiclass_f1_score,
            multiclass_precision,
            multiclass_recall,
        )

        logits, y = torch.cat(self.logits), torch.cat(self.labels)
        k = logits.shape[1]
        names = _class_names(trainer, k)
        preds = logits.argmax(1)
        per = {
            "precision": multiclass_precision(preds, y, k, average=None),
            "recall": multiclass_recall(preds, y, k, average=None),
            "F1": multiclass_f1_score(preds, y, k, average=None),
        }
        support = torch.bincount(y, minlength=k)
        rows = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for c in range(k):
            cells = " | ".join(f"{float(per[m][c]):.4f}" for m in ("precision", "recall", "F1"))
            rows.append(f"| {names[c]} | {cells} | {int(support[c])} |")
        step = logging_step(trainer)
        probs = logits.softmax(1)
        for w in writers:
            w.add_text("test/per_class", "\n".join(rows), step)
            if self.pr_curves:
                for c in range(min(k, self.max_classes)):
                    w.add_pr_curve(f"test/pr_curve/{_safe_tag(names[c])}", y == c, probs[:, c], step)


class TopLosses(L.Callback):
    """The ``max_images`` test images the classifier is most wrong about (the highest cross-entropy),
    each titled with its predicted and true class and the probability given to each
    (``test/top_losses``), as fastai's ``plot_top_losses``. Images only."""

    def __init__(self, max_images: int = 16):
        self.max_images = max_images
        self.top: list[tuple[float, torch.Tensor, int, int, float, float]] = []

    @override
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.top = []

    @override
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        x, y = batch[0], batch[1]
        if not isinstance(outputs, dict) or "logits" not in outputs or x.dim() != 4 or self.max_images <= 0:
            return
        logits = outputs["logits"].float()
        losses = torch.nn.functional.cross_entropy(logits, y, reduction="none")
        floor = self.top[-1][0] if len(self.top) >= self.max_images else -math.inf
        candidates = (losses > floor).nonzero().flatten()
        if len(candidates) == 0:
            return
        probs = logits.softmax(1)
        best = candidates[losses[candidates].argsort(descending=True)[: self.max_images]].tolist()
        for i in best:
            pred = int(probs[i].argmax())
            self.top.append(
                (
                    float(losses[i]),
                    x[i].detach().float().cpu(),
                    int(y[i]),
                    pred,
                    float(probs[i, pred]),
                    float(probs[i, y[i]]),
                )
            )
        self.top = sorted(self.top, key=lambda t: -t[0])[: self.max_images]

    @override
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        writers = tensorboards(trainer)
        if not self.top or not writers:
            return
        from zoo.callbacks.watch import _titled_grid

        names = _class_names(trainer, getattr(pl_module, "num_classes", 0))
        label = lambda i: names[i] if i < len(names) else str(i)  # noqa: E731
        titles = [
            f"{label(pred)} {p_pred:.2f}\ntrue {label(true)} {p_true:.2f}\nloss {loss:.2f}"
            for loss, _, true, pred, p_pred, p_true in self.top
        ]
        fig = _titled_grid(
            torch.stack([t[1] for t in self.top]), titles, ["red" if t[2] != t[3] else "black" for t in self.top]
        )
        fig.suptitle("top losses: predicted p / true p / loss", fontsize=8)
        fig.tight_layout()
        for w in writers:
            w.add_figure("test/top_losses", fig, logging_step(trainer), close=False)
        import matplotlib.pyplot as plt

        plt.close(fig)


def penultimate_layer(net: torch.nn.Module) -> torch.nn.Module | None:
    """The network's last ``nn.Linear`` (its input is the penultimate layer's output)."""
    last = None
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            last = m
    return last


class Embeddings(L.Callback):
    """The penultimate layer's output for the first ``max_samples`` test samples in TensorBoard's
    Projector (``penultimate_layer``: PCA, t-SNE, UMAP), labelled with their class and, for images,
    shown as thumbnails. Read with a forward hook on the network's last ``nn.Linear``, during the
    test; 0 samples turns it off."""

    def __init__(self, max_samples: int = 500):
        self.max_samples = max_samples
        self.features: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.images: list[torch.Tensor] = []
        self._hook = None

    def _room(self) -> int:
        return self.max_samples - sum(len(f) for f in self.features)

    @override
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.features, self.labels, self.images = [], [], []
        layer = penultimate_layer(getattr(pl_module, "net", pl_module))
        if self.max_samples <= 0 or layer is None or not tensorboards(trainer):
            return

        def keep(module, inputs):
            room = self._room()
            if room > 0 and inputs and inputs[0].dim() == 2:
                self.features.append(inputs[0][:room].detach().float().cpu())

        self._hook = layer.register_forward_pre_hook(keep)

    @override
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        have = sum(len(f) for f in self.features)
        missing = have - sum(len(y) for y in self.labels)
        if missing > 0:
            self.labels.append(batch[1][:missing].detach().cpu())
            if batch[0].dim() == 4:
                self.images.append(batch[0][:missing].detach().float().cpu())

    @override
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        writers = tensorboards(trainer)
        if not self.features or not writers:
            return
        features, labels = torch.cat(self.features), torch.cat(self.labels)
        n = min(len(features), len(labels))
        names = _class_names(trainer, getattr(pl_module, "num_classes", 0) or int(labels.max()) + 1)
        metadata = [names[int(c)] if int(c) < len(names) else str(int(c)) for c in labels[:n]]
        label_img = None
        if self.images:
            imgs = torch.cat(self.images)[:n]
            lo = imgs.flatten(1).min(1).values[:, None, None, None]
            hi = imgs.flatten(1).max(1).values[:, None, None, None]
            label_img = (imgs - lo) / (hi - lo).clamp_min(1e-8)
        for w in writers:
            w.add_embedding(
                features[:n],
                metadata=metadata,
                label_img=label_img,
                global_step=logging_step(trainer),
                tag="penultimate_layer",
            )
