"""Datasets: torchvision's layout under paths.data_dir, downloads (from a 127.0.0.1 server),
the offline error, deterministic splits and batch-level augmentation."""

from __future__ import annotations

import hashlib
import socket

import pytest
import torch
import torchvision.datasets as tvd

from datamodules.augment import random_crop, random_hflip
from datamodules.base import BatchLoader
from datamodules.images import CIFAR10Data, DigitsData, FashionMNISTData, MNISTData
from tests.helpers.formats import fake_idx_files, gz, write_cifar, write_mnist
from zoo.errors import UserError


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize("dm_cls, folder", [(MNISTData, "MNIST"), (FashionMNISTData, "FashionMNIST")])
def test_mnist_style_download_from_a_local_server(dm_cls, folder, http_server, tmp_path, monkeypatch):
    www, url, asked = http_server
    files = fake_idx_files()
    sums = []
    for name, blob in files.items():
        packed = gz(blob)
        (www / f"{name}.gz").write_bytes(packed)
        sums.append((f"{name}.gz", hashlib.md5(packed).hexdigest()))
    # torchvision verifies every file's md5: give it the md5s of the files this test serves.
    order = [r for r, _ in dm_cls().dataset_class().resources]
    monkeypatch.setattr(dm_cls().dataset_class(), "resources", sorted(sums, key=lambda s: order.index(s[0])))

    data_dir = tmp_path / "data"
    dm = dm_cls(data_dir=str(data_dir), mirror=url, val_size=16, batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    assert set(asked) == {f"/{n}.gz" for n in files}
    raw = data_dir / folder / "raw"
    assert {p.name for p in raw.iterdir()} >= set(files)
    assert dm.split_sizes() == {"train": 80, "val": 16, "test": 48}
    assert dm.spec.shape == (1, 28, 28) and dm.spec.num_classes == 10
    asked.clear()
    dm_cls(data_dir=str(data_dir), mirror=url).prepare_data()  # present now: nothing downloaded
    assert asked == []


def test_cifar_download_from_a_local_server(http_server, tmp_path, monkeypatch):
    www, url, asked = http_server
    import tarfile

    made = write_cifar(tmp_path / "made", monkeypatch=monkeypatch)
    with tarfile.open(www / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(made, arcname="cifar-10-batches-py")
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", hashlib.md5((www / "cifar-10-python.tar.gz").read_bytes()).hexdigest())
    dm = CIFAR10Data(data_dir=str(tmp_path / "data"), mirror=url, val_size=10)
    dm.prepare_data()
    dm.setup("fit")
    assert set(asked) == {"/cifar-10-python.tar.gz"}
    assert dm.split_sizes() == {"train": 90, "val": 10, "test": 20}
    assert dm.splits["train"][0].shape[1:] == (3, 32, 32)


def test_offline_error_names_the_folder_the_files_and_the_offline_dataset(tmp_path):
    dm = MNISTData(data_dir=str(tmp_path / "nowhere"), mirror=closed_port_url())
    with pytest.raises(UserError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "data=digits" in msg and "\n" not in msg


def test_download_false_says_so(tmp_path):
    with pytest.raises(UserError, match="data.download=false"):
        CIFAR10Data(data_dir=str(tmp_path), download=False).prepare_data()


def test_truncated_file_gets_a_sentence(tmp_path):
    raw = write_mnist(tmp_path)
    blob = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(blob[: len(blob) // 2])
    dm = MNISTData(data_dir=str(tmp_path))
    dm.prepare_data()
    with pytest.raises(
        UserError,
        match=r"train-images-idx3-ubyte is truncated or corrupt \(\d+ bytes where its header "
        r"promises \d+\); delete it and run again",
    ):
        dm.setup("fit")


def test_splits_are_deterministic_for_a_seed():
    a, b, c = DigitsData(seed=1), DigitsData(seed=1), DigitsData(seed=2)
    for dm in (a, b, c):
        dm.setup("fit")
    assert torch.equal(a.splits["val"][1], b.splits["val"][1]) and torch.equal(a.splits["val"][0], b.splits["val"][0])
    assert not torch.equal(a.splits["val"][0], c.splits["val"][0])
    assert torch.equal(a.splits["test"][1], c.splits["test"][1])  # the test split is fixed
    assert a.split_sizes() == {"train": 1293, "val": 144, "test": 360}


def test_label_noise_changes_that_share_of_the_training_labels_only():
    clean, noisy, again = DigitsData(seed=1), DigitsData(seed=1, label_noise=0.2), DigitsData(seed=1, label_noise=0.2)
    for dm in (clean, noisy, again):
        dm.setup("fit")
    changed = clean.splits["train"][1] != noisy.splits["train"][1]
    assert changed.sum().item() == round(0.2 * 1293)  # each drawn label moved to another class
    assert torch.equal(noisy.splits["train"][1], again.splits["train"][1])  # fixed by the seed
    assert torch.equal(clean.splits["train"][0], noisy.splits["train"][0])
    for split in ("val", "test"):  # what the run is measured on stays clean
        assert torch.equal(clean.splits[split][1], noisy.splits[split][1])
    with pytest.raises(UserError, match="label_noise"):
        DigitsData(label_noise=1.0)


def test_batch_loader_shuffles_by_epoch_and_covers_everything():
    x = torch.arange(10)
    loader = BatchLoader((x,), batch_size=4, shuffle=True, seed=3)
    assert len(loader) == 3
    loader.sampler.set_epoch(0)
    e0 = torch.cat([b[0] for b in loader])
    loader.sampler.set_epoch(1)
    e1 = torch.cat([b[0] for b in loader])
    loader.sampler.set_epoch(0)
    again = torch.cat([b[0] for b in loader])
    assert sorted(e0.tolist()) == list(range(10)) and torch.equal(e0, again) and not torch.equal(e0, e1)
    assert [len(b[0]) for b in BatchLoader((x,), 4, drop_last=True)] == [4, 4]


def test_batch_augmentation_crops_and_flips_whole_batches():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    crops = random_crop(x, 2)
    assert crops.shape == x.shape
    # Each crop is a shifted window of the zero-padded image.
    padded = torch.nn.functional.pad(x, (2,) * 4)
    for i in range(2):
        assert any(torch.equal(crops[i], padded[i, :, dy : dy + 6, dx : dx + 6]) for dy in range(5) for dx in range(5))
    flips = random_hflip(x.repeat(16, 1, 1, 1))
    mirrored = [torch.equal(f, o.flip(2)) for f, o in zip(flips, x.repeat(16, 1, 1, 1))]
    assert 0 < sum(mirrored) < 32


def test_cifar_config_turns_augmentation_on(tmp_path, monkeypatch):
    write_cifar(tmp_path, monkeypatch=monkeypatch)
    dm = CIFAR10Data(data_dir=str(tmp_path), random_crop=4, hflip=True, val_size=10)
    dm.setup("fit")

    class _T:
        training = True

    dm.trainer = _T()
    x, y = dm.splits["train"]
    out, y2 = dm.on_after_batch_transfer((x, y), 0)
    assert out.shape == x.shape and torch.equal(y, y2) and not torch.equal(out, x)
    _T.training = False
    assert torch.equal(dm.on_after_batch_transfer((x, y), 0)[0], x)
