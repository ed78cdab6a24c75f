"""Images in class folders, read from disk batch by batch: the streaming path for image sets that
do not fit in memory (ARCHITECTURE.md keeps it for them; everything that fits is held as tensors).

``root/<class name>/<image file>``, any format Pillow reads. torchvision's ``ImageFolder`` decodes
and resizes each image to ``image_size`` in the DataLoader's worker processes (the per-sample work
a dataset on disk cannot avoid) and batches stay uint8 until they reach the training device, where
they are scaled, normalised and augmented as whole batches (``datamodules/augment.py``).
The classes are the sub-folders in sorted order; train, validation and test are a seeded split of
the images.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import lightning as L
import torch

from datamodules.augment import augment
from datamodules.base import folder_split, stream_loader
from datamodules.spec import DataSpec
from zoo.errors import UserError


class ImageFolderData(L.LightningDataModule):
    kind = "image"  # the DataSpec kind it publishes, known before any file is read
    name = "image_folder"

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 32,
        channels: int = 3,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        val_size: float = 0.1,
        test_size: float = 0.1,
        seed: int = 0,
        num_workers: int = 2,
        mean: float = 0.5,
        std: float = 0.5,
        random_crop: int = 0,
        hflip: bool = False,
    ):
        super().__init__()
        self.root = os.path.expanduser(str(root)) if root else None
        self.image_size, self.channels = int(image_size), int(channels)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.test_size, self.seed, self.num_workers = val_size, test_size, seed, int(num_workers)
        self.crop_padding, self.hflip = int(random_crop), bool(hflip)
        # Fixed scaling (a pass over a dataset on disk just for its statistics would cost an epoch):
        # pixels in [0, 1] -> (x - mean) / std, so the defaults give [-1, 1].
        self.pixel_mean = torch.full((self.channels,), float(mean))
        self.pixel_std = torch.full((self.channels,), float(std))
        self.execution = None  # set by the task: several training batches per step (datamodules/base.py)
        self.subsets: dict[str, torch.utils.data.Dataset] = {}
        self.classes: list[str] = []

    def _dataset(self):
        from torchvision import datasets
        from torchvision.transforms import v2

        if self.channels not in (1, 3):
            raise UserError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {self.channels}.")
        if not self.root:
            raise UserError("data=image_folder needs data.root=<folder with one sub-folder of images per class>.")
        if not os.path.isdir(self.root):
            raise UserError(
                f"data.root={self.root} is not a folder; point it at a folder with one sub-folder of "
                f"images per class (root/cat/1.png, root/dog/2.png, ...)."
            )
        steps = [v2.Grayscale(1)] if self.channels == 1 else []
        transform = v2.Compose([v2.ToImage(), *steps, v2.Resize((self.image_size, self.image_size), antialias=True)])
        try:
            return datasets.ImageFolder(self.root, transform=transform, loader=_read_image)
        except (FileNotFoundError, RuntimeError) as e:
            raise UserError(
                f"no images found under data.root={self.root} ({str(e).rstrip('.')}); it needs one "
                f"sub-folder of images per class (root/cat/1.png, root/dog/2.png, ...)."
            ) from None

    def setup(self, stage: str | None = None) -> None:
        if self.subsets:
            return
        ds = self._dataset()
        self.classes = list(ds.classes)
        if len(self.classes) < 2:
            raise UserError(
                f"data.root={self.root} has {len(self.classes)} class folder(s); a classifier needs at "
                f"least 2 (one sub-folder of images per class)."
            )
        n = len(ds)
        train, val, test = folder_split(self.root, n, self.val_size, self.test_size, self.seed, "images")
        self.subsets = {
            name: torch.utils.data.Subset(ds, idx.tolist())
            for name, idx in (("train", train), ("val", val), ("test", test))
        }

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            name=self.name,
            kind="image",
            shape=(self.channels, self.image_size, self.image_size),
            num_classes=len(self.classes),
            class_names=tuple(self.classes),
            pixel_mean=tuple(float(v) for v in self.pixel_mean),
            pixel_std=tuple(float(v) for v in self.pixel_std),
        )

    def _loader(self, split: str, batch_size: int, shuffle: bool, execution=None):
        return stream_loader(self.subsets[split], batch_size, shuffle, self.seed, self.num_workers, _collate, execution)

    def train_dataloader(self):
        return self._loader("train", self.batch_size, shuffle=True, execution=self.execution)

    def val_dataloader(self):
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self):
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 -> normalised float, and the training augmentation, on the whole batch on its device."""
        x, y = batch
        if isinstance(x, UnreadableImage):
            raise UserError(
                f"{x.path} under data.root cannot be read as an image ({x.reason}); delete it or replace "
                f"it with a whole image file, then run again."
            )
        x = (x.float().div_(255) - self.pixel_mean.to(x.device)[:, None, None]) / self.pixel_std.to(x.device)[
            :, None, None
        ]
        if self.trainer is not None and self.trainer.training:
            x = augment(x, self.crop_padding, self.hflip)
        return x, y


class UnreadableImage(NamedTuple):
    """A file that Pillow cannot decode, passed on as data: an exception raised in a DataLoader worker
    reaches the main process as a traceback in text, this reaches it as the file's path."""

    path: str
    reason: str


def _read_image(path: str):
    """torchvision's default loader (Pillow, converted to RGB), or an ``UnreadableImage``."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # decodes the whole file: a truncated one fails here, not in a later step
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's errors for a file that is not a whole image
        return UnreadableImage(path, " ".join(str(e).split()) or type(e).__name__)


def _collate(samples: list) -> tuple[torch.Tensor, torch.Tensor] | tuple[UnreadableImage, None]:
    """One uint8 (N, C, H, W) tensor and the labels: a quarter of float32's bytes to copy and send;
    the first unreadable file instead, for ``on_after_batch_transfer`` to name."""
    unreadable = [img for img, _ in samples if isinstance(img, UnreadableImage)]
    if unreadable:
        return unreadable[0], None
    images = torch.stack([torch.as_tensor(img) for img, _ in samples])
    return images, torch.tensor([label for _, label in samples])
