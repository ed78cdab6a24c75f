"""The Python API (zoo/api/): ``zoo.train`` runs train.py's machinery in this process and returns a
``Run`` read back from its folder; ``zoo.sweep`` runs ``python train.py -m``; mistakes raise
``zoo.UserError`` with the command's sentence; the stop button leaves a resumable run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import lightning as L
import pytest

from tests.helpers import NO_VIEWS, QUIET, ROOT, command

# A small, quick run: an MLP on the 8x8 digits, two epochs (about 20 batches each).
DIGITS = ["model=mlp", "data=digits", "trainer.max_epochs=2", *QUIET, *NO_VIEWS]


def at(folder) -> str:
    return f"hydra.run.dir={folder}"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    import zoo

    folder = tmp_path_factory.mktemp("api") / "run"
    return zoo.train(*DIGITS, at(folder))


def test_import_zoo_imports_no_torch():
    code = (
        "import sys, zoo; names = ('torch', 'lightning', 'pandas', 'matplotlib', 'hydra');"
        "print([n for n in names if n in sys.modules]); print(zoo.UserError.__module__, callable(zoo.train))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "zoo.errors True"]
    import zoo

    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        zoo.trian  # noqa: B018 - a misspelt name is an AttributeError, not None


@pytest.mark.parametrize(
    "overrides",
    [["model=cnnx"], ["optimizer.lr=-1"], ["trainer.max_epoch=3"], ["model.widths=[0]", "data=digits"]],
    ids=["choice", "value", "key", "sizes"],
)
def test_a_mistake_raises_the_commands_sentence(overrides, tmp_path):
    import zoo

    refused = command("train.py", *overrides, at(tmp_path / "cli"))
    assert refused.returncode == 2
    sentence = refused.stderr.strip().removeprefix("error: ")
    with pytest.raises(zoo.UserError) as caught:
        zoo.train(*overrides, at(tmp_path / "api"))
    assert str(caught.value) == sentence
    assert not (tmp_path / "api").exists()  # refused before anything was written


def test_a_sweep_or_flag_is_not_a_run():
    import zoo

    with pytest.raises(zoo.UserError, match=r"zoo.train runs one run .* got '-m'; .* use zoo.sweep"):
        zoo.train("-m", "model=mlp,cnn")


def test_a_run_returns_its_metrics_history_and_figures(digits_run):
    run = digits_run
    metrics = json.loads((run.folder / "metrics.json").read_text())
    assert run.metrics == metrics and run.status == "finished"
    assert metrics["val/acc"] > 0.8  # an MLP learns the digits in two epochs
    # Hydra's files, as for a command's run
    assert (run.folder / ".hydra" / "config.yaml").is_file()
    assert run.overrides[:3] == DIGITS[:3]
    assert run.monitor == "val/acc"

    history = run.history
    assert list(history.index) == [0, 1] and history.index.name == "epoch"
    for column in ("step", "train/loss", "train/acc", "val/loss", "val/acc", "lr/net"):
        assert column in history, column
    assert not any(c.endswith("_step") for c in history.columns)
    best = metrics["best_epoch"]
    assert history.loc[best, "val/acc"] == pytest.approx(metrics["val/acc"], abs=1e-6)
    assert history["train/loss"].iloc[1] < history["train/loss"].iloc[0]
    assert isinstance(run.diagnoses, list)

    fig = run.plot()
    loss_ax, acc_ax = fig.axes
    assert (loss_ax.get_title(), acc_ax.get_title()) == ("loss", "acc")
    lines = {line.get_label(): line for line in acc_ax.get_lines()}
    assert list(lines["val"].get_ydata()) == pytest.approx(list(history["val/acc"]))
    assert list(lines[f"best epoch ({best})"].get_xdata()) == [best, best]

    flow = run.plot_gradients()
    labels = [t.get_text() for t in flow.axes[1].get_xticklabels()]
    assert labels == ["fc1", "fc2", "fc3"]  # conf/model/mlp.yaml: two hidden layers, input to output
    assert flow.axes[0].get_title() == "Gradient flow epoch 1"
    with pytest.raises(Exception, match="epoch=7 is not an epoch of this run; give one from 0 to 1"):
        run.plot_gradients(epoch=7)


def test_load_gives_the_trained_model(digits_run):
    from sklearn.datasets import load_digits

    import zoo

    model = digits_run.load()
    assert isinstance(model, zoo.Predictor)
    assert model.ckpt_path == digits_run.metrics["best_checkpoint"]
    digits = load_digits()
    pixels = (digits.images[:50] * (255 / 16)).round().astype("uint8")  # numpy (N, H, W): 50 grey images
    table = model.predict(pixels)
    accuracy = (table["label"].astype(int).to_numpy() == digits.target[:50]).mean()
    assert accuracy > 0.8
    assert digits_run.load("last").ckpt_path.endswith("last.ckpt")
    with pytest.raises(zoo.UserError, match="has no checkpoint nope.ckpt; it has: best-epoch001.ckpt, last.ckpt"):
        digits_run.load("nope.ckpt")


def test_open_run_reads_a_command_lines_run(digits_run, tmp_path):
    import zoo

    opened = zoo.open_run(digits_run.folder)
    assert opened.history.equals(digits_run.history)
    with pytest.raises(zoo.UserError, match="holds no run"):
        zoo.open_run(tmp_path)
    fig = zoo.compare([digits_run, opened], metric="acc")
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2]


def test_a_finished_run_folder_is_refused_as_the_command_refuses_it(digits_run):
    import zoo

    refused = command("train.py", *DIGITS, at(digits_run.folder))
    with pytest.raises(zoo.UserError) as caught:
        zoo.train(*DIGITS, at(digits_run.folder))
    assert str(caught.value) == refused.stderr.strip().removeprefix("error: ")
    assert "already holds a finished run" in str(caught.value)


class InterruptAt(L.Callback):
    """Sends this process SIGINT, as the notebook's stop button does, once ``n`` batches have trained."""

    def __init__(self, n: int):
        self.n, self.sent = n, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.n and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow
