"""Runs survive kill -9, Ctrl-C/SIGTERM, divergence and hostile files, and lose nothing written."""

from __future__ import annotations

import collections
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, cli, command, run_train
from tests.helpers.formats import fake_idx_files, gz
from zoo.callbacks.logger import tensorboard_tag as tb

pytestmark = pytest.mark.slow  # every test here trains in subprocesses (several runs, DDP, sweeps)

RUN = [
    "seed=3",
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=5",
    "callbacks.gradient_norms.every_n_steps=5",
    "callbacks.histograms.every_n_steps=7",
    "callbacks.progress_bar=null",
    "callbacks.early_stopping=null",
    "callbacks.signals.figure_budget=null",  # a flow figure every epoch, not as timing allows: events compared
]
SLOW = ["+callbacks.sleepy._target_=tests.helpers.sleepy.SleepPerStep", "+callbacks.sleepy.seconds=0.06"]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def events(run: Path) -> collections.Counter:
    """(tag, step) -> how many times it is in the run's event files, read raw."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    counts = collections.Counter()
    for path in sorted(run.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                counts[(value.tag, event.step)] += 1
    return counts


def curve_steps(counts: collections.Counter) -> dict[str, list[int]]:
    return {tag: sorted(s for (t, s) in counts if t == tag) for tag in {t for t, _ in counts}}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    r = command("train.py", *RUN, *SLOW[:1], "+callbacks.sleepy.seconds=0", f"hydra.run.dir={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads((out / "metrics.json").read_text()), events(out)


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(uninterrupted, tmp_path):
    out = tmp_path / "run"
    proc = start([*RUN, *SLOW, f"hydra.run.dir={out}"])
    resume_ckpt = out / "checkpoints" / "resume.ckpt"
    wait_for(resume_ckpt.exists)  # written as epoch 1 starts
    time.sleep(0.5)  # some steps into epoch 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()

    r = cli("train.py", *RUN, *SLOW[:1], "+callbacks.sleepy.seconds=0", f"hydra.run.dir={out}", "resume=true")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Resuming" in r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    whole, whole_events = uninterrupted
    for key in ("test/acc", "test/loss", "val/acc", "val/loss", "global_step", "epochs", "best_epoch"):
        assert metrics[key] == whole[key], key
    counts = events(out)
    # Every (tag, step) as often as in the uninterrupted run: nothing twice, nothing missing.
    assert counts == whole_events, (counts - whole_events, whole_events - counts)
    assert curve_steps(counts)[tb("train/loss_step")] == list(range(4, 80, 5))


def test_sigint_stops_with_a_resumable_checkpoint_and_says_how(uninterrupted, tmp_path):
    out = tmp_path / "run"
    mark = tmp_path / "step7"
    proc = start([*RUN, *SLOW, f"+callbacks.sleepy.mark={mark}", f"hydra.run.dir={out}"])
    wait_for(mark.exists)  # seven steps into the first epoch
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and f"resume=true hydra.run.dir={out}" in stderr
    assert json.loads((out / "metrics.json").read_text())["status"] == "interrupted"
    ckpt = torch.load(out / "checkpoints" / "resume.ckpt", weights_only=True)
    assert 0 < ckpt["global_step"] < uninterrupted[0]["global_step"]

    r = cli("train.py", *RUN, *SLOW[:1], "+callbacks.sleepy.seconds=0", f"hydra.run.dir={out}", "resume=true")
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["global_step"] == uninterrupted[0]["global_step"]
    assert metrics["test/acc"] == uninterrupted[0]["test/acc"]  # resumed mid-epoch, exactly
    counts = events(out)
    assert counts == uninterrupted[1], (counts - uninterrupted[1], uninterrupted[1] - counts)


def test_resume_without_a_checkpoint_starts_fresh_and_says_so(tmp_path, capsys):
    metrics = run_train(["trainer.max_epochs=1", "resume=true"], tmp_path / "run")  # in process: no command to test
    assert metrics["status"] == "finished" and "does not exist: starting a fresh run" in capsys.readouterr().out


def test_divergence_stops_keeps_checkpoints_and_records_it(tmp_path):
    out = tmp_path / "run"
    # Two good epochs, then the step schedule multiplies the learning rate by a million.
    r = command(
        "train.py",
        "trainer.max_epochs=5",
        "scheduler=step",
        "scheduler.factory.step_size=2",
        "scheduler.factory.gamma=1e6",
        "optimizer=sgd",
        "callbacks.early_stopping=null",
        f"hydra.run.dir={out}",
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: training diverged at step ") and "optimizer.lr=" in line
    step = int(line.split("at step ")[1].split(":")[0])
    assert 40 <= step <= 62  # within the third epoch (20 steps per epoch)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and "diverged" in metrics["error"]
    for name in os.listdir(out / "checkpoints"):
        state = torch.load(out / "checkpoints" / name, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values()), name  # only good weights kept
    assert (out / "checkpoints" / "last.ckpt").exists()


def test_a_crash_while_saving_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    from zoo.run.files import write_json_atomic
    from zoo.run.reliability import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    good = path.read_bytes()

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["last.ckpt"]

    write_json_atomic(str(tmp_path / "metrics.json"), {"a": 1})
    monkeypatch.setattr(json, "dump", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_json_atomic(str(tmp_path / "metrics.json"), {"a": 2})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1}


class _Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ck") / "run"
    run_train(["trainer.max_epochs=1"], out)  # any run's checkpoint: made in process, the refusals below are commands
    return out / "checkpoints" / "last.ckpt"


def test_truncated_corrupt_and_malicious_checkpoints_are_refused(checkpoint, tmp_path):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:5000])
    marker = tmp_path / "pwned"
    malicious = tmp_path / "malicious.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"config": {}}, "x": _Boom(str(marker))}, malicious)
    for bad, text in ((truncated, "is not a readable checkpoint"), (malicious, "holds objects other than plain data")):
        for args in (
            ("eval.py", f"ckpt_path={bad}"),
            ("train.py", f"init_from={bad}", f"hydra.run.dir={tmp_path / 'r'}"),
        ):
            # One refusal in a process of its own, as a user meets it; the others in this one.
            r = cli(*args) if bad == malicious and args[0] == "eval.py" else command(*args)
            assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
            assert text in r.stderr.strip().splitlines()[-1]
    assert not marker.exists()  # nothing was executed


def test_malicious_resume_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    torch.save({"x": _Boom(str(marker))}, out / "checkpoints" / "resume.ckpt")
    r = command("train.py", "trainer.max_epochs=1", f"hydra.run.dir={out}", "resume=true")
    assert r.returncode == 2 and "holds objects other than plain data" in r.stderr and not marker.exists()


def test_an_interrupted_download_is_never_taken_for_the_file(tmp_path, monkeypatch):
    """The server cuts the connection half-way through one file: nothing lands in MNIST/raw; the next
    attempt, with a working server, downloads everything."""
    import torchvision.datasets as tvd

    from datamodules.images import MNISTData
    from zoo.errors import UserError

    files = {f"{n}.gz": gz(b) for n, b in fake_idx_files().items()}
    import hashlib

    monkeypatch.setattr(tvd.MNIST, "resources", [(n, hashlib.md5(b).hexdigest()) for n, b in files.items()])
    cut = {"on": True}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            blob = files.get(self.path.lstrip("/"))
            if blob is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(blob)))
            self.end_headers()
            self.wfile.write(blob[: len(blob) // 2] if cut["on"] and "train-images" in self.path else blob)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    data = tmp_path / "data"
    try:
        with pytest.raises(UserError, match="downloading it failed"):
            MNISTData(data_dir=str(data), mirror=url).prepare_data()
        raw = data / "MNIST" / "raw"
        assert not raw.exists() or not any(raw.iterdir())
        assert [p.name for p in data.iterdir() if p.name.startswith(".download")] == []
        cut["on"] = False
        dm = MNISTData(data_dir=str(data), mirror=url, val_size=16)
        dm.prepare_data()
        dm.setup("fit")
        assert dm.split_sizes()["test"] == 48
    finally:
        server.shutdown()
        server.server_close()


def test_resume_with_another_model_says_so(tmp_path):
    out = tmp_path / "run"
    assert command("train.py", "trainer.max_epochs=2", f"hydra.run.dir={out}").returncode == 0
    (out / "metrics.json").unlink()  # stopped during its test: a finished run is not resumed at all
    r = command("train.py", "trainer.max_epochs=3", "model.widths=[32]", f"hydra.run.dir={out}", "resume=true")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "does not fit this run's model or optimizer" in r.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_sigterm_at_an_epoch_boundary_stops_as_interrupted_with_a_quoted_resume_command(tmp_path):
    """Lightning's own SIGTERM handling ends a run at an epoch boundary with a SystemExit without a
    code (exit 0, nothing recorded); here the run's handler answers it."""
    out = tmp_path / "my run"
    proc = start([*RUN, *SLOW, f"hydra.run.dir='{out}'"])
    wait_for((out / "checkpoints" / "best-epoch000.ckpt").exists)  # the first epoch's validation is done
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr
    # quoted for the shell and for Hydra (a folder name with a space, comma or quote gives itself back)
    from zoo.run.lifecycle import resume_command

    assert resume_command(str(out)).split("resume=true", 1)[1] in stderr and "resume=true" in stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and "SIGTERM" in metrics["error"]
    assert (out / "checkpoints" / "resume.ckpt").exists()


