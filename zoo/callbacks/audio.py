"""Audio in TensorBoard: clips in the Audio dashboard, their spectrograms in the Images dashboard.

Used by the input-samples and misclassified callbacks (``zoo/callbacks/watch.py``,
``zoo/callbacks/classification.py``) when the data is audio (``spec.kind == "audio"``): each clip is
written with ``SummaryWriter.add_audio`` under a tag that names it (``train/samples/03_seven``,
``test/misclassified/02_true_seven_pred_one``), so it can be played beside a figure of the
log-mel spectrograms of the same clips, titled alike (what the network's front end computes, in
dB before normalisation).
"""

from __future__ import annotations

import math

import torch

from zoo.callbacks.classification import _safe_tag


def is_audio(trainer, x) -> bool:
    spec = getattr(trainer.datamodule, "spec", None) if trainer.datamodule is not None else None
    return getattr(spec, "kind", None) == "audio" and isinstance(x, torch.Tensor) and x.dim() == 2


def spectrograms(spec, waves: torch.Tensor) -> torch.Tensor:
    """(N, samples) -> (N, mels, frames) log-mel spectrograms in dB (the front end's, as data)."""
    from dataclasses import replace

    from zoo.nets.audio import AudioFeatures

    features = AudioFeatures(replace(spec, features="logmel", n_mfcc=0)).eval()
    with torch.no_grad():
        return features.decibels(waves.float().cpu())


def write_clips(writers, tag: str, waves: torch.Tensor, titles: list[str], sample_rate: int, step: int) -> None:
    """Each clip under ``<tag>/<i>_<title>`` in the Audio dashboard (amplitudes clipped to [-1, 1])."""
    for i, (wave, title) in enumerate(zip(waves, titles)):
        clip = wave.detach().float().cpu().clamp(-1, 1)[None]
        for w in writers:
            w.add_audio(f"{tag}/{i:02d}_{_safe_tag(title)}", clip, step, sample_rate=sample_rate)


def spectrogram_figure(spec, waves: torch.Tensor, titles: list[str], colors: list[str] | None = None):
    """A matplotlib figure: the clips' log-mel spectrograms (time across, low frequencies at the
    bottom) in a grid of up to 4 columns, each with its title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = spectrograms(spec, waves)
    cols = min(4, len(images))
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 1.9 * rows), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (ax, img, title) in enumerate(zip(axes.flat, images, titles)):
        ax.imshow(img.numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set_title(f"{k:02d} {title}", fontsize=7, color=(colors[k] if colors else "black"))
    fig.tight_layout()
    return fig


def write_audio_view(trainer, tag: str, waves: torch.Tensor, titles: list[str], step: int, colors=None) -> None:
    """The clips in the Audio dashboard and their spectrograms in the Images dashboard, both ``tag``."""
    from zoo.callbacks.common import tensorboards

    writers = tensorboards(trainer)
    spec = trainer.datamodule.spec
    if not writers or len(waves) == 0:
        return
    write_clips(writers, tag, waves, titles, spec.sample_rate, step)
    fig = spectrogram_figure(spec, waves, titles, colors)
    for w in writers:
        w.add_figure(tag, fig, step, close=False)
    import matplotlib.pyplot as plt

    plt.close(fig)
