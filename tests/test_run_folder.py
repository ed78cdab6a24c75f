"""A run folder belongs to one run: a second run is refused, a finished or stopped run is never
overwritten unless asked, and every refusal leaves the folder byte for byte as it was."""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
from pathlib import Path

import pytest

from tests.helpers import QUIET, cli, command

FAST = ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2", *QUIET]


def snapshot(folder: Path, lock: bool = True) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time (``lock=False``: but run.lock,
    which holds the PID of the last run that took the folder)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and (lock or p.name != "run.lock")
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run, in a folder whose name a shell would expand ($(...)) if it were not quoted."""
    out = tmp_path_factory.mktemp("finished") / "run $(touch pwned)"
    r = command("train.py", *FAST, f"hydra.run.dir='{out}'")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"tensorboard --logdir {shlex.quote(str(out))}" in r.stdout
    return out


@pytest.fixture
def recorded(tmp_path) -> Path:
    """A folder as a finished run leaves it (made by hand: refusals happen before torch is imported)."""
    out = tmp_path / "run"
    files = {
        ".hydra/config.yaml": b"seed: 42\n",
        ".hydra/overrides.yaml": b"[]\n",
        "train.log": b"log\n",
        "metrics.json": b'{"status": "finished", "test/acc": 0.9}\n',
        "tensorboard/events.out.tfevents.1.host": b"events",
        "checkpoints/last.ckpt": b"weights",
    }
    for name, blob in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(blob)
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def test_a_second_run_in_a_folder_in_use_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / "run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        before = snapshot(out)
        r = cli("train.py", *FAST, f"hydra.run.dir={out}")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"is being written by another run (PID {os.getpid()})" in r.stderr.strip().splitlines()[-1]
    assert snapshot(out) == before and sorted(os.listdir(out)) == ["run.lock"]  # no .hydra/, no log


def test_a_finished_run_is_not_overwritten_and_a_refused_run_writes_nothing(recorded):
    out = recorded
    before = snapshot(out)
    r = command("train.py", *FAST, "model.widths=[32]", f"hydra.run.dir={out}")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    line = r.stderr.strip().splitlines()[-1]
    assert "already holds a finished run" in line and "resume=true" in line and "overwrite=true" in line
    assert snapshot(out) == before


def test_resume_of_a_finished_run_says_so_and_changes_nothing(recorded):
    out = recorded
    before = snapshot(out)
    r = command("train.py", *FAST, f"hydra.run.dir={out}", "resume=true")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "holds a finished run (metrics.json): nothing to resume" in r.stdout
    assert snapshot(out) == before


@pytest.mark.slow
def test_resume_with_another_model_is_refused_before_anything_is_cut(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    (out / "metrics.json").unlink()  # as if killed during the test: a stopped run with its resume.ckpt
    before = snapshot(out, lock=False)  # the refused run took the folder for its check: run.lock has its PID
    r = command("train.py", *FAST, "model.widths=[32]", f"hydra.run.dir={out}", "resume=true")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    line = r.stderr.strip().splitlines()[-1]
    assert "does not fit this run's model or optimizer" in line and "net." in line
    # .hydra/config.yaml, the job log and the event files exactly as they were
    assert snapshot(out, lock=False) == before


@pytest.mark.slow
def test_a_resume_the_fit_refuses_leaves_the_folder_byte_for_byte(tmp_path):
    # steps_per_execution=4 is the run's own; trainer.accumulate_grad_batches=2, which a resume may
    # change, is refused only when the fit starts (after the resume checkpoint was checked and the
    # event files cut back): the stopped run keeps its event files, .hydra/, log and no metrics.json.
    out = tmp_path / "run"
    r = command("train.py", *FAST, "steps_per_execution=4", f"hydra.run.dir={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    (out / "metrics.json").unlink()  # as if killed during the test: a stopped run with its resume.ckpt
    before = snapshot(out, lock=False)  # the refused run took the folder: run.lock has its PID
    r = command(
        "train.py",
        *FAST,
        "steps_per_execution=4",
        "trainer.accumulate_grad_batches=2",
        f"hydra.run.dir={out}",
        "resume=true",
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    line = r.stderr.strip().splitlines()[-1]
    assert "steps_per_execution=4" in line and "trainer.accumulate_grad_batches=2" in line, line
    assert snapshot(out, lock=False) == before
    assert not (out / "metrics.json").exists()


def test_a_run_the_fit_refuses_writes_nothing_into_a_folder_that_existed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own")
    before = snapshot(out)
    r = command("train.py", *FAST, "steps_per_execution=4", "trainer.accumulate_grad_batches=2", f"hydra.run.dir={out}")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "steps_per_execution=4" in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]
    # no metrics.json saying failed, no .hydra/ or log: only the lock file, which is never deleted
    assert snapshot(out, lock=False) == before and sorted(os.listdir(out)) == ["notes.txt", "run.lock"]


def test_a_crash_during_the_fit_in_a_folder_that_existed_still_records_failed(tmp_path, monkeypatch):
    from zoo.tasks.base import Task

    def crashes(self):
        raise RuntimeError("a bug, not a refusal")

    monkeypatch.setattr(Task, "on_fit_start", crashes)
    out = tmp_path / "run"
    out.mkdir()
    r = command("train.py", *FAST, f"hydra.run.dir={out}")
    assert r.returncode == 1 and "a bug, not a refusal" in r.stderr, r.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error"] == "a bug, not a refusal"


@pytest.mark.slow
def test_overwrite_moves_the_earlier_run_aside_and_starts_again(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    old_metrics = (out / "metrics.json").read_bytes()
    r = command("train.py", *FAST, "seed=1", f"hydra.run.dir={out}", "overwrite=true")
    assert r.returncode == 0, r.stderr[-2000:]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and f"was moved to {aside[0]}" in r.stdout
    assert (aside[0] / "metrics.json").read_bytes() == old_metrics
    assert (aside[0] / "checkpoints" / "last.ckpt").exists()
    assert json.loads((out / "metrics.json").read_text())["status"] == "finished"
    assert sorted(os.listdir(out / "checkpoints")) == ["best-epoch000.ckpt", "last.ckpt", "resume.ckpt"]
    assert "seed=1" in (out / ".hydra" / "overrides.yaml").read_text()


@pytest.mark.slow
def test_leftovers_of_a_killed_run_are_cleaned_on_the_next_start(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    (out / "metrics.json").unlink()
    leftovers = [out / "checkpoints" / "last.ckpt.tmp-99999", out / ".tmp-abc123.json"]
    for p in leftovers:
        p.write_bytes(b"half a file")
    r = command("train.py", *FAST, "trainer.max_epochs=2", f"hydra.run.dir={out}", "resume=true")
    assert r.returncode == 0, r.stderr[-2000:]
    assert not any(p.exists() for p in leftovers)
    names = os.listdir(out / "checkpoints")
    assert "last.ckpt" in names and not any(n.startswith("last-v") for n in names), names
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_a_run_folder_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "run"
    out.write_text("not a folder")
    r = command("train.py", *FAST, f"hydra.run.dir={out}")
    assert r.returncode == 2 and "is a file" in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]
    assert out.read_text() == "not a folder"


def test_other_ranks_of_a_ddp_run_neither_take_nor_are_refused_by_the_lock(tmp_path, monkeypatch):
    from zoo.run.folder import RunFolder, run_folder

    out = tmp_path / "run"
    rank_zero = RunFolder(str(out))
    rank_zero.acquire(resume=False, overwrite=False)
    try:
        (out / "metrics.json").write_text('{"status": "finished"}')  # would refuse a second run
        monkeypatch.setenv("LOCAL_RANK", "1")
        with run_folder(str(out), resume=False, overwrite=False) as taken:
            assert taken is None
        assert (out / "run.lock").read_text() == f"{os.getpid()}\n"
    finally:
        rank_zero.release()


@pytest.mark.parametrize(
    "overrides, says",
    [
        (["model=linear", "data=shakespeare"], "model=linear cannot take data=shakespeare"),
        (["data=mnist", "data.mirror=http://127.0.0.1:9/"], "downloading it failed"),
        (["model=gan", "data=sine"], "model=gan cannot take data=sine"),
        (["steps_per_execution=4", "trainer.accumulate_grad_batches=2"], "steps_per_execution=4"),
    ],
    ids=["pairing", "download", "gan-pairing", "trainer"],
)
def test_a_refused_command_leaves_no_run_folder_behind(overrides, says, tmp_path):
    # Refused after the folder was taken (the data, the network, the trainer): nothing of the run is
    # left, neither the folder nor its lock, .hydra/ or log; a pairing that cannot work is refused
    # before any download is tried (the data folder stays empty).
    data = tmp_path / "data"
    data.mkdir()
    logs = tmp_path / "logs"
    r = command("train.py", *FAST, *overrides, f"paths.log_dir={logs}", f"paths.data_dir={data}")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert says in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]
    assert not (logs / "runs").exists() or os.listdir(logs / "runs") == [], os.listdir(logs / "runs")
    if "pairing" in says or "cannot take" in says:
        assert os.listdir(data) == []


def test_a_default_folder_taken_in_the_same_second_gives_the_next_name(recorded, tmp_path):
    """The default folder name holds the time to the second: a run that finds it taken (a run started
    in the same second, finished, stopped or still writing) takes ``<name>-2``, ``-3``, ... and leaves
    the earlier folders as they were. A folder the user chose is refused as before."""
    from zoo.errors import UserError
    from zoo.run.folder import RunFolder

    before = snapshot(recorded)
    second = RunFolder(str(recorded))
    second.acquire(resume=False, overwrite=False, fresh=True)
    assert second.path == f"{recorded}-2" and second.created
    third = RunFolder(str(recorded))  # -2 is held (locked) by the run above: the next name
    third.acquire(resume=False, overwrite=False, fresh=True)
    assert third.path == f"{recorded}-3"
    third.undo()  # a refused fresh run removes the folder it made
    second.release()
    assert not os.path.exists(third.path) and os.listdir(second.path) == ["run.lock"]
    assert snapshot(recorded) == before
    with pytest.raises(UserError, match="already holds a finished run"):
        RunFolder(str(recorded)).acquire(resume=False, overwrite=False)  # hydra.run.dir=... given
    resumed = RunFolder(f"{recorded}-2")  # resume=true names its folder: never a new one
    resumed.acquire(resume=True, overwrite=False, fresh=True)
    assert resumed.path == f"{recorded}-2"
    resumed.release()


def test_two_commands_in_the_same_second_get_two_folders(tmp_path):
    """End to end: the folders of the next minute's default names already hold a finished run (as
    when another ``python train.py`` started in the same second); the command trains in ``<name>-2``."""
    import datetime

    logs = tmp_path / "logs"
    first = cli("train.py", "data=digits", "model=mlp", *FAST, f"paths.log_dir={logs}")
    assert first.returncode == 0, first.stderr[-2000:]
    (name,) = os.listdir(logs / "runs")
    prefix = name[: -len("2026-12-07_11-43-34")]
    now = datetime.datetime.now()
    taken = [logs / "runs" / f"{prefix}{(now + datetime.timedelta(seconds=s)):%Y-%m-%d_%H-%M-%S}" for s in range(0, 90)]
    for folder in taken:
        if not folder.exists():
            shutil.copytree(logs / "runs" / name, folder)
    r = cli("train.py", "data=digits", "model=mlp", *FAST, f"paths.log_dir={logs}")
    assert r.returncode == 0, r.stderr[-2000:]
    new = [n for n in os.listdir(logs / "runs") if n.endswith("-2")]
    assert len(new) == 1 and (logs / "runs" / new[0][:-2]) in taken, new
    assert json.loads((logs / "runs" / new[0] / "metrics.json").read_text())["status"] == "finished"
    assert f"tensorboard --logdir {logs / 'runs' / new[0]}" in r.stdout
