"""steps_per_execution (zoo/tasks/execution.py): auto, the default, and an explicit K train the same
model as one batch a step for a seed, and everything counted in steps still counts batches: the
logged steps of train/loss, the learning rate and the gradient norms, global_step, max_steps,
validation every N batches, step-wise schedules."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import run_train
from zoo.callbacks.logger import tensorboard_tag as tb

# digits: 20 training batches of 64 an epoch; short intervals so that executions are cut often
BASE = [
    "trainer.max_epochs=3",
    "trainer.log_every_n_steps=4",
    "callbacks.gradient_norms.every_n_steps=7",
    "callbacks.histograms.every_n_steps=15",
    "callbacks.early_stopping=null",
]


def scalars(out) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(out), size_guidance={"scalars": 0, "histograms": 0})
    ea.Reload()
    tags = ea.Tags()
    found = {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in tags["scalars"]}
    found.update({f"histogram {tag}": [(e.step, 0.0) for e in ea.Histograms(tag)] for tag in tags["histograms"]})
    return found


def weights(out) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def assert_same_run(run, reference, ours, theirs) -> None:
    """The same weights, metrics and TensorBoard curves (same steps, same values)."""
    for key in ("global_step", "epochs", "test/acc", "test/loss", "val/acc", "val/loss"):
        assert run[key] == pytest.approx(reference[key], rel=1e-5, abs=1e-6), key
    a, b = weights(ours), weights(theirs)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    curves, expected = scalars(ours), scalars(theirs)
    assert curves.keys() == expected.keys()
    for tag, points in expected.items():
        assert [s for s, _ in curves[tag]] == [s for s, _ in points], tag
        if tag in (tb("watch/step_time_s"), tb("watch/samples_per_s")):  # measured times: the same steps only
            continue
        assert [v for _, v in curves[tag]] == pytest.approx([v for _, v in points], rel=1e-4, abs=1e-6), tag


@pytest.fixture(scope="module")
def one_batch_a_step(tmp_path_factory):
    out = tmp_path_factory.mktemp("k1") / "run"
    return run_train([*BASE, "steps_per_execution=1"], out, views=True), out


@pytest.mark.slow  # two runs with every view on: about 15 s
def test_auto_trains_the_same_model_as_one_batch_a_step(one_batch_a_step, tmp_path, monkeypatch):
    from zoo.tasks import execution

    # Choose K after a few steps, and then a large one whatever this busy machine measured (the
    # choice itself: test_auto_chooses_k_from_the_measured_overhead).
    monkeypatch.setattr(execution, "WARMUP", 1)
    monkeypatch.setattr(execution, "SAMPLES", 3)
    choose = execution.ExecutionPlan.choose

    def choose_large(plan, inner, executions):
        choose(plan, inner, executions)
        plan.k = execution.MAX_AUTO

    monkeypatch.setattr(execution.ExecutionPlan, "choose", choose_large)
    reference, theirs = one_batch_a_step
    run = run_train(BASE, tmp_path / "auto", views=True)  # steps_per_execution=auto is the default
    assert run["steps_per_execution"] == execution.MAX_AUTO and reference["steps_per_execution"] == 1
    assert_same_run(run, reference, tmp_path / "auto", theirs)
    curves = scalars(tmp_path / "auto")
    assert [s for s, _ in curves[tb("train/loss_step")]] == list(range(3, 60, 4))  # every 4 batches: 20 an epoch
    assert [s for s, _ in curves[tb("watch/grad_norm/total")]] == list(range(0, 60, 7))
    assert [s for s, _ in curves[tb("lr/net")]] == list(range(3, 60, 4))


@pytest.mark.slow  # two runs with every view on: about 15 s
def test_explicit_k_counts_batches_in_every_setting(tmp_path, monkeypatch):
    """max_steps not a multiple of K, validation every 6 batches, a one-cycle schedule stepped every
    batch, gradient clipping: as with one batch a step."""
    options = [
        *BASE,
        "trainer.max_steps=45",
        "trainer.val_check_interval=6",
        "scheduler=onecycle",
        "trainer.gradient_clip_val=0.05",
    ]
    from zoo.tasks.execution import StepsPerExecution

    reference = run_train([*options, "steps_per_execution=1"], tmp_path / "k1", views=True)
    inner = []  # the batches trained inside an execution (none: one batch a step, whatever K says)
    train_inner_batch = StepsPerExecution.train_inner_batch
    monkeypatch.setattr(
        StepsPerExecution, "train_inner_batch", lambda task, batch: inner.append(1) or train_inner_batch(task, batch)
    )
    run = run_train([*options, "steps_per_execution=5"], tmp_path / "k5", views=True)
    assert run["global_step"] == 45 and run["steps_per_execution"] == 5
    # The one-cycle schedule asks Lightning for the run's length, which builds the training loader before
    # the executions begin: it is built again, so the steps do train five batches.
    assert len(inner) >= 20, len(inner)
    assert_same_run(run, reference, tmp_path / "k5", tmp_path / "k1")
    assert [s for s, _ in scalars(tmp_path / "k5")[tb("val/loss")]] == [
        s for s, _ in scalars(tmp_path / "k1")[tb("val/loss")]
    ]


def test_auto_is_one_batch_a_step_where_it_cannot_work(tmp_path):
    run = run_train([*BASE, "trainer.max_epochs=1", "trainer.accumulate_grad_batches=2"], tmp_path / "acc")
    assert run["steps_per_execution"] == 1 and run["global_step"] == 10


def test_execution_sizes_end_on_every_batch_something_is_due():
    from zoo.tasks.execution import ExecutionPlan

    plan = ExecutionPlan(16)
    plan.active, plan.k = True, 16
    plan.due = [(10, 9), (25, 0)]  # logging after batches 9, 19, ...; gradient norms on 0, 25, 50, ...
    plan.stop_at = 58
    done, sizes = 0, []
    while done < 58:
        sizes.append(plan.size(done, done % 40, 40))
        done += sizes[-1]
    ends = [sum(sizes[: i + 1]) - 1 for i in range(len(sizes))]  # the last batch of each execution
    assert ends == [0, 9, 19, 25, 29, 39, 49, 50, 57]


def test_auto_chooses_k_from_the_measured_overhead():
    from zoo.tasks.execution import MAX_AUTO, ExecutionPlan

    plan = ExecutionPlan("auto")
    plan.calibrating = True
    # a batch takes 1 ms, an execution of two 2.5 ms (the lower quartile of each: a burst above does
    # not count): 0.5 ms of overhead, under 5% from K=10 on
    plan.choose([0.001, 0.001, 0.001, 0.0013], [0.0025, 0.0025, 0.0025, 0.004])
    assert plan.k == 10 and not plan.calibrating
    assert plan.measured["overhead_s"] == pytest.approx(0.0005)
    plan.choose([0.050], [0.1003])  # a long step: the overhead is under 5% already
    assert plan.k == 1
    plan.choose([0.0001], [0.01])  # a tiny step: as many as allowed
    assert plan.k == MAX_AUTO


@pytest.mark.slow
def test_a_gan_trains_the_same_with_several_batches_a_step(tmp_path):
    """The GAN's inner batches step its two raw optimizers (no Lightning hooks): the same weights as one
    batch a step, clipping included; auto now chooses K for it too."""
    gan = [
        "experiment=digits_gan",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=9",
        "trainer.limit_val_batches=1",
        "trainer.gradient_clip_val=0.5",
        "model.n_critic=2",
        "callbacks.gradient_norms.every_n_steps=4",
        "test=false",
    ]
    one = run_train([*gan, "steps_per_execution=1"], tmp_path / "k1")
    three = run_train([*gan, "steps_per_execution=3"], tmp_path / "k3")
    assert three["steps_per_execution"] == 3
    assert three["global_step"] == one["global_step"] == 9 + 9 // 2
    a, b = weights(tmp_path / "k1"), weights(tmp_path / "k3")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    auto = run_train([*gan, "trainer.limit_train_batches=40"], tmp_path / "auto")
    assert isinstance(auto["steps_per_execution"], int) and auto["steps_per_execution"] >= 1


def test_the_diagnostics_read_every_batch_s_loss_whatever_k(tmp_path, monkeypatch):
    """With several batches a Lightning step, the loss rules still see one loss per batch: the same
    losses in the same order as with one batch a step (a step's own loss is only its last batch's);
    a window closes at the first step that brings it to every_n_steps losses or more."""
    from zoo.callbacks.diagnostics import Diagnoser

    seen: dict[str, list[list[float]]] = {}

    def observing(name):
        def observe_losses(self, step, losses):
            seen.setdefault(name, []).append([round(v, 5) for v in losses])
            return []

        return observe_losses

    settings = ["trainer.max_epochs=2", "callbacks.diagnostics.every_n_steps=8", "callbacks.early_stopping=null"]
    for name, k in (("one", "1"), ("five", "5")):
        monkeypatch.setattr(Diagnoser, "observe_losses", observing(name))
        run_train([*settings, f"steps_per_execution={k}", "test=false"], tmp_path / name)
    assert sum(len(w) for w in seen["one"]) == 40  # digits: 20 batches an epoch
    assert [v for w in seen["five"] for v in w] == [v for w in seen["one"] for v in w]
    assert all(8 <= len(w) < 8 + 5 for w in seen["five"][:-1])


def test_a_finished_fit_leaves_no_inner_losses_for_the_next(tmp_path):
    """The diagnostics read ``inner_losses`` beside each step's loss: a fit that ends keeps none of its
    last execution's, so a later fit of the same task without executions does not count them again."""
    import lightning as L

    import train
    from zoo.run.config import compose_run

    cfg = compose_run(
        ["trainer.max_epochs=1", "steps_per_execution=5", "test=false"], str(tmp_path / "run"), str(tmp_path)
    )
    seen = {}

    class Watch(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            seen["during"] = max(seen.get("during", 0), len(pl_module.inner_losses))

        def on_fit_end(self, trainer, pl_module):
            seen["task"] = pl_module

    train.train(cfg, extra_callbacks=(Watch(),))
    assert seen["during"] == 4  # executions of 5 batches: 4 trained inside
    assert seen["task"].inner_losses == []


def test_auto_k_tiles_the_batches_due_so_every_step_trains_k_batches_on_average():
    """The default readings (b % 25 == 0) and logging (b % 50 == 49) cut executions there: K=15 would
    train 25 batches as 15 + 10 (10 a step on average, so the overhead would be 7.5%, not 5%); auto
    takes the smallest K whose steps average what the overhead needs, or the fewest steps where
    none does."""
    from zoo.tasks.execution import ExecutionPlan, executions_in

    due = [(50, 49), (25, 0)]

    def sizes(k: int) -> list[int]:
        plan = ExecutionPlan(k)
        plan.active, plan.k, plan.due = True, k, due
        out, done = [], 0
        while done < 100:
            out.append(plan.size(done, done, 1000))
            done += out[-1]
        return out

    assert sizes(15) == [1, 15, 10, 15, 9, 1, 15, 10, 15, 9]  # what a K of 15 trains
    assert executions_in(50, 15, due) == 5 and executions_in(50, 25, due) == 3

    plan = ExecutionPlan("auto")

    def calibrate(needed: float) -> int:
        """K after timings of a batch of 1 ms and an overhead 5% of `needed` batches (ceil: needed)."""
        plan.choose([0.001] * 4, [0.002 + 0.00005 * (needed - 0.5)] * 4)
        return plan.k

    plan.due = due
    average = lambda k: 50 / executions_in(50, k, due)  # noqa: E731 - batches a step, over the period
    for needed in range(2, 17):  # 50 / 3: the most a step can average between these due batches
        k = calibrate(needed)
        assert k >= needed and average(k) >= needed, (needed, k)
        assert all(average(smaller) < needed for smaller in range(needed, k)), (needed, k)  # the smallest such
    for needed, k in ((15, 25), (5, 6), (1, 1), (40, 40), (64, 64)):  # 40: none averages 40; 40 is as few steps as any
        assert calibrate(needed) == k, needed
    plan.due = []  # nothing due: K is what the overhead needs
    assert calibrate(15) == 15
