"""The fast paths of issue 3 keep results: several optimizer steps per Lightning step give the same
model as one, training metrics are aggregated per epoch, and the benchmark script runs."""

from __future__ import annotations

import re

import pytest

from tests.helpers import benchmark_script, cli, run_train
from zoo.callbacks.logger import tensorboard_tag as tb

FAST = ["trainer.max_epochs=3", "callbacks.histograms=null"]


@pytest.mark.slow
def test_steps_per_execution_trains_the_same_model(tmp_path):
    one = run_train(FAST, tmp_path / "k1")
    four = run_train(FAST + ["steps_per_execution=4"], tmp_path / "k4")
    for key in ("test/acc", "test/loss", "val/acc", "val/loss"):
        assert four[key] == pytest.approx(one[key], rel=1e-6, abs=1e-7), key
    assert four["global_step"] == one["global_step"]  # steps count batches, whatever K is


@pytest.mark.slow
def test_steps_per_execution_with_clipping_matches_too(tmp_path):
    one = run_train(FAST + ["trainer.gradient_clip_val=0.05"], tmp_path / "k1")
    three = run_train(FAST + ["trainer.gradient_clip_val=0.05", "steps_per_execution=3"], tmp_path / "k3")
    assert three["test/loss"] == pytest.approx(one["test/loss"], rel=1e-5)


