"""The run's budget: trainer.max_time / max_steps as config keys, and schedules that end with the budget."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from tests.helpers import run_train
from zoo.run.config import check_overrides
from zoo.tasks.schedules import Budget, one_cycle, warmup_cosine


def lrs(scheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def optimizer(lr: float = 1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_cosine_over_a_step_budget_warms_up_then_ends_at_the_minimum():
    got = lrs(warmup_cosine(optimizer(), Budget(100), warmup=0.1, min_lr_ratio=0.01), 101)
    assert got[0] == pytest.approx(0.1) and got[9] == pytest.approx(1.0)  # linear warm-up over 10 steps
    assert max(got) == pytest.approx(1.0) and got[10] == pytest.approx(1.0)
    assert got[55] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # halfway through the decay
    assert got[100] == pytest.approx(0.01)
    counted = lrs(warmup_cosine(optimizer(), Budget(100), warmup=10), 11)  # a count of steps
    assert counted[4] == pytest.approx(0.5) and counted[10] == pytest.approx(1.0)


def test_a_time_budget_moves_the_schedule_by_the_clock_whatever_the_step_count():
    clock = {"spent": 0.0}
    budget = Budget(10**9, time_spent=lambda: clock["spent"])  # a step budget that would never end
    scheduler = warmup_cosine(optimizer(2.0), budget, warmup=0.0, min_lr_ratio=0.0)
    assert scheduler.get_last_lr()[0] == pytest.approx(2.0)
    clock["spent"] = 0.5
    scheduler.optimizer.step()
    scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(1.0)
    clock["spent"] = 1.2  # over budget: held at the end
    scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.0)
    # Steps and time: whichever is further along decides.
    assert Budget(10, time_spent=lambda: 0.2).progress(5) == 0.5
    assert Budget(10, time_spent=lambda: 0.7).progress(5) == 0.7


def test_one_cycle_peaks_at_the_optimizers_lr_and_ends_far_below():
    got = lrs(one_cycle(optimizer(1.0), Budget(100), pct_start=0.3, div_factor=25, final_div_factor=1e4), 101)
    assert got[0] == pytest.approx(1 / 25) and got[30] == pytest.approx(1.0)
    assert max(got) == pytest.approx(1.0) and got[100] == pytest.approx(1 / 25 / 1e4)


def test_budget_keys_are_config_keys_with_one_sentence_for_a_bad_value(tmp_path):
    cfg = check_overrides(
        ["trainer.max_time=00:00:05:00", "trainer.max_steps=100", "trainer.val_check_interval=0.5"],
        run_folder=False,
    )
    assert cfg.trainer.max_time == "00:00:05:00" and cfg.trainer.max_steps == 100
    from zoo.errors import UserError

    for args, sentence in [
        (["trainer.max_time=5min"], "trainer.max_time must be days:hours:minutes:seconds, got '5min'"),
        (["trainer.max_epochs=-1"], "would train forever; give a budget, e.g. trainer.max_time=00:00:05:00."),
        (["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches must be a whole number of batches"),
    ]:
        with pytest.raises(UserError, match=sentence) as err:
            check_overrides(args, run_folder=False)
        assert "\n" not in str(err.value)


class LastLR(L.Callback):
    def __init__(self):
        self.seen: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.slow
def test_a_time_budgeted_run_stops_on_time_with_its_schedule_annealed(tmp_path, one_thread):
    import train
    from zoo.run.config import check_config, compose_run

    watch = LastLR()
    cfg = compose_run(
        [
            "callbacks.progress_bar=null",
            "callbacks.model_summary=null",
            "callbacks.early_stopping=null",
            "logger=none",
            "callbacks.lr_monitor=null",
            "scheduler=cosine",
            "scheduler.factory.min_lr_ratio=0.0",
            "optimizer.lr=0.01",
            "trainer.max_epochs=-1",
            "trainer.max_time=00:00:00:03",
        ],
        str(tmp_path / "run"),
    )
    check_config(cfg)
    summary = train.train(cfg, extra_callbacks=(watch,))
    assert summary["status"] == "finished" and 1 <= summary["epochs"] < 1000
    assert max(watch.seen) == pytest.approx(0.01, rel=0.05)  # it reached the top of the schedule
    assert watch.seen[-1] < 0.01 * 0.05  # and was annealed to (nearly) nothing when the time ran out


def test_a_step_budget_shorter_than_an_epoch_validates_its_last_weights(tmp_path, one_thread):
    # digits: 24 batches an epoch; early stopping (on by default) needs a validation metric.
    summary = run_train(
        [
            "logger=none",
            "callbacks.lr_monitor=null",
            "scheduler=cosine",
            "trainer.max_steps=10",
            "trainer.max_epochs=-1",
        ],
        tmp_path / "run",
    )
    assert summary["status"] == "finished" and summary["global_step"] == 10
    assert "val/loss" in summary and summary["best_epoch"] == 0 and "test/acc" in summary
