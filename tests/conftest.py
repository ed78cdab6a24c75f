"""Shared test helpers: in-process runs of train.py's pipeline, subprocess runs of the real
commands, and small dataset files in the real on-disk formats (IDX, CIFAR pickles)."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import os
import pickle
import struct
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]


def run_train(overrides: list[str], out: Path, data_dir: Path | None = None, quiet: bool = True) -> dict:
    """train.py's pipeline in this process (no torch import per test); returns metrics.json."""
    import train
    from zoo.run.config import check_config, compose_run

    cfg = compose_run((QUIET if quiet else []) + overrides, str(out), str(data_dir) if data_dir else None)
    check_config(cfg)
    summary = train.train(cfg)
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(summary))
    return summary


def cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command of this project as a user would, from the repository root."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


# ---- dataset files in their real formats -------------------------------------------------------

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
            images[i, 2 + 2 * c: 4 + 2 * c, :] = 255
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


@pytest.fixture
def image_data(tmp_path, monkeypatch):
    """A data folder holding small MNIST, Fashion-MNIST and CIFAR-10 files in their real formats."""
    data = tmp_path / "data"
    write_mnist(data, "MNIST")
    write_mnist(data, "FashionMNIST", seed=1)
    write_cifar(data, monkeypatch=monkeypatch)
    return data


@pytest.fixture
def http_server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1 and records the paths asked for."""
    root = tmp_path / "www"
    root.mkdir()
    asked = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/", asked
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def one_thread():
    """These models are small and step through time in many tiny kernels: on 2 cores that other work
    also uses, OpenMP's threads spin-waiting on each other make them many times slower than one
    thread (see the CHANGELOG for issue 4). One thread here; the setting is put back after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