def test_the_stop_button_leaves_a_run_that_resumes(tmp_path, capsys):
    import zoo

    previous = signal.getsignal(signal.SIGINT)
    run = zoo.train(*DIGITS, "trainer.max_epochs=3", at(tmp_path / "run"), callbacks=[InterruptAt(25)])
    assert signal.getsignal(signal.SIGINT) is previous  # the run's handler is gone again
    assert run.status == "interrupted"
    assert 25 <= run.metrics["global_step"] < 40 and run.metrics["epochs"] == 1  # stopped in epoch 1, not at its end
    assert (run.folder / "checkpoints" / "resume.ckpt").is_file()
    assert "(in Python: run.resume())" in capsys.readouterr().err

    resumed = run.resume()
    assert resumed.folder == run.folder
    assert resumed.status == "finished" and resumed.metrics["epochs"] == 3
    history = resumed.history
    assert list(history.index) == [0, 1, 2]  # each epoch once, though epoch 1 was trained twice
    assert history["step"].is_monotonic_increasing


def test_in_a_notebook_progress_is_one_line_per_epoch(tmp_path, monkeypatch, capsys):
    import zoo
    from zoo.api import launch

    monkeypatch.setattr(launch, "in_notebook", lambda: True)
    overrides = [o for o in DIGITS if not o.startswith("callbacks.progress_bar")]
    run = zoo.train(*overrides, at(tmp_path / "run"))
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split(" (")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"], out
    assert "train/loss" in lines[0] and "val/acc" in lines[0]
    assert "\r" not in out and "\x1b[" not in out  # nothing redrawn in place
    assert run.config.callbacks.progress_bar is None  # the rich bar was off for it


@pytest.mark.slow
def test_a_sweep_returns_its_summary(tmp_path, monkeypatch):
    import zoo

    monkeypatch.chdir(tmp_path)  # runs and sweeps go to logs/ under the working folder, as the command's
    summary = zoo.sweep("optimizer.lr=1e-3,1e-2", *DIGITS, "trainer.max_epochs=1", quiet=True)
    folder = summary.attrs["folder"]
    assert folder.startswith(str(tmp_path / "logs" / "sweeps"))
    assert len(summary) == 2 and set(summary["status"]) == {"finished"}
    assert "val/acc" in summary
    fig = zoo.compare(summary)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["optimizer.lr=0.001", "optimizer.lr=0.01"]  # as the jobs recorded them (overrides.yaml)
    with pytest.raises(zoo.UserError, match="optimizer.lr must be a positive number"):
        zoo.sweep("optimizer.lr=1e-3,-1", *DIGITS)


def test_a_diverged_run_is_returned_with_what_happened(tmp_path, capsys):
    import zoo

    run = zoo.train(*DIGITS, "optimizer=sgd_plain", "optimizer.lr=1e4", at(tmp_path / "run"))
    assert run.status == "diverged"
    assert run.metrics["error"].startswith("training diverged at step")
    assert "training diverged at step" in capsys.readouterr().err


def test_two_runs_started_in_the_same_second_get_two_folders(tmp_path, monkeypatch):
    """A notebook cell that trains twice within a second (the second run of a lesson diverging at
    once, say) gets two folders: the default name holds the time to the second."""
    import datetime

    import hydra.core.utils

    import zoo

    class Frozen(datetime.datetime):  # Hydra's ${now:...} reads hydra.core.utils.datetime.now()
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 7, 11, 43, 34)

    monkeypatch.setattr(hydra.core.utils, "datetime", Frozen)
    logs = f"paths.log_dir={tmp_path}"
    first = zoo.train(*DIGITS, "trainer.max_epochs=1", logs)
    second = zoo.train(*DIGITS, "trainer.max_epochs=1", "seed=7", logs)
    assert first.status == second.status == "finished"
    assert first.folder.name.endswith("_2026-12-07_11-43-34")
    assert second.folder.name == f"{first.folder.name}-2"
    assert first.config["seed"] != 7 and second.config["seed"] == 7  # each folder has its own run
