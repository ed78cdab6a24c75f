"""What a user opens TensorBoard for, read back with TensorBoard's own readers: the event reader of a
run, and the HParams tab as TensorBoard's hparams plugin computes it for its web page."""

from __future__ import annotations

import math
import re

import lightning as L
import pytest
import torch
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.helpers import run_train
from tests.helpers.tensorboard import hparams_tab, read_events
from zoo.callbacks.gradients import GradientNormLogger, HistogramLogger
from zoo.callbacks.logger import TensorBoardLogger
from zoo.nets.naming import layer_names, parameter_names

# Every scalar tag of a run starts with one of these (ARCHITECTURE.md, "TensorBoard tags").
SCHEME = re.compile(r"^(train|val|test)/[a-z_0-9]+$|^best/(val/[a-z_0-9]+|epoch)$|^lr/[a-z_0-9]+$|^watch/")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    out = logs / "cnn-digits"
    metrics = run_train(
        [
            "model=cnn",
            "trainer.max_epochs=2",
            "trainer.log_every_n_steps=5",
            "callbacks.gradient_norms.every_n_steps=5",
            "callbacks.embeddings.max_samples=64",
        ],
        out,
        views=True,
    )
    return out, metrics, read_events(out)


def test_one_events_file_in_the_run_folder_itself(run):
    out, _, _ = run
    assert len(list(out.glob("events.out.tfevents.*"))) == 1  # not three: fit, test and HParams in one
    assert not (out / "tensorboard").exists() and not (out / "hparams.yaml").exists()