def test_gradient_norm_interval_counts_batches_with_steps_per_execution(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    metrics = run_train(FAST + ["steps_per_execution=4", "callbacks.gradient_norms.every_n_steps=4"], out)
    ea = EventAccumulator(str(out), size_guidance={"scalars": 0})
    ea.Reload()
    steps = [e.step for e in ea.Scalars(tb("watch/grad_norm/total"))]
    assert steps == list(range(0, metrics["global_step"], 4))  # every 4 batches, at the batch's own step


def test_steps_per_execution_refuses_gradient_accumulation(tmp_path):
    from zoo.errors import UserError

    with pytest.raises(
        UserError, match=r"steps_per_execution=2 .* trainer.accumulate_grad_batches=2; set steps_per_execution=1"
    ):
        run_train(FAST + ["steps_per_execution=2", "trainer.accumulate_grad_batches=2"], tmp_path / "run")


def test_training_loss_is_logged_at_the_logging_interval_only(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    metrics = run_train(FAST + ["trainer.log_every_n_steps=5"], out)
    ea = EventAccumulator(str(out), size_guidance={"scalars": 0})
    ea.Reload()
    steps = [e.step for e in ea.Scalars(tb("train/loss_step"))]
    assert steps == list(range(4, metrics["global_step"], 5))
    epoch_loss = [e.value for e in ea.Scalars(tb("train/loss"))]
    assert len(epoch_loss) == 3 and epoch_loss[-1] < epoch_loss[0]
    assert [round(e.value, 3) for e in ea.Scalars(tb("train/acc"))][-1] > 0.8


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory):
    """One MNIST-sized data folder for the benchmark's runs here (the script writes it on first use)."""
    return tmp_path_factory.mktemp("bench") / "data"


@pytest.fixture(scope="module")
def bench_train():
    return benchmark_script("bench_train")


@pytest.mark.slow
def test_benchmark_script_prints_the_table(bench_data):
    # One round of two epochs (the first a warm-up) is the least that fills every column.
    r = cli(
        "benchmarks/bench_train.py",
        "--model",
        "mlp",
        "--rounds",
        "1",
        "--epochs",
        "2",
        "--steps",
        "20",
        "--interleaved",
        "--data-dir",
        str(bench_data),
        timeout=400,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("| mlp |")]
    assert len(rows) == 2 and "plain PyTorch" in rows[0] and "framework" in rows[1]
    # The speed itself belongs to the benchmark, not to a test on a shared machine: check that each
    # field is what it says. Columns: steps/s, epoch s, ratio, peak MB, command to 1st step s, val acc.
    plain, framework = ([float(v) for v in row.split("|")[3:9]] for row in rows)
    rounded = re.search(r"^mlp: --steps 20 rounded up to (\d+)", r.stdout, re.M)  # to a multiple of steps_per_execution
    steps = int(rounded.group(1)) if rounded else 20
    for steps_per_s, epoch_s, _, peak_mb, first_step_s, val_acc in (plain, framework):
        assert abs(steps_per_s - steps / epoch_s) <= 0.5 + 0.01 * steps_per_s, rows  # steps/s shown as a whole number
        assert peak_mb > 100 and first_step_s > 0 and 0 <= val_acc <= 1, rows
    assert plain[2] == 1.0, rows[0]
    # one round: the ratio is the framework's epoch time over the plain loop's (both rounded in the table)
    assert framework[2] == pytest.approx(framework[1] / plain[1], rel=0.03, abs=0.01), rows
    assert re.search(
        r"^mlp: framework / plain, interleaved in one process: median \d+\.\d+ over 1 epoch pairs$", r.stdout, re.M
    ), r.stdout[-2000:]
    assert (bench_data / "MNIST" / "raw" / "train-images-idx3-ubyte").stat().st_size == 16 + 60_000 * 784


@pytest.mark.slow
def test_load_benchmark_prints_the_table(bench_data):
    """bench_load.py (issue 30): the GAN alone and beside a second process of its kind, the framework
    against the plain loop. The plain loop trains the GAN the framework builds by default, conditional
    on the digits' labels (it once called it without them and the benchmark stopped there)."""
    r = cli("benchmarks/bench_load.py", "--model", "gan", "--seconds", "2", "--data-dir", str(bench_data), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    row = next((line for line in r.stdout.splitlines() if line.startswith("| gan |")), None)
    assert row is not None, r.stdout[-2000:]
    plain_idle, framework_idle, plain_loaded, framework_loaded, *ratios = (float(v) for v in row.split("|")[2:9])
    assert min(plain_idle, framework_idle, plain_loaded, framework_loaded) > 0, row
    # The ratios the goals are stated in, from the same (unrounded) medians as the steps/s shown.
    expected = [framework_loaded / framework_idle, framework_loaded / plain_loaded, plain_idle / framework_idle]
    assert ratios == [pytest.approx(e, rel=0.05, abs=0.01) for e in expected], row
    # Each framework process says what it chose: one idle, two loaded.
    chosen = re.findall(r"(idle|loaded): K=(\d+) threads=(\d+)", r.stdout)
    assert sorted(state for state, _, _ in chosen) == ["idle", "loaded", "loaded"], r.stdout[-2000:]
    assert all(int(k) >= 1 and int(t) >= 1 for _, k, t in chosen), chosen


def test_load_benchmark_takes_each_ratio_within_a_round():
    """On a shared machine a round that runs at half speed moves every cell of that round alike: the
    ratio within each round holds, the ratio of medians taken from different rounds does not."""
    bench_load = benchmark_script("bench_load")
    cells = {
        "plain idle": [10.0, 5.0, 10.0],
        "framework idle": [10.0, 5.0, 8.0],
        "plain loaded": [2.5, 1.0, 2.0],
        "framework loaded": [5.0, 2.0, 5.0],
    }
    ratios = bench_load.round_ratios(cells)
    assert ratios["loaded"] == [2.0, 2.0, 2.5]  # medians of the cells would read 5.0 / 2.0 = 2.5
    assert ratios["kept"] == [0.5, 0.4, 0.625]
    assert ratios["idle"] == [1.0, 1.0, 1.25]


@pytest.mark.slow
def test_benchmark_measures_each_callback(bench_data):
    """Two of the callbacks, one timed on the training epochs and one on the test pass (a process
    each, plus the bare run); the other variants differ only in the callback left on (checked below)."""
    r = cli(
        "benchmarks/bench_train.py",
        "--model",
        "mlp",
        "--rounds",
        "1",
        "--epochs",
        "2",
        "--steps",
        "10",
        "--callbacks",
        "--only",
        "gradient_norms,misclassified",
        "--data-dir",
        str(bench_data),
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("bare (epoch)", "gradient_norms", "misclassified", "bare (test pass)"):
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith(name + " ")), None)
        assert line is not None, (name, r.stdout[-2000:])
        seconds, ratio = (float(v) for v in re.findall(r"\d+\.\d+", line[len(name) :])[:2])
        assert seconds > 0 and ratio > 0, line
    assert not any(ln.startswith(("histograms ", "checkpoint ")) for ln in r.stdout.splitlines())  # not asked for


def test_the_benchmark_measures_callbacks_the_bench_experiment_has(bench_train):
    """Each --callbacks variant turns every observability callback off but its own (by name, in the
    bench experiment's config), so each name must be a callback of that config; the histograms'
    variant turns them on with an override train.py accepts."""
    from zoo.run.config import check_overrides, compose_config

    callbacks = compose_config(["experiment=bench_mlp_mnist"]).callbacks
    assert set(bench_train.OBSERVABILITY) <= set(callbacks), set(bench_train.OBSERVABILITY) - set(callbacks)
    assert bench_train.CALLBACK_VARIANTS[0] == "bare"
    assert set(bench_train.CALLBACK_VARIANTS[1:]) <= set(bench_train.OBSERVABILITY)
    check_overrides(["experiment=bench_mlp_mnist", bench_train.HISTOGRAMS_ON], run_folder=False)


@pytest.mark.slow
def test_compile_trains_and_keeps_plain_checkpoint_keys(tmp_path):
    import torch

    metrics = run_train(["compile=true", "trainer.max_epochs=1", "callbacks.histograms=null"], tmp_path / "run")
    assert metrics["test/acc"] > 0.5
    keys = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert "net.head.weight" in keys and not any("_orig_mod" in k for k in keys)


def test_data_stays_put_on_the_cpu_and_batches_are_views_of_it():
    from datamodules.images import DigitsData

    dm = DigitsData(batch_size=32)
    dm.setup("fit")
    x, _ = dm.split("train")
    assert x.device.type == "cpu" and x is dm.splits["train"][0]
    first = next(iter(dm.val_dataloader()))[0]
    assert first.data_ptr() == dm.splits["val"][0].data_ptr()  # unshuffled batches are slices, no copy


def test_bench_experiments_hold_the_benchmark_settings(tmp_path):
    """experiment=... overrides train.yaml's own keys (here steps_per_execution), not the other way round."""
    from zoo.run.config import compose_run

    mlp = compose_run(["experiment=bench_mlp_mnist"], str(tmp_path), str(tmp_path))
    assert mlp.steps_per_execution == "auto" and mlp.data.batch_size == 128 and list(mlp.model.widths) == [64, 128, 64]
    assert mlp.model.batchnorm and mlp.optimizer._target_ == "torch.optim.Adam" and mlp.data.val_size == 5000
    assert (
        compose_run(["experiment=bench_mlp_mnist", "steps_per_execution=2"], str(tmp_path), None).steps_per_execution
        == 2
    )
    cnn = compose_run(["experiment=bench_cnn_mnist"], str(tmp_path), str(tmp_path))
    assert cnn.model._target_ == "zoo.nets.cnn.CNN" and cnn.data.batch_size == 128


def test_nvml_cuda_check_is_off_while_training_on_a_cpu_and_restored_after(tmp_path, monkeypatch):
    """Lightning's PYTORCH_NVML_BASED_CUDA_CHECK=1 makes every Adam step load NVML; with no GPU
    visible it is cleared for the training and put back afterwards."""
    import os

    import lightning as L

    import train
    from zoo.run.config import compose_run

    # Importing Lightning sets it; set here too, so the test does not depend on what earlier tests left
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    seen = []

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK"))

    cfg = compose_run(
        FAST + ["trainer.max_epochs=1", "callbacks.progress_bar=null", "test=false"], str(tmp_path / "run")
    )
    train.train(cfg, extra_callbacks=(Watch(),))
    assert seen and set(seen) == {None}  # no GPU visible, or (trainer on a GPU) CUDA already initialised
    assert os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1"


class Fit:
    """Stands for the trainer a FigureBudget's ledger is kept for (any weakly referable object)."""


def timed_figures(monkeypatch):
    """A clock the budget reads, and figures that take a second of it to draw."""
    from zoo.callbacks import common

    clock = [0.0]
    monkeypatch.setattr(common.time, "perf_counter", lambda: clock[0])

    def figure(made: list, label):
        def make():
            made.append(label)
            clock[0] += 1.0  # drawing takes a second

        return make

    return clock, figure


@pytest.mark.parametrize(
    "share, epoch_s, drawn",
    [
        (0.05, 0.1, [0, 29]),  # 1 s figures on 0.1 s epochs: the first, then the last when fitting ends
        (0.05, 30.0, list(range(30))),  # long epochs: every one
        (None, 0.1, list(range(30))),  # no budget: every one
    ],
)
def test_figure_budget_keeps_drawing_within_its_share_and_always_draws_the_last(monkeypatch, share, epoch_s, drawn):
    from zoo.callbacks import common

    clock, figure = timed_figures(monkeypatch)
    budget, made, fit = common.FigureBudget(share), [], Fit()
    for epoch in range(30):
        clock[0] += epoch_s
        budget.draw(fit, figure(made, epoch))
    budget.finish()
    assert made == drawn
    from zoo.errors import UserError

    with pytest.raises(UserError, match="figure_budget must be a share"):
        common.FigureBudget(0)


def test_the_figures_of_one_fit_share_one_budget_and_each_gets_its_turn(monkeypatch):
    """A forecaster draws a forecast plot and a gradient-flow figure each epoch: together they take the
    run's 5%, not 5% each, and neither starves the other (the plot comes first in every epoch)."""
    from zoo.callbacks import common

    clock, figure = timed_figures(monkeypatch)
    plot, flow, fit = common.FigureBudget(0.05), common.FigureBudget(0.05), Fit()
    made: list = []
    for epoch in range(200):
        clock[0] += 1.0  # one-second epochs
        plot.draw(fit, figure(made, ("plot", epoch)))
        flow.draw(fit, figure(made, ("flow", epoch)))
    drawing = len(made) * 1.0
    assert drawing <= 0.05 * clock[0] + 2.0  # within the one share (give or take the two first figures)
    kinds = [kind for kind, _ in made]
    assert kinds.count("plot") >= 4 and kinds.count("flow") >= 4
    assert abs(kinds.count("plot") - kinds.count("flow")) <= 1
    assert made[:2] == [("plot", 0), ("flow", 0)]  # each callback's first figure is drawn at once

    # Another fit keeps its own ledger: its first figures are drawn whatever this one spent.
    other, again = Fit(), []
    plot.draw(other, figure(again, "plot"))
    flow.draw(other, figure(again, "flow"))
    assert again == ["plot", "flow"]


def test_a_figure_drawn_every_epoch_takes_no_share_of_the_others_budget(monkeypatch):
    """figure_budget=null on one callback (every epoch, for tests that compare events) leaves the other
    its whole share."""
    from zoo.callbacks import common

    clock, figure = timed_figures(monkeypatch)
    every, budgeted, fit = common.FigureBudget(None), common.FigureBudget(0.05), Fit()
    made: list = []
    for epoch in range(200):
        clock[0] += 1.0
        every.draw(fit, figure(made, ("every", epoch)))
        budgeted.draw(fit, figure(made, ("budgeted", epoch)))
    kinds = [kind for kind, _ in made]
    assert kinds.count("every") == 200
    budgeted_time = kinds.count("budgeted") * 1.0
    assert 0.03 * clock[0] <= budgeted_time <= 0.05 * clock[0] + 1.0
