"""Image classification data: scikit-learn's bundled digits (offline) and torchvision's MNIST,
Fashion-MNIST and CIFAR-10, all held as normalised float tensors in memory.

Files live under ``data_dir`` in torchvision's own layout (``<data_dir>/MNIST/raw/...``,
``<data_dir>/cifar-10-batches-py/...``) and are downloaded by torchvision when missing.
"""

from __future__ import annotations

import math
import os
import shutil
import tarfile
import tempfile
from urllib.error import URLError

import torch

from datamodules.augment import augment
from datamodules.base import TensorDataModule, count, seeded_split
from datamodules.spec import DataSpec
from zoo.errors import UserError


class ImageClassificationData(TensorDataModule):
    """Subclasses say what they are (name, shape, classes) and how to read the raw splits."""

    name = "images"
    shape: tuple[int, int, int] = (1, 1, 1)
    class_names: tuple[str, ...] = ()

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        val_size: float = 0.1,
        seed: int = 0,
        download: bool = True,
        mirror: str | None = None,
        random_crop: int = 0,
        hflip: bool = False,
        data_on_device: bool = True,
        label_noise: float = 0.0,
    ):
        super().__init__(batch_size, eval_batch_size, seed, data_on_device)
        self.data_dir = os.path.expanduser(str(data_dir))
        self.val_size, self.download, self.mirror = val_size, download, mirror
        self.crop_padding, self.hflip = int(random_crop), bool(hflip)
        if not 0 <= label_noise < 1:
            raise UserError(f"data.label_noise={label_noise}: a share of the training labels, from 0 to below 1.")
        self.label_noise = float(label_noise)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            name=self.name,
            kind="image",
            shape=self.shape,
            num_classes=len(self.class_names),
            class_names=self.class_names,
            pixel_mean=tuple(float(v) for v in getattr(self, "pixel_mean", ())),  # known once set up
            pixel_std=tuple(float(v) for v in getattr(self, "pixel_std", ())),
        )

    def load_raw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(train images uint8 NCHW, train labels, test images, test labels)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # already loaded: setup is called by train.py and again by the Trainer
            return
        x, y, x_test, y_test = self.load_raw()
        n_val = count(self.val_size, len(x))
        train_idx, val_idx = seeded_split(len(x), [len(x) - n_val, n_val], self.seed)
        x = x.float().div_(255)
        # Per-channel statistics of the training split only, so val/test stay unseen.
        mean = x[train_idx].mean(dim=(0, 2, 3), keepdim=True)
        std = x[train_idx].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        norm = lambda t: (t - mean) / std  # noqa: E731
        # Kept (per channel) so a task can map the images back to pixels, e.g. a GAN's [-1, 1].
        self.pixel_mean, self.pixel_std = mean.flatten(), std.flatten()
        self.splits = {
            "train": (norm(x[train_idx]), self.noisy(y[train_idx])),
            "val": (norm(x[val_idx]), y[val_idx]),
            "test": (norm(x_test.float().div_(255)), y_test),
        }

    def noisy(self, y: torch.Tensor) -> torch.Tensor:
        """The training labels with ``label_noise`` of them (drawn by the seed) replaced by another
        class: examples no rule can learn, only memorise (what overfitting fits; val and test stay clean)."""
        if not self.label_noise:
            return y
        g = torch.Generator().manual_seed(self.seed + 1)
        wrong = torch.randperm(len(y), generator=g)[: round(self.label_noise * len(y))]
        shift = torch.randint(1, len(self.class_names), (len(wrong),), generator=g)
        y = y.clone()
        y[wrong] = (y[wrong] + shift) % len(self.class_names)
        return y

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Augment the training batch only, as a whole, on whatever device it now lives on.
        if self.trainer is not None and self.trainer.training and (self.crop_padding or self.hflip):
            x, *rest = batch
            batch = (augment(x, self.crop_padding, self.hflip), *rest)
        return batch


