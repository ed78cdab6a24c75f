"""What a user opens TensorBoard for, read back with tensorboard's own event reader."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.helpers import run_train
from zoo.callbacks.gradients import GradientNormLogger


def read_events(folder) -> EventAccumulator:
    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    ea.Reload()
    return ea


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "run"
    metrics = run_train(
        [
            "model=cnn",
            "trainer.max_epochs=2",
            "callbacks.gradient_norms.every_n_steps=5",
            "callbacks.histograms.every_n_steps=10",
        ],
        out,
    )
    return out, metrics, read_events(out / "tensorboard")


def test_losses_accuracies_and_learning_rate(run):
    _, metrics, ea = run
    scalars = set(ea.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/loss_epoch",
        "train/acc",
        "val/loss",
        "val/acc",
        "test/loss",
        "test/acc",
        "lr-Adam",
    ):
        assert tag in scalars, (tag, sorted(scalars))
    assert len(ea.Scalars("val/acc")) == 2  # one point per epoch
    assert ea.Scalars("test/acc")[-1].value == pytest.approx(metrics["test/acc"])


def test_per_layer_and_total_gradient_norms_at_their_interval(run):
    _, metrics, ea = run
    scalars = set(ea.Tags()["scalars"])
    layers = {t for t in scalars if t.startswith("grad_norm/") and t != "grad_norm/total"}
    assert {"grad_norm/net.features.0", "grad_norm/net.head.1", "grad_norm/net.head.4"} <= layers, layers
    total = ea.Scalars("grad_norm/total")
    assert [e.step for e in total] == list(range(0, metrics["global_step"], 5))
    # The total is the norm of the per-layer norms.
    at0 = {t: ea.Scalars(t)[0].value for t in layers}
    assert total[0].value == pytest.approx(math.sqrt(sum(v * v for v in at0.values())), rel=1e-4)


def test_weight_and_gradient_histograms_at_their_interval(run):
    _, metrics, ea = run
    hists = set(ea.Tags()["histograms"])
    assert {"weights/net.features.0.weight", "gradients/net.features.0.weight", "gradients/net.head.4.bias"} <= hists
    assert [e.step for e in ea.Histograms("weights/net.features.0.weight")] == list(
        range(0, metrics["global_step"], 10)
    )


def test_confusion_matrix_and_misclassified_images(run):
    _, _, ea = run
    images = set(ea.Tags()["images"])
    assert {"test/confusion_matrix", "test/misclassified"} <= images
    img = ea.Images("test/confusion_matrix")[-1]
    assert img.width > 200 and img.height > 200 and img.encoded_image_string[:4] == b"\x89PNG"


def test_hparams_tab_has_the_real_final_metrics(run):
    _, _metrics, ea = run
    content = ea.PluginTagToContent("hparams")
    exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in exp.metric_infos} >= {"test/acc", "test/loss", "val/acc", "val/loss"}
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["choice/model"].string_value == "cnn"
    assert start.hparams["optimizer.lr"].number_value == pytest.approx(1e-3)
    assert "hp_metric" not in ea.Tags()["scalars"]  # no -1 placeholder


@pytest.mark.slow
def test_histograms_can_be_turned_off(tmp_path):
    out = tmp_path / "run"
    run_train(["trainer.max_epochs=1", "callbacks.histograms=null"], out)
    assert read_events(out / "tensorboard").Tags()["histograms"] == []


class _Capture(L.pytorch.loggers.Logger):
    name, version = "capture", 0

    def __init__(self):
        super().__init__()
        self.rows = []

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, *args, **kwargs):
        pass


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.slow
def test_gradient_norms_are_unscaled_under_fp16_mixed_precision():
    from lightning.pytorch.plugins.precision import MixedPrecision

    torch.manual_seed(0)
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    model = _Tiny()
    # The fp32 reference gradient norm of the same weights on the same batch.
    model.zero_grad()
    torch.nn.functional.cross_entropy(model.net(x), y).backward()
    reference = torch.norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()
    model.zero_grad()

    capture = _Capture()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=capture,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
        callbacks=[GradientNormLogger(every_n_steps=1)],
    )
    trainer.fit(model, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64))
    logged = next(m for _, m in capture.rows if "grad_norm/total" in m)["grad_norm/total"]
    assert logged == pytest.approx(reference, rel=0.02)  # scaled it would be 65536 times larger
