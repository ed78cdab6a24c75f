"""Every model trains on every image dataset, sized from the data's spec with no edits, and learns."""

from __future__ import annotations

import math

import pytest
import torch

from datamodules.spec import DataSpec
from tests.helpers import run_train
from zoo.nets.cnn import CNN
from zoo.nets.mlp import MLP
from zoo.nets.resnet import ResNet

MODELS = ["mlp", "cnn", "resnet"]
DATASETS = ["digits", "mnist", "fashion_mnist", "cifar10"]


@pytest.mark.slow
@pytest.mark.parametrize("data", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_on_every_image_dataset(model, data, image_data, tmp_path):
    out = tmp_path / "run"
    metrics = run_train(
        [
            f"model={model}",
            f"data={data}",
            "model.dropout=0.2",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=1",
            "data.val_size=16",
            "data.batch_size=16",
            "callbacks.histograms.every_n_steps=1",
        ],
        out,
        data_dir=image_data,
    )
    assert metrics["global_step"] == 3
    assert math.isfinite(metrics["test/loss"]) and metrics["test/loss"] > 0
    assert (out / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("model", MODELS)
def test_every_model_learns_the_digits(model, tmp_path):
    # One epoch (20 steps) takes each model from guessing (10%, loss ln 10) to about 70-80% on the
    # test images; with optimizer.lr=1e-9 (a model that does not learn) the cnn stays at 7%.
    metrics = run_train([f"model={model}", "trainer.max_epochs=1", "callbacks.histograms=null"], tmp_path / "run")
    assert metrics["global_step"] == 20
    assert metrics["test/acc"] >= 0.5, metrics
    assert metrics["test/loss"] < 0.7 * math.log(10), metrics


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("net", [MLP, CNN, ResNet])
def test_networks_size_themselves_from_the_spec(net, shape):
    spec = DataSpec(name="x", kind="image", shape=shape, num_classes=7, class_names=tuple("abcdefg"))
    model = net(spec, dropout=0.5).eval()
    assert model(torch.randn(5, *shape)).shape == (5, 7)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in model.modules())


def test_mlp_depth_and_width_options():
    spec = DataSpec(name="x", kind="image", shape=(1, 8, 8), num_classes=10)
    mlp = MLP(spec, widths=32, depth=3, activation="gelu", batchnorm=True)
    assert [m.out_features for m in mlp.modules() if isinstance(m, torch.nn.Linear)] == [32, 32, 32, 10]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in mlp.modules()) == 3
    assert sum(isinstance(m, torch.nn.GELU) for m in mlp.modules()) == 3