class DigitsData(ImageClassificationData):
    """scikit-learn's 1,797 8x8 handwritten digits: ships with the package, trains in seconds."""

    name = "digits"
    shape = (1, 8, 8)
    class_names = tuple(str(i) for i in range(10))
    test_size = 360  # a fixed 20% test split, the same for every seed, so runs compare

    def load_raw(self):
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.from_numpy(d.images).mul(255 / 16).round().to(torch.uint8)[:, None]
        y = torch.from_numpy(d.target).long()
        test_idx, train_idx = seeded_split(len(x), [self.test_size, len(x) - self.test_size], 0)
        return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


class TorchvisionImages(ImageClassificationData):
    """A torchvision dataset class, read once into tensors."""

    def dataset_class(self):
        raise NotImplementedError

    def folder(self) -> str:
        """Where torchvision keeps this dataset's files under data_dir."""
        raise NotImplementedError

    def expected_files(self) -> list[str]:
        raise NotImplementedError

    def _point_at_mirror(self, ds) -> None:
        raise NotImplementedError

    def prepare_data(self) -> None:
        cls = self.dataset_class()
        # An instance without __init__, so we can aim torchvision's own download() at
        # data.mirror (the tests' 127.0.0.1 server, or a lab-local copy) before it runs.
        ds = cls.__new__(cls)
        ds.root = self.data_dir
        if self.mirror:
            self._point_at_mirror(ds)
        if self.is_complete(ds):
            return
        where = os.path.join(self.data_dir, self.folder())
        files = ", ".join(self.expected_files())
        if not self.download:
            raise UserError(
                f"{self.name} is not in {where} (expected {files}) and data.download=false; "
                f"put the files there or use data=digits, which ships offline."
            )
        # torchvision downloads (and checks the archives' md5) into a scratch folder; only whole,
        # extracted files are moved into place, so an interrupted download is never taken for data.
        os.makedirs(self.data_dir, exist_ok=True)
        scratch = tempfile.mkdtemp(dir=self.data_dir, prefix=".download-")
        try:
            ds.root = scratch
            ds.download()
            for folder, _, names in os.walk(os.path.join(scratch, self.folder())):
                target = os.path.join(self.data_dir, os.path.relpath(folder, scratch))
                os.makedirs(target, exist_ok=True)
                for name in names:
                    os.replace(os.path.join(folder, name), os.path.join(target, name))
        except (RuntimeError, URLError, OSError, EOFError, tarfile.TarError) as e:
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise UserError(
                f"{self.name} is not in {where} (expected {files}) and downloading it failed "
                f"({reason}); copy the files there, point paths.data_dir at a folder that has them, "
                f"or use data=digits, which ships offline."
            ) from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def is_complete(self, ds) -> bool:
        raise NotImplementedError

    def load_raw(self):
        cls = self.dataset_class()
        try:
            train = cls(self.data_dir, train=True, download=False)
            test = cls(self.data_dir, train=False, download=False)
            tensors = (*self.to_tensors(train), *self.to_tensors(test))
        except (RuntimeError, ValueError, OSError, EOFError) as e:
            where = os.path.join(self.data_dir, self.folder())
            raise UserError(
                f"the {self.name} files in {where} cannot be read ({str(e).strip().splitlines()[0]}); "
                f"delete that folder and run again to download them afresh."
            ) from None
        for labels in (tensors[1], tensors[3]):
            check_labels(labels, len(self.class_names), os.path.join(self.data_dir, self.folder()))
        return tensors

    @staticmethod
    def to_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def check_idx_file(path: str) -> tuple[int, ...]:
    """An IDX file (MNIST's format) is as long as its header says, or a sentence naming it; returns its
    sizes (images: count, height, width; labels: count)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = f.read(4)
        ndim = header[3] if len(header) == 4 else 0
        dims = f.read(4 * ndim)
    sizes = (
        tuple(int.from_bytes(dims[i : i + 4], "big") for i in range(0, 4 * ndim, 4)) if len(dims) == 4 * ndim else ()
    )
    expected = 4 + 4 * ndim + (math.prod(sizes) if sizes else 0)
    if len(header) < 4 or header[:2] != b"\0\0" or ndim == 0 or len(dims) < 4 * ndim or size != expected:
        raise UserError(
            f"{path} is truncated or corrupt ({size} bytes where its header promises {expected}); "
            f"delete it and run again to download it afresh."
        )
    return sizes


def check_labels(labels: torch.Tensor, num_classes: int, where: str) -> None:
    """Every label is a class index, or a sentence naming the files and the first bad label."""
    bad = ((labels < 0) | (labels >= num_classes)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise UserError(
            f"the labels in {where} hold {int(labels[i])} (at position {i}), but the dataset has "
            f"{num_classes} classes (0-{num_classes - 1}); the files are not this dataset: delete that "
            f"folder and run again to download them afresh."
        )


class MNISTData(TorchvisionImages):
    name = "mnist"
    shape = (1, 28, 28)
    class_names = tuple(str(i) for i in range(10))

    def dataset_class(self):
        from torchvision.datasets import MNIST

        return MNIST

    def folder(self) -> str:
        return os.path.join(self.dataset_class().__name__, "raw")

    def expected_files(self) -> list[str]:
        return [f.removesuffix(".gz") for f, _ in self.dataset_class().resources]

    def _point_at_mirror(self, ds) -> None:
        ds.mirrors = [self.mirror.rstrip("/") + "/"]

    def is_complete(self, ds) -> bool:
        return all(os.path.isfile(os.path.join(ds.raw_folder, name)) for name in self.expected_files())

    def load_raw(self):
        raw = os.path.join(self.data_dir, self.folder())
        sizes = {name: check_idx_file(os.path.join(raw, name)) for name in self.expected_files()}
        for split in ("train", "t10k"):
            images, labels = f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"
            if len(sizes[images]) != 3 or sizes[images][1:] != self.shape[1:]:
                raise UserError(
                    f"{os.path.join(raw, images)} holds images of size {' x '.join(map(str, sizes[images][1:]))}"
                    f", not {self.name}'s {self.shape[1]} x {self.shape[2]}; delete that folder and run "
                    f"again to download the files afresh."
                )
            if len(sizes[labels]) != 1 or sizes[labels][0] != sizes[images][0]:
                raise UserError(
                    f"{os.path.join(raw, labels)} holds {sizes[labels][0]} labels for the "
                    f"{sizes[images][0]} images of {images}; delete that folder and run again to "
                    f"download the files afresh."
                )
        return super().load_raw()

    @staticmethod
    def to_tensors(ds):
        return ds.data[:, None].contiguous(), ds.targets.long()


class FashionMNISTData(MNISTData):
    name = "fashion_mnist"
    class_names = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )

    def dataset_class(self):
        from torchvision.datasets import FashionMNIST

        return FashionMNIST


class CIFAR10Data(TorchvisionImages):
    name = "cifar10"
    shape = (3, 32, 32)
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def dataset_class(self):
        from torchvision.datasets import CIFAR10

        return CIFAR10

    def folder(self) -> str:
        return self.dataset_class().base_folder

    def expected_files(self) -> list[str]:
        cls = self.dataset_class()
        return [f for f, _ in cls.train_list + cls.test_list]

    def _point_at_mirror(self, ds) -> None:
        ds.url = self.mirror.rstrip("/") + "/" + ds.filename

    def is_complete(self, ds) -> bool:
        from torchvision.datasets.utils import check_integrity

        return all(
            check_integrity(os.path.join(ds.root, ds.base_folder, name), md5)
            for name, md5 in ds.train_list + ds.test_list
        )

    @staticmethod
    def to_tensors(ds):
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets).long()
