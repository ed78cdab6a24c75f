"""Generative adversarial networks: a generator G(z) and a discriminator D(x) in one module.

``GAN`` is the MLP pair of Goodfellow et al. (2014); ``DCGAN`` the convolutional pair of Radford
et al. (2016): transposed convolutions up from a small map in G, strided convolutions down in D,
BatchNorm in both, LeakyReLU in D. Both are sized from the data spec (1 or 3 channels; 8, 28 and
32 px images) and can be class-conditional: G gets a one-hot label beside its noise, D scores the
pair through a projection (Miyato & Koyama, 2018): D(x, y) = head(h) + <embed(y), h>.

How the two are trained against each other (zoo/tasks/adversarial.py) is chosen here too, because it is
part of what the model is (a WGAN-GP is a different model from a GAN): ``loss``, ``n_critic``,
``label_smoothing``, ``gp_weight`` and ``d_lr_scale`` are kept in ``self.objective``.

G's images are in [-1, 1] (tanh); the task maps real images into the same range.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("non_saturating", "hinge", "wgan-gp")
NORMS = ("batch", "layer", "none", "auto")
AUGMENTS = ("translation", "cutout", "color")  # DiffAugment's policies (Zhao et al. 2020)


class MinibatchStd(nn.Module):
    """Appends one feature to each sample (a channel for feature maps): the standard deviation of
    every feature over the batch, averaged (Karras et al. 2018, ProGAN). A generator that draws the
    same few images gives a batch with little spread, which the discriminator can then see and
    punish: a remedy against mode collapse."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        spread = h.float().std(dim=0, unbiased=False).mean().to(h.dtype) if len(h) > 1 else h.new_zeros(())
        extra = spread.expand(h.shape[0], 1, *h.shape[2:])
        return torch.cat([h, extra], dim=1)


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """Differentiable augmentation of a batch of images in [-1, 1] (Zhao et al. 2020, DiffAugment),
    applied to real and generated images alike before the discriminator, so it cannot memorise a
    small training set and the generator still learns the un-augmented images: ``translation``
    (shift by up to 1/8 of the side, zero padded), ``cutout`` (a square of half the side blanked),
    ``color`` (random brightness, saturation and contrast)."""
    if not policy:
        return x
    n, _, h, w = x.shape
    if "color" in policy:
        x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean
    if "translation" in policy:
        sh, sw = max(1, h // 8), max(1, w // 8)
        dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
        dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
        rows = (torch.arange(h, device=x.device)[None, :, None] + dy).clamp(-1, h)  # -1 and h: the padding
        cols = (torch.arange(w, device=x.device)[None, None, :] + dx).clamp(-1, w)
        padded = F.pad(x, (1, 1, 1, 1))
        idx_b = torch.arange(n, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[idx_b, rows + 1, cols + 1].permute(0, 3, 1, 2)
    if "cutout" in policy:
        ch, cw = max(1, h // 2), max(1, w // 2)
        cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
        cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
        ys = torch.arange(h, device=x.device)[None, :, None]
        xs = torch.arange(w, device=x.device)[None, None, :]
        inside = ((ys - cy).abs() <= ch // 2) & ((xs - cx).abs() <= cw // 2)
        x = x * (~inside).unsqueeze(1).to(x.dtype)
    return x


def image_output() -> nn.Tanh:
    """The generator's last layer: pixels in [-1, 1]. Marked as an output (``is_output``), so the
    saturation diagnosis leaves it alone: a generator drawing MNIST's black background should sit at
    -1, which in a hidden tanh would be saturation."""
    tanh = nn.Tanh()
    tanh.is_output = True
    return tanh


def _init_weights(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: N(0, 0.02) weights, BatchNorm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Adversarial(nn.Module):
    """What both GANs share: noise, labels, the projection head and the training objective."""

    accepts = ("image",)
    task = "adversarial"

    def __init__(
        self,
        spec,
        latent_dim: int,
        conditional: bool | str,
        dropout: float,
        loss: str,
        n_critic: int,
        label_smoothing: float,
        gp_weight: float,
        d_lr_scale: float,
        ema: float = 0.0,
        augment: str | list | tuple | None = None,
    ):
        super().__init__()
        if not isinstance(latent_dim, int) or isinstance(latent_dim, bool) or latent_dim < 1:
            raise ValueError(
                f"model.latent_dim must be a positive whole number, got {latent_dim!r}; try model.latent_dim=64"
            )
        if loss not in LOSSES:
            raise ValueError(f"model.loss={loss} is not a GAN loss; choose one of: {', '.join(LOSSES)}")
        if not isinstance(n_critic, int) or n_critic < 1:
            raise ValueError(f"model.n_critic must be a positive whole number, got {n_critic!r}; try model.n_critic=1")
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"model.label_smoothing must be in [0, 0.5), got {label_smoothing!r}; try 0.1")
        if label_smoothing and loss != "non_saturating":
            raise ValueError(
                f"model.label_smoothing applies to the non_saturating loss only, not {loss}; "
                f"set model.label_smoothing=0"
            )
        if not d_lr_scale > 0:
            raise ValueError(f"model.d_lr_scale must be positive, got {d_lr_scale!r}")
        if conditional == "auto":  # class-conditional where the data has classes: every class is drawn
            conditional = spec.num_classes >= 2
        if not isinstance(conditional, bool):
            raise ValueError(f"model.conditional must be true, false or auto, got {conditional!r}")
        if conditional and spec.num_classes < 2:
            raise ValueError(
                f"model.conditional=true needs class labels and {spec.name} has none; set model.conditional=false"
            )
        if isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0.0 <= ema < 1.0:
            raise ValueError(f"model.ema must be a decay in [0, 1) (0: off), got {ema!r}; try model.ema=0.999")
        if augment in (None, "", "none"):
            augment = ()
        policy = tuple(a.strip() for a in augment.split(",")) if isinstance(augment, str) else tuple(augment)
        unknown = [a for a in policy if a not in AUGMENTS]
        if unknown:
            raise ValueError(
                f"model.augment=[{','.join(map(str, policy))}] names {unknown[0]!r}, which is no DiffAugment policy; "
                f"use a list of {', '.join(AUGMENTS)} (model.augment=[translation,cutout]), or none"
            )
        self.ema_decay = float(ema)
        self.augment_policy = policy
        self.ema_steps = 0  # the average's warm-up; stored in checkpoints by the adversarial task
        self.image_shape = tuple(spec.shape)
        self.latent_dim = latent_dim
        self.num_classes = spec.num_classes if conditional else 0
        self.dropout = dropout
        self.objective = {
            "loss": loss,
            "n_critic": n_critic,
            "label_smoothing": float(label_smoothing),
            "gp_weight": float(gp_weight),
            "d_lr_scale": float(d_lr_scale),
        }

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def d_norm_for(self, d_norm: str, default: str) -> str:
        """``auto``: the family's default, but never batch statistics under the gradient penalty,
        which is a per-sample quantity that BatchNorm would mix across the batch."""
        if d_norm not in NORMS:
            raise ValueError(f"model.d_norm={d_norm} is not a normalisation; choose one of: {', '.join(NORMS)}")
        if d_norm == "auto":
            return "layer" if self.objective["loss"] == "wgan-gp" else default
        if d_norm == "batch" and self.objective["loss"] == "wgan-gp":
            raise ValueError(
                "model.loss=wgan-gp needs a discriminator without batchnorm (its gradient penalty "
                "is per sample); set model.d_norm=layer"
            )
        return d_norm

    # -- sampling -----------------------------------------------------------------------------
    def noise(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        z = torch.randn(n, self.latent_dim, generator=generator)
        return z.to(device) if device is not None else z

    def cycle_labels(self, n: int, device=None) -> torch.Tensor | None:
        """0, 1, ..., K-1, 0, 1, ...: a grid with K columns shows one class per column."""
        if not self.conditional:
            return None
        return torch.arange(n, device=device) % self.num_classes

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] from noise (and labels, when conditional); in eval mode (validation,
        sample grids, generate.py, export) from the moving average of G's weights when ``ema`` is on."""
        generator = self.generator_ema if self.generator_ema is not None and not self.training else self.generator
        return generator(self._with_label(z, labels))

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """What the discriminator sees of an image in training (DiffAugment, ``model.augment``)."""
        return diff_augment(x, self.augment_policy) if self.training else x

    def finish(self, spectral_norm: bool) -> None:
        """The end of every GAN's construction: the DCGAN initialisation, spectral normalisation of
        D's layers (Miyato et al. 2018: each layer's weight divided by its largest singular value, so
        D cannot change too fast for G to follow), and the moving-average copy of G."""
        _init_weights(self)
        if spectral_norm:
            for module in [*self.discriminator.modules(), self.head]:
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.utils.parametrizations.spectral_norm(module)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False) if self.ema_decay > 0 else None

    @torch.no_grad()
    def update_ema(self) -> None:
        """One step of the moving average of G's weights (after each step of G), with the usual
        warm-up: the decay is min(ema, (1 + t) / (10 + t)), so early steps are not averaged over
        weights from before training. Buffers (BatchNorm's statistics) are copied."""
        if self.generator_ema is None:
            return
        self.ema_steps += 1
        decay = min(self.ema_decay, (1 + self.ema_steps) / (10 + self.ema_steps))
        for avg, p in zip(self.generator_ema.parameters(), self.generator.parameters()):
            avg.lerp_(p.detach(), 1 - decay)
        for avg, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            avg.copy_(b)

    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """One score per image: a logit for the non-saturating loss, a critic value otherwise."""
        return self._score(self.discriminator(x), labels)

    def _with_label(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if not self.conditional:
            return z
        if labels is None:
            raise ValueError("a conditional GAN needs the labels of the images to generate")
        return torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1)

    def _score(self, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        out = self.head(h).squeeze(1)
        if self.conditional:
            out = out + (self.embed(labels) * h).sum(dim=1)
        return out

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.generate(z, labels)


class GAN(Adversarial):
    """MLP generator (Linear -> [BatchNorm] -> ReLU, widths in order, then tanh) and MLP
    discriminator (the widths reversed: Linear -> LeakyReLU(0.2) -> Dropout)."""

    def __init__(
        self,
        spec,
        latent_dim: int = 64,
        widths: list[int] = (256, 512),
        batchnorm: bool = True,
        d_norm: str = "none",
        dropout: float = 0.3,
        conditional: bool | str = "auto",
        loss: str = "non_saturating",
        n_critic: int = 1,
        label_smoothing: float = 0.0,
        gp_weight: float = 10.0,
        d_lr_scale: float = 1.0,
        spectral_norm: bool = False,
        minibatch_std: bool = False,
        ema: float = 0.0,
        augment: str | list | None = None,
    ):
        super().__init__(
            spec, latent_dim, conditional, dropout, loss, n_critic, label_smoothing, gp_weight, d_lr_scale, ema, augment
        )
        widths = [widths] if isinstance(widths, int) else list(widths)
        if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"model.widths must be a list of positive whole numbers, got {widths!r}")
        pixels = math.prod(self.image_shape)
        d_norm = self.d_norm_for(d_norm, "none")

        g: list[nn.Module] = []
        width_in = latent_dim + self.num_classes
        for w in widths:
            g += [nn.Linear(width_in, w, bias=not batchnorm)]
            g += [nn.BatchNorm1d(w)] if batchnorm else []
            g += [nn.ReLU(inplace=True)]
            width_in = w
        g += [nn.Linear(width_in, pixels), image_output(), nn.Unflatten(1, self.image_shape)]
        self.generator = nn.Sequential(*g)

        d: list[nn.Module] = [nn.Flatten()]
        width_in = pixels
        for i, w in enumerate(reversed(widths)):
            d += [nn.Linear(width_in, w, bias=d_norm != "batch" or i == 0)]
            if i > 0 and d_norm == "batch":
                d.append(nn.BatchNorm1d(w))
            elif i > 0 and d_norm == "layer":
                d.append(nn.LayerNorm(w))
            d += [nn.LeakyReLU(0.2, inplace=True), nn.Dropout(dropout)]
            width_in = w
        if minibatch_std:
            d.append(MinibatchStd())
            width_in += 1
        self.discriminator = nn.Sequential(*d)
        self.head = nn.Linear(width_in, 1)
        self.embed = nn.Embedding(self.num_classes, width_in) if self.conditional else None
        self.finish(spectral_norm)


def halvings(size: int) -> int:
    """How often a side can be halved exactly while staying at least 4 px: 32 -> 3, 28 -> 2, 8 -> 1."""
    k = 0
    while size % 2 == 0 and size // 2 >= 4:
        size //= 2
        k += 1
    return k


class DCGAN(Adversarial):
    """Convolutional GAN. G: Linear to a (base x 2^(k-1))-channel map of side H / 2^k, then k
    transposed convolutions (4x4, stride 2) that double the side and halve the channels, the last
    one to the image's channels and tanh. D mirrors it with strided 4x4 convolutions and LeakyReLU(0.2).
    k comes from the image size: 32 px start at 4x4 (k=3), 28 px at 7x7 (k=2), 8 px at 4x4 (k=1)."""

    def __init__(
        self,
        spec,
        latent_dim: int = 100,
        width: int = 64,
        batchnorm: bool = True,
        d_norm: str = "auto",
        dropout: float = 0.0,
        conditional: bool | str = "auto",
        loss: str = "non_saturating",
        n_critic: int = 1,
        label_smoothing: float = 0.0,
        gp_weight: float = 10.0,
        d_lr_scale: float = 1.0,
        spectral_norm: bool = False,
        minibatch_std: bool = False,
        ema: float = 0.0,
        augment: str | list | None = None,
    ):
        super().__init__(
            spec, latent_dim, conditional, dropout, loss, n_critic, label_smoothing, gp_weight, d_lr_scale, ema, augment
        )
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"model.width must be a positive whole number, got {width!r}; try model.width=64")
        channels, h, w = self.image_shape
        k = min(halvings(h), halvings(w))
        if k == 0:
            raise ValueError(
                f"dcgan needs images whose sides halve to at least 4 px (8, 28 or 32 px), not {h}x{w}; use model=gan"
            )
        d_norm = self.d_norm_for(d_norm, "batch")
        widths = [width * 2**i for i in range(k)]  # channels at side H/2, H/4, ..., H/2^k
        h0, w0 = h >> k, w >> k

        top = widths[-1]
        g: list[nn.Module] = [
            nn.Linear(latent_dim + self.num_classes, top * h0 * w0, bias=not batchnorm),
            nn.Unflatten(1, (top, h0, w0)),
        ]
        g += [nn.BatchNorm2d(top)] if batchnorm else []
        g += [nn.ReLU(inplace=True)]
        for c_in, c_out in zip(widths[::-1], widths[::-1][1:]):
            g += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=not batchnorm)]
            g += [nn.BatchNorm2d(c_out)] if batchnorm else []
            g += [nn.ReLU(inplace=True)]
        g += [nn.ConvTranspose2d(widths[0], channels, 4, 2, 1), image_output()]
        self.generator = nn.Sequential(*g)

        d: list[nn.Module] = []
        c_in = channels
        for i, c_out in enumerate(widths):
            norm = d_norm if i > 0 else "none"  # no normalisation on the input layer (DCGAN)
            d += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=norm != "batch")]
            if norm == "batch":
                d.append(nn.BatchNorm2d(c_out))
            elif norm == "layer":
                d.append(nn.GroupNorm(1, c_out))  # LayerNorm over (C, H, W)
            d += [nn.LeakyReLU(0.2, inplace=True), nn.Dropout(dropout)]
            c_in = c_out
        if minibatch_std:
            d.append(MinibatchStd())  # one more channel of the last map
        d.append(nn.Flatten())
        self.discriminator = nn.Sequential(*d)
        features = (top + int(bool(minibatch_std))) * h0 * w0
        self.head = nn.Linear(features, 1)
        self.embed = nn.Embedding(self.num_classes, features) if self.conditional else None
        self.finish(spectral_norm)
