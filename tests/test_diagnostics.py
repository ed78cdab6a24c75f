"""Seeing backpropagation (issue 15): the per-layer signals, the diagnosis rules in both directions,
the gradient-flow figure, saliency maps, model.init / activation / residual, and the lessons."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from datamodules.spec import DataSpec
from zoo.callbacks.diagnostics import Diagnoser
from zoo.callbacks.logger import tensorboard_tag as tb
from zoo.callbacks.signals import Reading, activation_stats, gradient_flow_figure

LAYERS = ["net.features.1", "net.features.4", "net.features.7", "net.head"]


def reading(step, grad=(0.3, 0.4, 0.5, 0.6), ratio=1e-3, total=None, clip=None, activations=None, lr=1e-3):
    total = math.sqrt(sum(g * g for g in grad)) if total is None else total
    return Reading(
        step=step,
        prefix="",
        layers=LAYERS,
        grad=list(grad),
        update_ratio=[ratio] * len(LAYERS),
        weight=[5.0] * len(LAYERS),
        total_grad=total,
        lr=lr,
        clip=clip,
        activations=activations or {},
    )


def healthy(d: Diagnoser, readings: int = 30) -> None:
    for i in range(readings):
        d.observe_reading(reading(25 * i, activations={"net.features.2": {"kind": "ReLU", "dead": 0.05}}))
        d.observe_losses(25 * i, [2.0 * 0.9**i] * 25)
    for epoch in range(10):
        d.observe_epoch(epoch, 1.0 * 0.8**epoch, 1.2 * 0.85**epoch)


def kinds(d: Diagnoser) -> list[str]:
    return [x["kind"] for x in d.diagnoses]


def test_a_healthy_run_gets_no_diagnosis():
    d = Diagnoser()
    healthy(d)
    assert d.diagnoses == []


def test_vanishing_gradients_named_at_the_layer_nearest_the_input_once():
    d = Diagnoser()
    for i in range(10):
        d.observe_reading(reading(25 * i, grad=(1e-7, 1e-5, 1e-2, 0.5)))
    assert kinds(d) == ["vanishing_gradients"]
    found = d.diagnoses[0]
    assert found["layer"] == "net.features.1" and found["step"] == 75  # the 4th reading running
    assert "vanished" in found["message"] and "model.residual=true" in found["message"]


def test_one_low_reading_is_not_vanishing():
    d = Diagnoser()
    for i in range(10):
        d.observe_reading(reading(25 * i, grad=(1e-7, 0.4, 0.5, 0.6) if i == 3 else (0.3, 0.4, 0.5, 0.6)))
    assert d.diagnoses == []


def test_exploding_gradients_say_the_clipping_that_would_have_caught_them():
    d = Diagnoser()
    for i in range(10):
        d.observe_reading(reading(25 * i, total=1.0))
    d.observe_reading(reading(250, total=50.0))
    assert kinds(d) == ["exploding_gradients"]
    assert d.diagnoses[0]["step"] == 250
    assert "trainer.gradient_clip_val=2" in d.diagnoses[0]["message"]


def test_clipped_spikes_and_gradients_far_above_the_weights():
    clipped = Diagnoser()
    for i in range(10):
        clipped.observe_reading(reading(25 * i, total=1.0, clip=1.0))
    clipped.observe_reading(reading(250, total=50.0, clip=1.0))
    assert clipped.diagnoses == []
    first = Diagnoser()  # no history yet: a gradient 100x the weights' norm is enough
    first.observe_reading(reading(0, total=1e5))
    assert kinds(first) == ["exploding_gradients"] and "norm of the weights" in first.diagnoses[0]["message"]


@pytest.mark.parametrize(
    "stat, kind, module",
    [("dead", "dead_units", "ReLU"), ("saturated", "saturation", "Sigmoid")],
)
def test_dead_and_saturated_units_after_three_readings(stat, kind, module):
    d = Diagnoser()
    for i in range(2):
        d.observe_reading(reading(25 * i, activations={"net.features.2": {"kind": module, stat: 0.8}}))
    assert d.diagnoses == []
    d.observe_reading(reading(50, activations={"net.features.2": {"kind": module, stat: 0.8}}))
    assert kinds(d) == [kind] and d.diagnoses[0]["layer"] == "net.features.2"
    assert "80%" in d.diagnoses[0]["message"]


def test_a_generator_drawing_black_pixels_is_not_saturation():
    """A GAN generator's output tanh sits at -1 on MNIST's black background: that is its range, not a
    saturated hidden layer (it was diagnosed on every DCGAN run). The signals mark it as an output."""
    from zoo.nets.gan import DCGAN

    d = Diagnoser()
    for i in range(5):
        d.observe_reading(reading(25 * i, activations={"tanh1": {"kind": "Tanh", "saturated": 0.9, "output": True}}))
    assert d.diagnoses == []
    net = DCGAN(DataSpec(name="x", kind="image", shape=(1, 28, 28), num_classes=10))
    outputs = [m for m in net.generator.modules() if getattr(m, "is_output", False)]
    assert len(outputs) == 1 and isinstance(outputs[0], nn.Tanh) and outputs[0] is list(net.generator)[-1]


def test_learning_rate_too_high_from_a_rising_or_non_finite_loss_and_large_updates():
    rising = Diagnoser()
    for i, loss in enumerate([2.0, 1.0, 0.8, 0.7, 1.5, 1.6]):
        rising.observe_losses(25 * i, [loss] * 25)
    assert kinds(rising) == ["lr_too_high"] and "rose from 0.7" in rising.diagnoses[0]["message"]
    converged = Diagnoser()  # 0.036 -> 0.056 after starting at 2.3: noise near the bottom
    for i, loss in enumerate([2.3, 0.5, 0.1, 0.036, 0.056, 0.056]):
        converged.observe_losses(25 * i, [loss] * 25)
    assert converged.diagnoses == []
    nan = Diagnoser()
    nan.observe_losses(10, [2.0, float("nan")])
    assert kinds(nan) == ["lr_too_high"] and "nan" in nan.diagnoses[0]["message"]
    large = Diagnoser()
    for i in range(4):
        large.observe_reading(reading(25 * i, ratio=0.3))
    assert kinds(large) == ["lr_too_high"] and "30%" in large.diagnoses[0]["message"]
    assert large.diagnoses[0]["step"] == 25  # two readings running
    spike = Diagnoser()
    spike.observe_losses(10, [2.3, 2.2, 40.0, 2.4])
    assert kinds(spike) == ["lr_too_high"] and "jumped to 40" in spike.diagnoses[0]["message"]


def test_learning_rate_too_low_needs_tiny_updates_and_a_still_loss_but_not_a_schedule_end():
    low = Diagnoser()
    for i in range(8):
        low.observe_losses(25 * i, [2.30] * 25)
        low.observe_reading(reading(25 * i, ratio=1e-6))
    assert kinds(low) == ["lr_too_low"]
    decayed = Diagnoser()  # a cosine schedule's end: tiny updates on purpose
    for i in range(8):
        decayed.observe_losses(25 * i, [0.05] * 25)
        decayed.observe_reading(reading(25 * i, ratio=1e-6, lr=1e-3 if i == 0 else 1e-6))
    assert decayed.diagnoses == []
    frozen = Diagnoser()  # updates of exactly zero (every unit dead) are not a low learning rate
    for i in range(8):
        frozen.observe_losses(25 * i, [2.30] * 25)
        frozen.observe_reading(reading(25 * i, ratio=0.0))
    assert "lr_too_low" not in kinds(frozen)


def test_plateau_only_when_the_loss_never_left_its_start():
    stuck = Diagnoser()
    for i in range(12):
        stuck.observe_losses(25 * i, [2.30 + 0.001 * (i % 2)] * 25)
    assert kinds(stuck) == ["plateau"]
    converged = Diagnoser()  # learnt, then flat: fine
    for i in range(12):
        converged.observe_losses(25 * i, [max(2.3 * 0.5**i, 0.01)] * 25)
    assert converged.diagnoses == []


def test_overfitting_names_the_epoch_early_stopping_would_keep():
    d = Diagnoser()
    for epoch, (train, val) in enumerate([(1.0, 0.9), (0.6, 0.6), (0.4, 0.5), (0.2, 0.6), (0.1, 0.7)]):
        d.observe_epoch(epoch, train, val)
    assert kinds(d) == ["overfitting"]
    assert d.diagnoses[0]["step"] == 4 and "would keep epoch 2" in d.diagnoses[0]["message"]
    both_fall = Diagnoser()
    for epoch in range(6):
        both_fall.observe_epoch(epoch, 1.0 / (epoch + 1), 1.1 / (epoch + 1))
    assert both_fall.diagnoses == []


def test_windows_cut_short_by_an_epoch_end_are_carried_not_judged(monkeypatch):
    """Two losses an epoch (a short epoch, several batches a step): a healthy, noisy run (lesson_dropout
    with dropout 0.5) got lr_too_high when each epoch's pair was a window and one lucky low pair its
    best. Carried over until they hold MIN_WINDOW losses, the windows stay silent; a real rise still speaks."""
    from types import SimpleNamespace

    from zoo.callbacks import diagnostics

    monkeypatch.setattr(diagnostics, "logging_step", lambda trainer: trainer.step)
    cb = diagnostics.Diagnostics(every_n_steps=25, verbose=False)
    trainer = SimpleNamespace(step=0, is_global_zero=True, loggers=[], current_epoch=0, sanity_checking=False)
    module = SimpleNamespace(automatic_optimization=True)

    def epoch(*losses):
        for loss in losses:
            trainer.step += 4
            cb.on_train_batch_end(trainer, module, torch.tensor(loss), None, 0)
        cb.on_train_epoch_end(trainer, module)
        assert cb._epoch_train == pytest.approx(sum(losses) / len(losses))  # the epoch's loss, carried or not

    for pair in [(2.2, 2.1), (1.9, 1.8), (1.7, 1.6), (1.45, 1.35), (1.3, 1.2), (1.1, 1.05), (1.0, 1.1)]:
        epoch(*pair)
    for pair in [(0.52, 0.81), (1.03, 1.09), (0.9, 1.1), (1.03, 1.08), (0.65, 0.8), (0.7, 0.75)]:
        epoch(*pair)  # as pairs, (0.52, 0.81) would be the best and the next three 1.5x above it
    assert cb.diagnoses == []
    assert len(cb.diagnoser.windows) == 6  # 26 losses, 4 to a window, the last pair carried
    for _ in range(4):
        epoch(3.0, 3.2)
    cb.on_train_end(trainer, module)
    assert [d["kind"] for d in cb.diagnoses] == ["lr_too_high"]


def test_a_checkpoint_restored_after_a_diagnosis_keeps_it():
    """trainer.test(ckpt_path=best) restores the best epoch's callback state: a diagnosis made after
    it (overfitting always is) must stay; a resumed run gets what its checkpoint had said."""
    from zoo.callbacks.diagnostics import Diagnostics

    late = {"kind": "overfitting", "step": 26, "layer": None, "message": "Overfitting from epoch 16."}
    early = {"kind": "dead_units", "step": 20, "layer": "relu1", "message": "Dead units at step 20."}
    cb = Diagnostics(verbose=False)
    cb.diagnoser.diagnoses.append(dict(late))
    cb.load_state_dict({"diagnoses": [early]})  # the best checkpoint knew only the early one
    assert cb.diagnoses == [late, early]
    resumed = Diagnostics(verbose=False)
    resumed.load_state_dict(cb.state_dict())
    assert resumed.diagnoses == [late, early]
    resumed.load_state_dict(cb.state_dict())  # said once, however often restored
    assert len(resumed.diagnoses) == 2


def test_activation_stats_count_dead_channels_and_saturated_outputs():
    y = torch.ones(4, 6, 3, 3)
    y[:, :3] = 0  # three of six channels zero for every example and position
    mean, std, dead, saturated = activation_stats(nn.ReLU(), y).tolist()
    assert dead == pytest.approx(0.5) and math.isnan(saturated)
    assert mean == pytest.approx(0.5) and std == pytest.approx(y.std().item())
    s = torch.tensor([[0.001, 0.5, 0.999, 0.995]])
    _, _, dead, saturated = activation_stats(nn.Sigmoid(), s).tolist()
    assert saturated == pytest.approx(0.75) and math.isnan(dead)


def test_gradient_flow_figure_has_a_bar_per_layer_on_log_scales():
    fig = gradient_flow_figure(LAYERS, [1e-7, 1e-5, 1e-2, 0.5], [1e-6, 1e-4, 1e-3, 1e-2], "epoch 0")
    top, bottom = fig.axes
    assert top.get_yscale() == "log" and bottom.get_yscale() == "log"
    assert len(top.patches) == len(LAYERS)
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["features.1", "features.4", "features.7", "head"]
    # The decades are labelled in plain text: mathtext ($10^{-3}$) doubled the figure's drawing time.
    fig.canvas.draw()
    labels = [t.get_text() for ax in (top, bottom) for t in ax.get_yticklabels() if t.get_text()]
    assert "1e\u221203" in labels and not any("$" in label for label in labels)
    # Less than a decade still gets labels between the decades (6e-02, 2e-01), as matplotlib's default.
    narrow = gradient_flow_figure(LAYERS, [0.05, 0.1, 0.2, 0.3], [1e-3] * 4)
    narrow.canvas.draw()
    shown = [t.get_text() for t in narrow.axes[0].get_yticklabels(minor=True) if t.get_text()]
    assert "2e\u221201" in shown


# ---- networks: model.init, model.activation for cnn, model.residual for mlp ----------------------

IMAGE = DataSpec(name="digits", kind="image", shape=(1, 8, 8), num_classes=10)
SERIES = DataSpec(name="sine", kind="series", shape=(32, 3), horizon=4, target_channels=3)


@pytest.mark.parametrize(
    "target, spec",
    [
        ("zoo.nets.mlp.MLP", IMAGE),
        ("zoo.nets.cnn.CNN", IMAGE),
        ("zoo.nets.resnet.ResNet", IMAGE),
        ("zoo.nets.rnn.RNN", SERIES),
        ("zoo.nets.rnn.LSTM", SERIES),
        ("zoo.nets.linear.Linear", SERIES),
        ("zoo.nets.gan.GAN", IMAGE),
    ],
)
@pytest.mark.parametrize("init", ["xavier", "kaiming", "orthogonal", "normal"])
def test_every_network_takes_every_init(target, spec, init):
    import functools
    import importlib

    from zoo.tasks.registry import build_net

    module, _, name = target.rpartition(".")
    factory = getattr(importlib.import_module(module), name)
    torch.manual_seed(0)
    default = build_net(functools.partial(factory, init="default"), spec)
    torch.manual_seed(0)
    drawn = build_net(functools.partial(factory, init=init), spec)
    assert default.state_dict().keys() == drawn.state_dict().keys()  # checkpoints load by these names
    changed = [
        k for k, v in drawn.state_dict().items() if k.endswith("weight") and not torch.equal(v, default.state_dict()[k])
    ]
    assert changed, f"{target} with model.init={init} kept every weight as built"
    if init == "normal":
        big = max(v.std().item() for k, v in drawn.state_dict().items() if k.endswith("weight") and v.dim() >= 2)
        assert big == pytest.approx(1.0, abs=0.2)


def test_unknown_init_is_one_sentence():
    import functools

    from zoo.errors import UserError
    from zoo.nets.mlp import MLP
    from zoo.tasks.registry import build_net

    with pytest.raises(
        UserError, match="unknown init 'he'; choose one of: default, xavier, kaiming, orthogonal, normal"
    ):
        build_net(functools.partial(MLP, init="he"), IMAGE, "mlp", "digits")


def test_init_gain_scales_an_rnns_recurrent_weights():
    import functools

    from zoo.nets.rnn import RNN
    from zoo.tasks.registry import build_net

    net = build_net(functools.partial(RNN, init="orthogonal", init_gain=1.6, layers=1, hidden=16), SERIES)
    singular = torch.linalg.svdvals(net.rnn.weight_hh_l0.detach())
    assert singular.min().item() == pytest.approx(1.6, rel=1e-4) and singular.max().item() == pytest.approx(
        1.6, rel=1e-4
    )


def test_cnn_takes_sigmoid_and_tanh_and_mlp_residual_adds_its_input():
    from zoo.nets.blocks import Residual
    from zoo.nets.cnn import CNN
    from zoo.nets.mlp import MLP

    for act, cls in (("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh)):
        net = CNN(IMAGE, activation=act)
        assert any(isinstance(m, cls) for m in net.modules()) and not any(isinstance(m, nn.ReLU) for m in net.modules())
        assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    plain, residual = MLP(IMAGE, widths=32, depth=4), MLP(IMAGE, widths=32, depth=4, residual=True)
    assert sum(isinstance(m, Residual) for m in residual.modules()) == 3  # the first layer changes the width
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in residual.parameters())
    assert not any(isinstance(m, Residual) for m in plain.modules())
    block = next(m for m in residual.modules() if isinstance(m, Residual))
    x = torch.randn(3, 32)
    assert torch.allclose(block(x), x + block.block(x))


# ---- a run: signals in the event file, diagnoses in metrics.json, hooks only on reading steps ----


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, one_thread):
    """One short run on the digits with the default callbacks, counting activation hook calls."""
    from tests.helpers import run_train
    from zoo.callbacks import signals

    calls = []
    original = signals.activation_stats

    def counting(module, y):
        calls.append(type(module).__name__)
        return original(module, y)

    signals.activation_stats = counting
    try:
        out = tmp_path_factory.mktemp("digits-run")
        summary = run_train(
            ["trainer.max_epochs=2", "callbacks.signals.every_n_steps=10", "model.dropout=0"], out, views=True
        )
    finally:
        signals.activation_stats = original
    return out, summary, calls


def _events(out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(out), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    ea.Reload()
    return ea


def test_a_run_logs_every_signal_per_layer_and_the_flow_figure(digits_run):
    out, summary, _ = digits_run
    ea = _events(out)
    scalars = ea.Tags()["scalars"]
    for prefix in (
        tb("watch/update_ratio/fc"),
        tb("watch/weight_norm/fc"),
        tb("watch/activation_mean/relu"),
        tb("watch/activation_std/relu"),
        tb("watch/dead_units/relu"),
    ):
        assert any(t.startswith(prefix) for t in scalars), prefix
    ratios = [e.value for t in scalars if t.startswith(tb("watch/update_ratio/")) for e in ea.Scalars(t)]
    assert ratios and all(0 < r < 1 for r in ratios)
    assert tb("watch/gradient_flow") in ea.Tags()["images"]
    assert len(ea.Images(tb("watch/gradient_flow"))) == 2  # one per epoch
    assert tb("test/saliency") in ea.Tags()["images"]
    assert summary["diagnoses"] == []  # a healthy run
    assert json.loads((out / "metrics.json").read_text())["diagnoses"] == []


def test_activation_hooks_run_only_on_reading_steps(digits_run):
    out, summary, calls = digits_run
    ea = _events(out)
    readings = len(ea.Scalars(tb("watch/dead_units/relu1")))
    relus = 2  # the default MLP's two hidden layers
    # each reading sees one training forward pass; validation and test passes are never read
    assert len(calls) == readings * relus
    assert readings == math.ceil(summary["global_step"] / 10)
