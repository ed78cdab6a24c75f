"""Image dataset files in their real formats (MNIST's IDX, CIFAR-10's pickles), small and made here."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format of MNIST: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian sizes, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_idx_files(n_train: int = 96, n_test: int = 48, seed: int = 0) -> dict[str, bytes]:
    """MNIST-format images whose class is readable from the picture (a bright band per class)."""
    rng = np.random.default_rng(seed)
    files = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, :] = 255
        files[f"{split}-images-idx3-ubyte"] = idx_bytes(images)
        files[f"{split}-labels-idx1-ubyte"] = idx_bytes(labels)
    return files


def write_mnist(data_dir: Path, folder: str = "MNIST", **kw) -> Path:
    raw = data_dir / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, blob in fake_idx_files(**kw).items():
        (raw / name).write_bytes(blob)
    return raw


def write_cifar(data_dir: Path, n_per_batch: int = 20, seed: int = 0, monkeypatch=None) -> Path:
    """CIFAR-10's python pickles; torchvision checks their md5, so point it at these files' md5."""
    import torchvision.datasets as tvd

    rng = np.random.default_rng(seed)
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        labels = rng.integers(0, 10, n_per_batch).tolist()
        data = rng.integers(0, 256, (n_per_batch, 3 * 32 * 32)).astype(np.uint8)
        blob = pickle.dumps({"data": data, "labels": labels, "batch_label": name})
        (folder / name).write_bytes(blob)
        sums[name] = hashlib.md5(blob).hexdigest()
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    if monkeypatch is not None:
        monkeypatch.setattr(tvd.CIFAR10, "train_list", [[n, sums[n]] for n in names[:5]])
        monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", sums["test_batch"]]])
        monkeypatch.setitem(tvd.CIFAR10.meta, "md5", hashlib.md5((folder / "batches.meta").read_bytes()).hexdigest())
    return folder


def gz(blob: bytes) -> bytes:
    return gzip.compress(blob)