@pytest.mark.slow
def test_the_readme_learning_rate_example_stops_as_diverged(tmp_path):
    """optimizer.lr=1e4: losses of 1e16 are finite, but grown a thousand times over their best."""
    out = tmp_path / "run"
    r = command("train.py", "data=digits", "optimizer.lr=1e4", "callbacks.progress_bar=null", f"hydra.run.dir={out}")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: training diverged at step ") and "divergence.factor=1000" in line
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["global_step"] < 20  # within the first epoch


def test_normal_noise_never_trips_the_divergence_guard():
    from zoo.run.reliability import DivergenceGuard

    guard = DivergenceGuard(factor=1e3)

    class Trainer:
        global_step, optimizers, checkpoint_callback = 0, [], None

    # A loss that falls to 1e-4, with single batches a hundred times worse now and then.
    losses = [2.0 * 0.9**i for i in range(120)] + [1e-4 if i % 10 else 1e-2 for i in range(200)]
    for loss in losses:
        guard.on_train_batch_end(Trainer, None, torch.tensor(loss), None, 0)
    with pytest.raises(Exception, match="the loss grew to"):
        for _ in range(100):  # and a sustained blow-up does
            guard.on_train_batch_end(Trainer, None, torch.tensor(1e3), None, 0)


@pytest.mark.slow
def test_a_fit_with_no_training_batch_is_an_error(tmp_path):
    out = tmp_path / "run"
    r = command("train.py", "data=digits", "data.val_size=5000", f"hydra.run.dir={out}")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "the training split of data=digits is empty" in r.stderr.strip().splitlines()[-1]
    assert not (out / "metrics.json").exists() and not (out / ".hydra").exists()


