"""data=image_folder: images in class folders, streamed from disk through DataLoader workers (the
path for image sets that do not fit in memory), trained on end to end; bad folders get a sentence."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers import command, run_train


def write_image_folder(root, n_per_class: int = 40, size: int = 20) -> list[str]:
    """PNG and JPEG files in root/<class>/, each class a colour a CNN can tell apart, plus noise."""
    rng = np.random.default_rng(0)
    colours = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            noise = rng.integers(-40, 40, (size + i % 3, size, 3))  # sizes differ: the loader resizes
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return sorted(colours)


@pytest.mark.parametrize("workers", [0, 2])
def test_trains_from_class_folders(tmp_path, workers):
    classes = write_image_folder(tmp_path / "images")
    metrics = run_train(
        [
            "data=image_folder",
            f"data.root={tmp_path / 'images'}",
            "model=cnn",
            "data.image_size=16",
            f"data.num_workers={workers}",
            "trainer.max_epochs=4",
            "callbacks.histograms=null",
            "data.batch_size=16",
            "data.hflip=true",
            "data.random_crop=2",
        ],
        tmp_path / "run",
    )
    assert metrics["test/acc"] >= 0.9 and metrics["epochs"] == 4
    import torch

    spec = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["spec"]
    assert spec["shape"] == [3, 16, 16] and spec["class_names"] == classes


def test_grayscale_and_steps_per_execution(tmp_path):
    write_image_folder(tmp_path / "images", n_per_class=24)
    metrics = run_train(
        [
            "data=image_folder",
            f"data.root={tmp_path / 'images'}",
            "model=mlp",
            "data.channels=1",
            "data.image_size=8",
            "data.num_workers=0",
            "data.batch_size=8",
            "steps_per_execution=3",
            "trainer.max_epochs=2",
            "callbacks.histograms=null",
        ],
        tmp_path / "run",
    )
    # 72 images: 7 val, 7 test, 58 train = 8 batches of 8 an epoch, taken up to 3 per Lightning step;
    # steps count batches
    assert metrics["global_step"] == 2 * 8 and metrics["steps_per_execution"] == 3 and metrics["test/acc"] > 0.5


@pytest.mark.slow  # each case but the first runs train.py in a subprocess
@pytest.mark.parametrize(
    "make, args, message",
    [
        (None, [], "data.root must be given"),
        (None, ["data.root={tmp}/nowhere"], "/nowhere is not a folder; point it at a folder with one sub-folder"),
        ("empty", ["data.root={tmp}/images"], "no images found under data.root="),
        ("one", ["data.root={tmp}/images"], "has 1 class folder(s); a classifier needs at least 2"),
    ],
)
def test_bad_folders_get_one_sentence(tmp_path, make, args, message):
    if make == "empty":
        (tmp_path / "images").mkdir()
    elif make == "one":
        (tmp_path / "images" / "only").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "only" / "a.png")
    r = command(
        "train.py",
        "data=image_folder",
        *[a.format(tmp=tmp_path) for a in args],
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr[-2000:]
