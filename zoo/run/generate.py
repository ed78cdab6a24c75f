"""Sampling from a rebuilt checkpoint of a generative task, one function per task (generate.py).

Each takes what zoo.run.rebuild made of the checkpoint and generate.py's config; the sampling
itself is the task's own (zoo.tasks.language_model.sample_from, zoo.tasks.adversarial.sample_images).
"""

from __future__ import annotations

import math
import os

import torch

from zoo.errors import UserError


def _device(cfg) -> torch.device:
    use_gpu = cfg.get("accelerator", "auto") in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return torch.device("cuda" if use_gpu else "cpu")


def language_model(rebuilt, cfg) -> None:
    """``python generate.py ckpt_path=... prompt=... length=500 temperature=0.8 [top_k=40]``: print text."""
    from zoo.tasks.language_model import sample_from

    if not isinstance(cfg.length, int) or cfg.length < 1:
        raise UserError(f"length must be a positive whole number, got {cfg.length!r}; try length=500.")
    if not isinstance(cfg.temperature, (int, float)) or cfg.temperature < 0:
        raise UserError(
            f"temperature must be a number >= 0 (0: always the most likely character), got "
            f"{cfg.temperature!r}; try temperature=0.8."
        )
    if cfg.top_k is not None and (not isinstance(cfg.top_k, int) or cfg.top_k < 1):
        raise UserError(f"top_k must be a positive whole number or null, got {cfg.top_k!r}; try top_k=40.")
    spec, device = rebuilt.spec, _device(cfg)
    prompt = "" if cfg.prompt is None else str(cfg.prompt)
    text = sample_from(
        rebuilt.net.to(device),
        list(spec.vocabulary),
        prompt,
        cfg.length,
        float(cfg.temperature),
        cfg.top_k,
        spec.shape[0],
        torch.Generator().manual_seed(int(cfg.seed)),
        device,
    )
    print(text)


def adversarial(rebuilt, cfg) -> None:
    """generate.py for a GAN checkpoint: ``out=grid.png`` writes a grid of ``num_samples`` images
    (images under 28 px enlarged by whole pixels), ``out=samples.npy`` the images as an
    (N, C, H, W) float32 array in [0, 1] at their own size."""
    import numpy as np

    from zoo.tasks.adversarial import sample_images

    net, spec = rebuilt.net, rebuilt.spec
    out = str(cfg.out)
    kind = os.path.splitext(out)[1].lower()
    if kind not in (".png", ".npy"):
        raise UserError(f"out={out} must end in .png (a grid of images) or .npy (the raw samples as an array).")
    n = cfg.num_samples
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UserError(f"num_samples must be a positive whole number, got {n!r}; try num_samples=64.")
    labels = None
    if cfg.get("label") is not None:
        if not net.conditional:
            raise UserError(
                f"label={cfg.label} needs a class-conditional GAN (model.conditional=true), "
                f"and {cfg.ckpt_path} is not one; leave label out."
            )
        names = list(spec.class_names)
        label = names.index(str(cfg.label)) if str(cfg.label) in names else cfg.label
        if not isinstance(label, int) or not 0 <= label < net.num_classes:
            raise UserError(
                f"label={cfg.label} is not a class of {spec.name}; give an index 0-{net.num_classes - 1} "
                f"or one of: {', '.join(names)}."
            )
        labels = torch.full((n,), label, dtype=torch.long)
    device = _device(cfg)
    images = sample_images(net.to(device), n, int(cfg.seed), labels, device).cpu()
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    if kind == ".npy":
        np.save(out, images.numpy().astype(np.float32))
    else:
        from torchvision.utils import save_image

        from zoo.callbacks.common import image_grid

        columns = net.num_classes if net.conditional and labels is None else math.ceil(math.sqrt(n))
        save_image(image_grid(images, columns), out)  # as TensorBoard shows it: small images enlarged
    print(f"Wrote {n} samples of {spec.name} ({'x'.join(map(str, spec.shape))}) to {out}")


# task name -> the function that samples from its rebuilt checkpoint
GENERATORS = {"adversarial": adversarial, "language_model": language_model}