def test_a_checkpoint_of_the_same_step_and_weights_is_linked_not_written_again(tmp_path, monkeypatch):
    """ModelCheckpoint writes best-*.ckpt and then last.ckpt at the same step: the second is a hard link
    to the first (no second serialisation); other weights, another step or resume.ckpt are written whole."""
    from zoo.run.reliability import AtomicCheckpointIO

    io = AtomicCheckpointIO(str(tmp_path))
    saves = []
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda *a, **k: (saves.append(1), real_save(*a, **k))[1])
    state = {"global_step": 7, "state_dict": {"w": torch.ones(3)}, "optimizer_states": [{"state": {}}]}
    best, last, resume = tmp_path / "best-epoch002.ckpt", tmp_path / "last.ckpt", tmp_path / "resume.ckpt"
    io.save_checkpoint(state, best)
    io.save_checkpoint(state, last)
    assert len(saves) == 1 and os.stat(best).st_ino == os.stat(last).st_ino
    assert torch.equal(torch.load(last, weights_only=True)["state_dict"]["w"], torch.ones(3))
    io.save_checkpoint(state, last)  # LastWeights at the end of the fit: already on disk
    assert len(saves) == 1
    io.save_checkpoint(state, resume)  # the loop's and the random state's own moment: always whole
    assert len(saves) == 2 and os.stat(resume).st_ino != os.stat(last).st_ino

    # The next epoch: new weights at a new step are written, and the old best's removal keeps last.
    later = {**state, "global_step": 9, "state_dict": {"w": torch.full((3,), 2.0)}}
    io.save_checkpoint(later, last)
    assert len(saves) == 3 and os.stat(best).st_ino != os.stat(last).st_ino
    io.remove_checkpoint(str(best))
    assert torch.equal(torch.load(last, weights_only=True)["state_dict"]["w"], torch.full((3,), 2.0))
    # Same step, other weights (a weights-only checkpoint has no optimizer state): written.
    io.save_checkpoint({"global_step": 9, "state_dict": {"w": torch.full((3,), 2.0)}}, tmp_path / "w.ckpt")
    assert len(saves) == 4


def test_without_hard_links_the_checkpoint_is_written(tmp_path, monkeypatch):
    from zoo.run.reliability import AtomicCheckpointIO

    io = AtomicCheckpointIO(str(tmp_path))
    monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(OSError("not supported")))
    state = {"global_step": 3, "state_dict": {"w": torch.ones(2)}}
    io.save_checkpoint(state, tmp_path / "best.ckpt")
    io.save_checkpoint(state, tmp_path / "last.ckpt")
    assert os.stat(tmp_path / "best.ckpt").st_ino != os.stat(tmp_path / "last.ckpt").st_ino
    assert torch.equal(torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]["w"], torch.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["best.ckpt", "last.ckpt"]
