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
from tests.helpers.tensorboard import hparams_tab, read_events, sections_in_order
from zoo.callbacks.gradients import GradientNormLogger, HistogramLogger
from zoo.callbacks.logger import SECTIONS, TensorBoardLogger
from zoo.callbacks.logger import tensorboard_tag as tb
from zoo.nets.naming import layer_names, parameter_names

# Every scalar tag of a run starts with one of these (ARCHITECTURE.md, "TensorBoard tags"), its
# section numbered in TensorBoard (zoo.callbacks.logger.tensorboard_tag: train/loss -> 1_train/loss).
SCHEME = re.compile(
    r"^(1_train|2_val|3_test)/[a-z_0-9]+$|^10_best/(val/[a-z_0-9]+|epoch)$|^11_lr/[a-z_0-9]+$|^20_watch/"
)


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
    for tag in ("1_train/loss", "1_train/loss_step", "1_train/acc", "2_val/loss", "2_val/acc", "3_test/acc"):
        assert tag in scalars, (tag, sorted(scalars))
    assert {
        "11_lr/net",
        "20_watch/step_time_s",
        "20_watch/samples_per_s",
        "10_best/val/acc",
        "10_best/epoch",
    } <= scalars
    assert not {"epoch", "hp_metric", "train/loss_epoch", "1_train/loss_epoch", "train/loss", "val/acc"} & scalars
    assert not any(t.startswith(("lr-", "grad_norm/", "lr/", "watch/")) for t in scalars)
    assert all(SCHEME.match(t) for t in scalars), sorted(t for t in scalars if not SCHEME.match(t))
    # train/<metric> is one point per epoch, like val/<metric>; train/<metric>_step every logging step.
    assert len(ea.Scalars(tb("train/loss"))) == len(ea.Scalars(tb("val/loss"))) == 2
    assert [e.step for e in ea.Scalars(tb("train/loss_step"))] == list(range(4, metrics["global_step"], 5))
    assert all(e.value > 0 for e in ea.Scalars(tb("watch/samples_per_s")))


def test_best_epoch_metrics_are_their_own_tags_equal_to_metrics_json(run):
    _, metrics, ea = run
    assert ea.Scalars(tb("best/val/acc"))[-1].value == pytest.approx(metrics["val/acc"])
    assert ea.Scalars(tb("best/val/loss"))[-1].value == pytest.approx(metrics["val/loss"])
    assert ea.Scalars(tb("best/epoch"))[-1].value == metrics["best_epoch"]
    assert ea.Scalars(tb("test/acc"))[-1].value == pytest.approx(metrics["test/acc"])


def test_per_layer_gradient_norms_named_by_type_and_position(run):
    _, metrics, ea = run
    scalars = set(ea.Tags()["scalars"])
    layers = {t for t in scalars if t.startswith(tb("watch/grad_norm/")) and t != tb("watch/grad_norm/total")}
    assert {tb(f"watch/grad_norm/{layer}") for layer in ("conv1", "bn1", "conv2", "fc1")} <= layers
    total = ea.Scalars(tb("watch/grad_norm/total"))
    assert [e.step for e in total] == list(range(0, metrics["global_step"], 5))
    at0 = {t: ea.Scalars(t)[0].value for t in layers}  # the total is the norm of the per-layer norms
    assert total[0].value == pytest.approx(math.sqrt(sum(v * v for v in at0.values())), rel=1e-4)


def test_weight_histograms_at_every_epoch_end(run):
    _, metrics, ea = run
    hists = set(ea.Tags()["histograms"])
    assert {tb(f"watch/weights/{p}") for p in ("conv1.weight", "bn1.bias", "fc2.weight")} <= hists
    per_epoch = metrics["global_step"] // 2
    assert [e.step for e in ea.Histograms(tb("watch/weights/conv1.weight"))] == [per_epoch - 1, 2 * per_epoch - 1]
    assert not any(t.startswith(tb("watch/gradients/")) for t in hists)  # gradients: optional, off by default