def test_scalar_tags_follow_one_scheme(run):
    _, metrics, ea = run
    scalars = set(ea.Tags()["scalars"])
    for tag in ("train/loss", "train/loss_step", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc"):
        assert tag in scalars, (tag, sorted(scalars))
    assert {"lr/net", "watch/step_time_s", "watch/samples_per_s", "best/val/acc", "best/epoch"} <= scalars
    assert not {"epoch", "hp_metric", "train/loss_epoch"} & scalars
    assert not any(t.startswith(("lr-", "grad_norm/")) for t in scalars)
    assert all(SCHEME.match(t) for t in scalars), sorted(t for t in scalars if not SCHEME.match(t))
    # train/<metric> is one point per epoch, like val/<metric>; train/<metric>_step every logging step.
    assert len(ea.Scalars("train/loss")) == len(ea.Scalars("val/loss")) == 2
    assert [e.step for e in ea.Scalars("train/loss_step")] == list(range(4, metrics["global_step"], 5))
    assert all(e.value > 0 for e in ea.Scalars("watch/samples_per_s"))


def test_best_epoch_metrics_are_their_own_tags_equal_to_metrics_json(run):
    _, metrics, ea = run
    assert ea.Scalars("best/val/acc")[-1].value == pytest.approx(metrics["val/acc"])
    assert ea.Scalars("best/val/loss")[-1].value == pytest.approx(metrics["val/loss"])
    assert ea.Scalars("best/epoch")[-1].value == metrics["best_epoch"]
    assert ea.Scalars("test/acc")[-1].value == pytest.approx(metrics["test/acc"])


def test_per_layer_gradient_norms_named_by_type_and_position(run):
    _, metrics, ea = run
    scalars = set(ea.Tags()["scalars"])
    layers = {t for t in scalars if t.startswith("watch/grad_norm/") and t != "watch/grad_norm/total"}
    assert {"watch/grad_norm/conv1", "watch/grad_norm/bn1", "watch/grad_norm/conv2", "watch/grad_norm/fc1"} <= layers
    total = ea.Scalars("watch/grad_norm/total")
    assert [e.step for e in total] == list(range(0, metrics["global_step"], 5))
    at0 = {t: ea.Scalars(t)[0].value for t in layers}  # the total is the norm of the per-layer norms
    assert total[0].value == pytest.approx(math.sqrt(sum(v * v for v in at0.values())), rel=1e-4)


def test_weight_histograms_at_every_epoch_end(run):
    _, metrics, ea = run
    hists = set(ea.Tags()["histograms"])
    assert {"watch/weights/conv1.weight", "watch/weights/bn1.bias", "watch/weights/fc2.weight"} <= hists
    per_epoch = metrics["global_step"] // 2
    assert [e.step for e in ea.Histograms("watch/weights/conv1.weight")] == [per_epoch - 1, 2 * per_epoch - 1]
    assert not any(t.startswith("watch/gradients/") for t in hists)  # gradients: optional, off by default


def test_custom_scalars_put_train_and_val_on_one_chart(run):
    _, _, ea = run
    layout = layout_pb2.Layout.FromString(ea.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert [cat.title for cat in layout.category] == ["train and val", "diagnostics"]
    assert charts["loss (train, val)"] == [r"^(train|val)/loss$"]
    assert charts["acc (train, val)"] == [r"^(train|val)/acc$"]
    assert charts["learning rate"] == [r"^lr/"] and charts["gradient norm per layer"] == [r"^watch/grad_norm/"]
    scalars = ea.Tags()["scalars"]
    assert sorted(t for t in scalars if re.match(charts["loss (train, val)"][0], t)) == ["train/loss", "val/loss"]


def test_graph_per_class_table_pr_curves_top_losses_and_samples(run):
    out, _, ea = run
    assert ea.Tags()["graph"]  # the Graphs tab
    names = {n.op for n in ea.Graph().node}
    assert any("conv" in n.lower() for n in names), names
    images = set(ea.Tags()["images"])
    assert {"train/samples", "test/top_losses", "test/confusion_matrix", "test/misclassified"} <= images
    tensors = set(ea.Tags()["tensors"])
    assert {f"test/pr_curve/{c}" for c in range(10)} <= tensors
    table = ea.Tensors("test/per_class/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| class | precision | recall | F1 | support |" in table and table.count("\n| ") == 10
    # The Projector: the penultimate layer of 64 test samples, labelled by class.
    assert "penultimate_layer" in (out / "projector_config.pbtxt").read_text()
    tsv = next(out.glob("*/penultimate_layer/tensors.tsv")).read_text().splitlines()
    assert len(tsv) == 64


def test_hparams_tab_has_the_run_with_its_best_metrics_and_no_fixed_columns(run):
    out, metrics, ea = run
    content = ea.PluginTagToContent("hparams")
    assert "_hparams_/experiment" not in content  # TensorBoard builds the columns from every run
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["choice/model"].string_value == "cnn"
    assert start.hparams["optimizer.lr"].number_value == pytest.approx(1e-3)
    assert not any(k.startswith(("choice/callbacks", "choice/logger", "choice/paths")) for k in start.hparams)
    _, groups = hparams_tab(out.parent)
    assert [g.name for g in groups] == ["cnn-digits"]  # named after its folder, no /tensorboard
    values = {m.name.tag: m.value for m in groups[0].metric_values}
    assert values["best/val/acc"] == pytest.approx(metrics["val/acc"])
    assert values["test/acc"] == pytest.approx(metrics["test/acc"])


@pytest.mark.slow
def test_hparams_tab_covers_every_run_of_a_mixed_folder_swept_first(run, tmp_path):
    """A classifier, a forecaster and a second classifier differing only by its learning rate, in one
    logs folder: one HParams definition with every run's hyper-parameters and metrics."""
    logs = tmp_path / "logs"
    run_train(["model=linear", "data=sine", "trainer.max_epochs=1"], logs / "linear-sine", views=True)
    out = run[0]
    import shutil

    shutil.copytree(out, logs / "cnn-digits")
    experiment, groups = hparams_tab(logs)
    assert sorted(g.name for g in groups) == ["cnn-digits", "linear-sine"]
    names = [h.name for h in experiment.hparam_infos]
    assert {"model.channels", "data.horizon", "choice/model"} <= set(names)  # the CNN's and the forecaster's own
    metric_tags = {m.name.tag for m in experiment.metric_infos}
    assert {"best/val/acc", "best/val/mae", "test/acc", "test/mse"} <= metric_tags
    # Every run has the metrics of its own task in the one definition.
    by_run = {g.name: {m.name.tag for m in g.metric_values} for g in groups}
    assert "best/val/acc" in by_run["cnn-digits"] and "best/val/mae" in by_run["linear-sine"]
    # What differs between runs comes first (the tab shows the first five columns).
    differs = [h.differs for h in experiment.hparam_infos]
    assert differs == sorted(differs, reverse=True) and names[0] == "choice/data"


def test_layer_names_by_type_and_position():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 8),
        torch.nn.LSTM(8, 8, num_layers=2, bidirectional=True),
        torch.nn.Linear(8, 2),
    )
    layers = layer_names(net)
    assert [layers[n] for n in ("0.weight", "1.bias", "3.weight", "5.weight", "7.bias")] == [
        "conv1",
        "bn1",
        "conv2",
        "fc1",
        "fc2",
    ]
    assert parameter_names(net)["6.weight_hh_l1_reverse"] == ("lstm2_reverse", "weight_hh")
    assert layer_names(net, only=["7.weight", "7.bias"]) == {"7.weight": "fc1", "7.bias": "fc1"}  # one network's own


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path, callbacks, max_steps=None, max_epochs=2, precision=None, logger=None):
    torch.manual_seed(0)
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=max_steps or -1,
        max_epochs=max_epochs,
        logger=logger if logger is not None else TensorBoardLogger(str(tmp_path)),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        callbacks=callbacks,
        **({"plugins": [precision]} if precision else {}),
    )
    model = _Tiny()
    trainer.fit(model, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8))
    return trainer, model


def test_histograms_every_n_steps_with_gradients_and_the_final_weights_of_a_stopped_run(tmp_path):
    trainer, _ = _fit(tmp_path, [HistogramLogger(every_n_steps=3, gradients=True)], max_steps=7)
    trainer.loggers[0].close()
    ea = read_events(tmp_path)
    # Every 3 steps (0, 3, 6), and the end of the run mid-epoch (step 7): the final weights.
    assert [e.step for e in ea.Histograms("watch/weights/fc1.weight")] == [0, 3, 6, 7]
    assert [e.step for e in ea.Histograms("watch/gradients/fc2.bias")] == [0, 3, 6, 7]


class _Capture(L.pytorch.loggers.Logger):
    name, version = "capture", 0

    def __init__(self):
        super().__init__()
        self.rows = []

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, *args, **kwargs):
        pass


@pytest.mark.slow
def test_gradient_norms_are_unscaled_under_fp16_mixed_precision(tmp_path):
    from lightning.pytorch.plugins.precision import MixedPrecision

    torch.manual_seed(0)
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    model = _Tiny()
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
    logged = next(m for _, m in capture.rows if "watch/grad_norm/total" in m)["watch/grad_norm/total"]
    assert logged == pytest.approx(reference, rel=0.02)  # scaled it would be 65536 times larger
