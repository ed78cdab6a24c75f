"""What a generative model makes, every few epochs: image grids from fixed noise, real images, text."""

from __future__ import annotations

import math

import lightning as L
from typing_extensions import override

from zoo.callbacks.common import OnFirstBatch, image_grid, logging_step, tensorboards


class SampleGrid(L.Callback):
    """A grid of the images a generative model makes from the same fixed noise, at the end of every
    ``every_n_epochs`` training epochs (``samples/fixed_noise``): the same latent points epoch after
    epoch, so the grid shows how the generator changes. Works with any task that has
    ``sample(n, seed) -> (N, C, H, W) in [0, 1]``; a class-conditional one puts a class per column."""

    def __init__(self, num_samples: int = 100, every_n_epochs: int = 1, seed: int = 0):
        self.num_samples, self.every_n_epochs, self.seed = num_samples, every_n_epochs, seed

    @override
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        writers = tensorboards(trainer)
        sample = getattr(pl_module, "sample", None)
        if (
            not writers
            or sample is None
            or self.every_n_epochs <= 0
            or (trainer.current_epoch + 1) % self.every_n_epochs
        ):
            return
        images = sample(self.num_samples, self.seed)
        columns = getattr(pl_module, "grid_columns", None) or math.ceil(math.sqrt(len(images)))
        grid = image_grid(images, columns)
        for w in writers:
            w.add_image("samples/fixed_noise", grid, logging_step(trainer))


class RealImages(OnFirstBatch):
    """The first training batch, once, as a grid (``samples/real``): what the samples should look
    like, as the model sees the data (after augmentation). Images are mapped to [0, 1] by the task's
    ``to_unit`` when it has one, else each image by its own minimum and maximum."""

    def __init__(self, num_images: int = 100):
        self.num_images = num_images

    @override
    def write(self, writers, trainer, pl_module, batch) -> None:
        x = batch[0][: self.num_images].detach()
        to_unit = getattr(pl_module, "to_unit", None)
        if to_unit is not None:
            x = to_unit(x)
        else:
            lo = x.flatten(1).min(1).values[:, None, None, None]
            hi = x.flatten(1).max(1).values[:, None, None, None]
            x = (x - lo) / (hi - lo).clamp_min(1e-8)
        grid = image_grid(x, math.ceil(math.sqrt(len(x))))
        for w in writers:
            w.add_image("samples/real", grid, logging_step(trainer))


# ---- sequences: generated text, misclassified texts, forecasts ------------------------------------


def _markdown_block(text: str) -> str:
    """Text shown verbatim in TensorBoard's Text tab (markdown: an indented block keeps the lines)."""
    return "\n".join("    " + line for line in text.split("\n"))


class GeneratedText(L.Callback):
    """A sample of text from a language model after every ``every_n_epochs`` validation epochs,
    ``samples/generated`` in TensorBoard's Text tab. The same ``seed`` every time, so two samples
    differ only by what the model learnt in between. Works with any task that has
    ``sample_text(prompt, length, temperature, seed=...)`` (LanguageModelTask)."""

    def __init__(
        self, every_n_epochs: int = 1, prompt: str = "", length: int = 300, temperature: float = 0.8, seed: int = 0
    ):
        self.every_n_epochs, self.prompt, self.length = every_n_epochs, str(prompt or ""), length
        self.temperature, self.seed = temperature, seed

    @override
    def on_fit_start(self, trainer, pl_module) -> None:
        sample = getattr(pl_module, "sample_text", None)
        if sample is not None and self.prompt:
            sample(self.prompt, 0)  # a prompt the vocabulary cannot spell fails now, not after an epoch

    @override
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        sample = getattr(pl_module, "sample_text", None)
        writers = tensorboards(trainer)
        if (
            trainer.sanity_checking
            or sample is None
            or not writers
            or self.every_n_epochs <= 0
            or (trainer.current_epoch + 1) % self.every_n_epochs
        ):
            return
        text = sample(self.prompt, self.length, self.temperature, seed=self.seed)
        for w in writers:
            w.add_text("samples/generated", _markdown_block(text), logging_step(trainer))