def test_custom_scalars_put_train_and_val_on_one_chart(run):
    _, _, ea = run
    layout = layout_pb2.Layout.FromString(ea.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert [cat.title for cat in layout.category] == ["train and val", "diagnostics"]
    assert charts["loss (train, val)"] == [r"^(1_train|2_val)/loss$"]  # the tags as TensorBoard has them
    assert charts["acc (train, val)"] == [r"^(1_train|2_val)/acc$"]
    assert charts["learning rate"] == [r"^11_lr/"] and charts["gradient norm per layer"] == [r"^20_watch/grad_norm/"]
    scalars = ea.Tags()["scalars"]
    assert sorted(t for t in scalars if re.match(charts["loss (train, val)"][0], t)) == ["1_train/loss", "2_val/loss"]
    assert any(re.match(charts["gradient norm per layer"][0], t) for t in scalars)
    assert any(re.match(charts["learning rate"][0], t) for t in scalars)


def test_graph_per_class_table_pr_curves_top_losses_and_samples(run):
    out, _, ea = run
    assert ea.Tags()["graph"]  # the Graphs tab
    names = {n.op for n in ea.Graph().node}
    assert any("conv" in n.lower() for n in names), names
    images = set(ea.Tags()["images"])
    assert {
        tb(t) for t in ("train/samples", "test/top_losses", "test/confusion_matrix", "test/misclassified")
    } <= images
    tensors = set(ea.Tags()["tensors"])
    assert {tb(f"test/pr_curve/{c}") for c in range(10)} <= tensors
    table = ea.Tensors(tb("test/per_class/text_summary"))[0].tensor_proto.string_val[0].decode()
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
    assert values[tb("best/val/acc")] == pytest.approx(metrics["val/acc"])
    assert values[tb("test/acc")] == pytest.approx(metrics["test/acc"])


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
    assert {tb(t) for t in ("best/val/acc", "best/val/mae", "test/acc", "test/mse")} <= metric_tags
    # Every run has the metrics of its own task in the one definition.
    by_run = {g.name: {m.name.tag for m in g.metric_values} for g in groups}
    assert tb("best/val/acc") in by_run["cnn-digits"] and tb("best/val/mae") in by_run["linear-sine"]
    # What differs between runs comes first (the tab shows the first five columns).
    differs = [h.differs for h in experiment.hparam_infos]
    assert differs == sorted(differs, reverse=True) and names[0] == "choice/data"


@pytest.mark.slow
def test_sections_come_in_reading_order_for_a_classifier_a_forecaster_and_a_language_model(run, tmp_path):
    """TensorBoard's frontend sorts sections by a natural sort of their names (tests.helpers.tensorboard
    ports it): numbered, they come train, val, test, then the run's results and settings, watch last.
    Its HParams tab orders metric columns as plain strings and shows five: the best epoch's first."""
    import shutil

    logs = tmp_path / "logs"
    shutil.copytree(run[0], logs / "cnn-digits")
    run_train(["model=linear", "data=sine", "trainer.max_epochs=1"], logs / "linear-sine", views=True)
    lm = ["model=lstm", "data=pydoc", "model.hidden=16", "model.layers=1", "data.seq_len=32"]
    lm += ["trainer.max_epochs=1", "trainer.limit_train_batches=5", "trainer.limit_val_batches=2"]
    run_train(
        [*lm, "trainer.limit_test_batches=2", "callbacks.generated_text.length=20"], logs / "lstm-pydoc", views=True
    )
    everything = set()
    for folder in ("cnn-digits", "linear-sine", "lstm-pydoc"):
        tags = read_events(logs / folder).Tags()
        written = {t for kind in ("scalars", "images", "histograms", "tensors") for t in tags[kind]}
        written -= {t for t in written if t.startswith("_hparams_/") or t == "custom_scalars__config__"}
        assert all(t.split("/", 1)[0] in SECTIONS.values() for t in written), sorted(written)  # none missed
        everything |= written
        for breaks in ("/", "/_"):  # Time Series; Scalars, Images, Histograms, Text, PR Curves
            order = sections_in_order(written, breaks)
            assert order[:3] == ["1_train", "2_val", "3_test"] and order[-1] == "20_watch", (folder, order)
            assert order == [s for s in SECTIONS.values() if s in order], (folder, order)
    assert sections_in_order(everything) == ["1_train", "2_val", "3_test", "10_best", "11_lr", "12_samples", "20_watch"]
    experiment, _ = hparams_tab(logs)
    first_five = [m.name.tag for m in experiment.metric_infos][:5]
    assert first_five[0] == "10_best/epoch" and all(t.startswith("10_best/val/") for t in first_five[1:]), first_five


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
    assert [e.step for e in ea.Histograms(tb("watch/weights/fc1.weight"))] == [0, 3, 6, 7]
    assert [e.step for e in ea.Histograms(tb("watch/gradients/fc2.bias"))] == [0, 3, 6, 7]


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


@pytest.mark.parametrize("steps_per_execution", ["auto", "4"])
def test_gradient_histograms_once_per_epoch_beside_the_weights_when_asked(tmp_path, steps_per_execution):
    # callbacks.histograms.gradients=true at the other defaults (every_n_steps=0): one histogram of
    # each parameter's gradient at every epoch's end, at the weights' steps, also with several
    # batches per Lightning step.
    out = tmp_path / "run"
    metrics = run_train(
        [
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=9",
            "test=false",
            "callbacks.histograms.gradients=true",
            f"steps_per_execution={steps_per_execution}",
        ],
        out,
    )
    ea = read_events(out)
    hists = set(ea.Tags()["histograms"])
    weights = sorted(t for t in hists if t.startswith(tb("watch/weights/")))
    gradients = sorted(t for t in hists if t.startswith(tb("watch/gradients/")))
    assert weights and [t.replace("/gradients/", "/weights/") for t in gradients] == weights, (weights, gradients)
    assert metrics["global_step"] == 18
    for tag in gradients:
        values = ea.Histograms(tag)
        assert [e.step for e in values] == [8, 17], tag
        assert all(e.histogram_value.num > 0 and e.histogram_value.sum_squares > 0 for e in values), tag
