"""Real training on the bundled digits: accuracy, early stopping, determinism, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import QUIET, run_train
from zoo.callbacks.logger import tensorboard_tag as tb

FAST = ["trainer.max_epochs=3", "callbacks.histograms=null"]


@pytest.mark.slow
def test_digits_reaches_95_percent(tmp_path):
    metrics = run_train(["experiment=digits_mlp"], tmp_path / "run")
    assert metrics["test/acc"] >= 0.95, metrics
    assert metrics["val/acc"] >= 0.9 and metrics["test/loss"] < 0.3


@pytest.mark.slow
def test_early_stopping_really_stops(tmp_path):
    # No change counts as an improvement when min_delta is larger than any possible change.
    metrics = run_train(
        ["trainer.max_epochs=30", "callbacks.early_stopping.min_delta=100", "callbacks.early_stopping.patience=2"],
        tmp_path / "run",
    )
    assert metrics["epochs"] == 3  # epoch 0 sets the best, epochs 1 and 2 fail to beat it by 100


@pytest.mark.slow
def test_same_seed_same_metrics_different_seed_different(tmp_path):
    a = run_train(FAST + ["seed=7"], tmp_path / "a")
    b = run_train(FAST + ["seed=7"], tmp_path / "b")
    c = run_train(FAST + ["seed=8"], tmp_path / "c")
    keys = ["test/acc", "test/loss", "val/acc", "val/loss"]
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert a["test/loss"] != c["test/loss"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    metrics = run_train(["trainer.max_epochs=4", "callbacks.histograms=null"], out)
    return out, metrics


def test_checkpoint_reload_gives_the_same_test_metrics(trained_run):
    import eval as evaluate_module

    out, metrics = trained_run
    cfg = OmegaConf.create(
        {
            "ckpt_path": metrics["best_checkpoint"],
            "data_dir": None,
            "split": "test",
            "accelerator": "cpu",
            "batch_size": None,
            "out": str(out / "eval.json"),
        }
    )
    again = evaluate_module.evaluate(cfg)
    assert again["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-7)
    assert again["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)
    assert json.loads((out / "eval.json").read_text())["test/acc"] == again["test/acc"]


def test_checkpoints_are_plain_data(trained_run):
    out, metrics = trained_run
    for name in ("last.ckpt", metrics["best_checkpoint"]):
        path = out / "checkpoints" / name
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # raises on any pickled object
        hp = ckpt["hyper_parameters"]
        assert hp["config"]["model"]["_target_"] == "zoo.nets.mlp.MLP"
        assert hp["spec"]["shape"] == [1, 8, 8] and hp["choices"]["data"] == "digits"


@pytest.mark.slow
def test_init_from_starts_from_the_checkpoint_weights(trained_run, tmp_path):
    _, metrics = trained_run
    # A tiny learning rate for one step: the new run's quality can only come from the loaded weights.
    tuned = run_train(
        [
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=1",
            "optimizer.lr=1e-9",
            f"init_from={metrics['best_checkpoint']}",
            "callbacks.histograms=null",
        ],
        tmp_path / "ft",
    )
    fresh = run_train(
        ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "optimizer.lr=1e-9", "callbacks.histograms=null"],
        tmp_path / "fresh",
    )
    assert tuned["test/acc"] == pytest.approx(metrics["test/acc"], abs=0.01)
    assert fresh["test/acc"] < 0.5


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_every_optimizer_learns(optimizer, tmp_path):
    metrics = run_train(FAST + [f"optimizer={optimizer}"], tmp_path / "run")
    assert metrics["test/acc"] > 0.8, (optimizer, metrics)


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["none", "step", "cosine", "onecycle", "plateau"])
def test_every_scheduler_runs_and_moves_the_lr(scheduler, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    metrics = run_train(
        FAST + [f"scheduler={scheduler}", "scheduler.factory.step_size=1" if scheduler == "step" else "seed=42"], out
    )
    assert metrics["test/acc"] > 0.8
    ea = EventAccumulator(str(out), size_guidance={"scalars": 0})
    ea.Reload()
    lrs = [e.value for e in ea.Scalars(tb("lr/net"))]
    assert (len(set(lrs)) == 1) == (scheduler in ("none", "plateau")), lrs


def _total_grad_norm(pl_module) -> float:
    return torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in pl_module.parameters() if p.grad is not None])
    ).item()


@pytest.mark.slow
def test_gradient_clipping_and_accumulation_are_trainer_settings(tmp_path):
    import lightning as L

    import train
    from zoo.run.config import check_config, compose_run

    class GradNorms(L.Callback):
        """The total gradient norm before clipping (Lightning clips right after this hook) and as
        the optimizer stepped with it (still there when they are zeroed, at the next step's first batch)."""

        def __init__(self):
            self.before, self.stepped = [], []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.before.append(_total_grad_norm(pl_module))

        def on_before_zero_grad(self, trainer, pl_module, optimizer):
            if any(p.grad is not None for p in pl_module.parameters()):
                self.stepped.append(_total_grad_norm(pl_module))

    norms = GradNorms()
    cfg = compose_run(
        [*QUIET, *FAST, "trainer.gradient_clip_val=0.5", "trainer.accumulate_grad_batches=2"], str(tmp_path / "run")
    )
    check_config(cfg)
    metrics = train.train(cfg, extra_callbacks=(norms,))
    steps_per_epoch = -(-int(1437 - round(0.15 * 1437)) // 64)  # batches of the training split
    assert metrics["global_step"] == 3 * -(-steps_per_epoch // 2) == len(norms.before)  # a step per 2 batches
    assert max(norms.before) > 0.5, norms.before  # clipping had something to clip
    # every step seen zeroed (all but about one an epoch) stepped with its gradient clipped to 0.5
    assert len(norms.stepped) >= len(norms.before) - 3 and max(norms.stepped) <= 0.5 + 1e-4, norms.stepped
    assert sum(abs(n - 0.5) < 1e-3 for n in norms.stepped) >= len(norms.stepped) // 2, norms.stepped
