"""Checkpoints, round two (issue 26): nothing stored in a file reaches outside its run.

Each class of problem is tested over a tree of crafted checkpoints or run folders, and each test
asserts the side effect that must NOT happen: files outside the run (and, for a refusal, inside it)
keep their bytes and modification times.
"""

from __future__ import annotations

import os
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import QUIET, ROOT, run_train
from tests.test_checkpoint_security import FIXTURES, craft
from zoo.errors import UserError

FIXTURE_NAMES = ["adversarial_gan", "classify_cnn", "classify_mlp", "forecast_lstm", "language_model_lstm"]
RUN = ["model=mlp", "model.widths=[16]", "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "test=false"]


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict:
    """Every file and link under ``root``: its bytes (a link: its target) and modification time."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.name in skip or (path.is_dir() and not path.is_symlink()):
            continue
        content = os.readlink(path) if path.is_symlink() else path.read_bytes()
        out[rel] = (content, path.lstat().st_mtime_ns)
    return out


def decoys(root: Path) -> Path:
    """A folder of files a crafted checkpoint may aim at: a file, a folder with a file, a checkpoint."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "precious.txt").write_text("not the run's")
    (root / "folder").mkdir(exist_ok=True)
    (root / "folder" / "inside.txt").write_text("not the run's either")
    shutil.copy(FIXTURES / "classify_mlp.ckpt", root / "other.ckpt")
    return root


# ---- stored locations ------------------------------------------------------------------------


def test_no_stored_location_is_used_as_stored(tmp_path):
    """Every data location a fixture's conf/ choice declares, stored as a place outside: the rebuilt
    config holds conf/'s (or the user's) location, never the stored one."""
    from zoo.run.rebuild import LOCATIONS, rebuild

    outside = decoys(tmp_path / "outside")
    before = tree(outside)
    values = {
        "data_dir": str(outside / "folder"),
        "path": str(outside / "precious.txt"),
        "root": str(outside / "folder"),
        "url": f"file://{outside / 'precious.txt'}",
        "mirror": f"file://{outside}",
        "checksum": None,
        "download": True,
    }
    checked = 0
    for name in FIXTURE_NAMES:

        def edit(hp):
            for key in LOCATIONS:
                hp["config"]["data"][key] = values[key]

        path = craft(tmp_path / name, name, edit)
        try:
            rebuilt = rebuild(str(path))
        except UserError as e:  # an option conf/ does not declare for that choice: refused as a whole
            assert "does not declare" in str(e)
            continue
        data = rebuilt.config["data"]
        for key in LOCATIONS:
            assert data.get(key) != values[key] or values[key] in (None, True), (name, key, data.get(key))
        assert str(outside) not in repr(rebuilt.config)
        checked += 1
    # With only conf/'s own keys stored, each fixture rebuilds; its locations are conf/'s.
    for name in FIXTURE_NAMES:

        def edit_declared(hp):
            for key in LOCATIONS:
                if key in hp["config"]["data"]:
                    hp["config"]["data"][key] = values[key]

        rebuilt = rebuild(str(craft(tmp_path / f"{name}-declared", name, edit_declared)))
        assert str(outside) not in repr(rebuilt.config["data"]), name
        checked += 1
    assert checked >= len(FIXTURE_NAMES)
    assert tree(outside) == before


def test_eval_and_generate_take_the_data_location_from_the_command(tmp_path, capsys):
    """A language model trained on data=text_file: generate never reads the stored file; eval asks
    for the file with data_path= instead of reading the stored one; a user's data_path= is used."""
    from eval import evaluate
    from generate import generate
    from tests.test_checkpoint_security import assert_refused_in_process

    outside = decoys(tmp_path / "outside")
    before = tree(outside)
    path = craft(
        tmp_path, "language_model_lstm", lambda hp: hp["config"]["data"].update(path=str(outside / "precious.txt"))
    )
    cfg = OmegaConf.merge(OmegaConf.load(ROOT / "conf" / "generate.yaml"), {"ckpt_path": str(path), "length": 5})
    generate(cfg)
    assert capsys.readouterr().out.strip()
    cfg = OmegaConf.merge(OmegaConf.load(ROOT / "conf" / "eval.yaml"), {"ckpt_path": str(path)})
    err = assert_refused_in_process(lambda: evaluate(cfg), capsys, tmp_path / "marker")
    assert "checkpoint's stored locations are never used; give it with data_path=" in err
    assert tree(outside) == before


# ---- sizes and damaged files ------------------------------------------------------------------

SIZES = {
    "wide hidden layer": lambda hp: hp["config"]["model"].__setitem__("widths", [1_000_000]),
    "width beyond torch": lambda hp: hp["config"]["model"].__setitem__("widths", [2**40]),
    "many classes": lambda hp: hp["spec"].__setitem__("num_classes", 10**9),
    "huge image": lambda hp: hp["spec"].__setitem__("shape", [1, 100_000, 100_000]),
    "negative width": lambda hp: hp["config"]["model"].__setitem__("widths", [-5]),
    "nan dropout": lambda hp: hp["config"]["model"].__setitem__("dropout", float("nan")),
}


@pytest.mark.parametrize("case", sorted(SIZES))
def test_sizes_from_a_checkpoint_are_checked_before_anything_is_allocated(tmp_path, case):
    import tracemalloc

    from zoo.run.rebuild import rebuild

    path = craft(tmp_path, "classify_mlp", SIZES[case])
    tracemalloc.start()
    try:
        with pytest.raises(UserError) as e:
            rebuild(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert peak < 50 * 2**20, peak  # refused from the description, not after allocating it


def test_every_model_choice_builds_on_the_meta_device():
    """The size check builds each network on the "meta" device first: every network conf/ offers can."""
    from hydra.utils import instantiate

    from datamodules.spec import DataSpec
    from zoo.run.config import compose_config, group_choices
    from zoo.tasks.registry import build_net

    specs = [
        DataSpec(name="img", kind="image", shape=(1, 8, 8), num_classes=10),
        DataSpec(name="tok", kind="tokens", shape=(16,), num_classes=20, vocab_size=20),
        DataSpec(name="ser", kind="series", shape=(32, 3), task="forecast", horizon=8, target_channels=3),
    ]
    built = 0
    for model in group_choices("model"):
        factory_cfg = compose_config([f"model={model}"]).model
        for spec in specs:
            try:
                with torch.device("meta"):
                    net = build_net(instantiate(factory_cfg), spec, model)
            except UserError:
                continue  # this network does not take that kind of data
            assert all(p.is_meta for p in net.parameters()), model
            built += 1
    assert built >= len(group_choices("model"))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _entry_offsets(path: Path) -> dict[str, int]:
    """The offset of each entry's first data byte in the archive."""
    out = {}
    with zipfile.ZipFile(path) as z:
        raw = path.read_bytes()
        for info in z.infolist():
            name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
            out[info.filename] = info.header_offset + 30 + name_len + extra_len
    return out


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_a_damaged_checkpoint_is_refused_not_evaluated(tmp_path, name):
    """One flipped byte in any entry (the pickled config, each tensor) of each fixture (written before
    checksums: their archive CRCs are verified) is refused by every reader's loader."""
    from zoo.run.checkpoints import load_checkpoint

    source = FIXTURES / f"{name}.ckpt"
    load_checkpoint(str(source))  # whole, it loads
    offsets = _entry_offsets(source)
    entries = [n for n in offsets if "/data/" in n][:6] + [n for n in offsets if n.endswith("data.pkl")]
    for entry in entries:
        bad = tmp_path / f"{entry.replace('/', '_')}.ckpt"
        shutil.copy(source, bad)
        _flip(bad, offsets[entry] + 1)
        with pytest.raises(UserError, match=r"is damaged|not a readable checkpoint") as e:
            load_checkpoint(str(bad))
        assert "\n" not in str(e.value)


def test_changed_weights_do_not_match_the_checksum_written_with_them(tmp_path):
    """A checkpoint this project writes stores the SHA-256 of its tensors; weights changed and the
    archive rewritten (its CRCs then match) are refused; the checksum is verified on every read."""
    from zoo.run.checkpoints import WEIGHTS_DIGEST, load_checkpoint
    from zoo.run.reliability import AtomicCheckpointIO

    ckpt = torch.load(FIXTURES / "classify_mlp.ckpt", weights_only=True)
    written = tmp_path / "written.ckpt"
    AtomicCheckpointIO(str(tmp_path)).save_checkpoint(ckpt, written)
    loaded = load_checkpoint(str(written))
    assert len(loaded[WEIGHTS_DIGEST]) == 64
    name = next(k for k in loaded["state_dict"] if k.startswith("net."))
    loaded["state_dict"][name] = loaded["state_dict"][name].clone()
    loaded["state_dict"][name].view(-1)[0] += 1e-3
    torch.save(loaded, tmp_path / "edited.ckpt")
    with pytest.raises(UserError, match="its weights do not match the checksum written with them"):
        load_checkpoint(str(tmp_path / "edited.ckpt"))


def test_an_entry_declaring_more_than_its_file_could_hold_is_refused_before_inflating(tmp_path):
    from zoo.run.checkpoints import load_checkpoint

    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\0" * 100_000)
    raw = bytearray(bomb.read_bytes())
    central = raw.rindex(b"PK\x01\x02")
    raw[central + 24 : central + 28] = struct.pack("<I", 0xFFFFFFF0)  # declares 4 GiB from ~100 bytes
    local = raw.index(b"PK\x03\x04")
    raw[local + 22 : local + 26] = struct.pack("<I", 0xFFFFFFF0)
    bomb.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="that its .* stored bytes could not hold; it was refused before anything"):
        load_checkpoint(str(bomb))
    other = tmp_path / "lzma.ckpt"
    with zipfile.ZipFile(other, "w", compression=zipfile.ZIP_LZMA) as z:
        z.writestr("archive/data.pkl", b"x")
    with pytest.raises(UserError, match="refused before anything was unpacked"):
        load_checkpoint(str(other))


# ---- resume: the run's own folder, its own settings, nothing changed by a refusal ---------------


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A run stopped after its first epoch (checkpoints, events, no metrics.json): resume=true continues it."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    run_train(RUN, out)
    (out / "metrics.json").unlink()
    return out


def _resume(out: Path, *extra: str) -> dict:
    import train
    from tests.helpers import without_views
    from zoo.run.config import check_config, compose_run

    keys = {a.split("=")[0].lstrip("+") for a in extra}
    base = [a for a in RUN if a.split("=")[0].lstrip("+") not in keys and not a.startswith("trainer.max_epochs")]
    cfg = compose_run([*QUIET, *base, "trainer.max_epochs=2", "resume=true", *extra], str(out))
    without_views(cfg)
    check_config(cfg)
    return train.train(cfg)


def _state_key(ckpt: dict) -> str:
    return next(k for k in ckpt["callbacks"] if k.startswith("ModelCheckpoint"))


def _edit_resume(out: Path, edit) -> None:
    path = out / "checkpoints" / "resume.ckpt"
    ckpt = torch.load(path, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, path)  # as a hostile tool would: without the project's checksum
    mtime = (out / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    os.utime(path, ns=(mtime, mtime))


def _outside_paths(outside: Path):
    def best_k(ckpt):
        ckpt["callbacks"][_state_key(ckpt)]["best_k_models"] = {
            str(outside / "precious.txt"): torch.tensor(0.0),
            str(outside / "folder"): torch.tensor(0.1),
        }

    def key(name, value):
        def edit(ckpt):
            ckpt["callbacks"][_state_key(ckpt)][name] = value

        return edit

    return {
        "best_k_models outside": best_k,
        "last checkpoint outside": key("last_model_path", str(outside / "precious.txt")),
        "best checkpoint outside": key("best_model_path", str(outside / "other.ckpt")),
        "dotdot out of the folder": key("kth_best_model_path", "CHECKPOINTS/../../../outside/precious.txt"),
        "a path that is not text": key("best_model_path", 3),
    }


def _hostile_states():
    def rng(ckpt):
        ckpt["callbacks"]["RunState"]["rng"]["torch"] = torch.zeros(7, dtype=torch.uint8)

    def numpy_rng(ckpt):
        ckpt["callbacks"]["RunState"]["rng"]["numpy"]["pos"] = 10**6

    def optimizer_shape(ckpt):
        state = ckpt["optimizer_states"][0]["state"]
        first = next(iter(state))
        state[first] = {k: (v[..., :1] if v.dim() else v) for k, v in state[first].items()}

    def optimizer_groups(ckpt):
        ckpt["optimizer_states"][0]["param_groups"] *= 2

    def optimizer_lr(ckpt):
        ckpt["optimizer_states"][0]["param_groups"][0]["lr"] = float("nan")

    def step(ckpt):
        ckpt["global_step"] = -5

    def loops(ckpt):
        ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] = -1

    def no_loops(ckpt):
        ckpt["loops"] = "x"

    return {
        "torch random state": rng,
        "numpy random state": numpy_rng,
        "optimizer state shape": optimizer_shape,
        "optimizer groups": optimizer_groups,
        "optimizer lr": optimizer_lr,
        "step counter": step,
        "loop counter": loops,
        "loop state": no_loops,
    }


@pytest.mark.slow  # trains or starts processes: seconds each (the fast subset stays under 2 minutes)
def test_a_refused_resume_leaves_the_run_folder_as_it_was(stopped, tmp_path):
    """Resume checkpoints with a crafted restored state (random generators, optimizer, counters) and
    paths outside the run, and resumes with changed settings: each is one sentence, and the run folder
    (its events, checkpoints, everything but the lock's PID) and the files outside keep their bytes."""
    outside = decoys(tmp_path / "outside")
    outside_before = tree(outside)
    cases = {name: (edit, ()) for name, edit in {**_hostile_states(), **_outside_paths(outside)}.items()}
    cases.update(
        {
            "another learning rate": (None, ("optimizer.lr=0.5",)),
            "another dataset split": (None, ("data.val_size=0.3",)),
            "another seed": (None, ("seed=7",)),
            "another optimizer": (None, ("optimizer=sgd",)),
        }
    )
    for name, (edit, extra) in cases.items():
        out = tmp_path / name.replace(" ", "_") / "run"
        shutil.copytree(stopped, out, symlinks=True)
        if edit is not None:

            def crafted(ckpt, edit=edit):
                edit(ckpt)
                _replace_checkpoints(ckpt)

            _edit_resume(out, crafted)
        before = tree(out, skip=("run.lock",))
        with pytest.raises(UserError) as e:
            _resume(out, *extra)
        message = str(e.value)
        assert "\n" not in message and any(w in message for w in ("resume", "outside", "damaged")), (name, message)
        assert tree(out, skip=("run.lock",)) == before, name
        assert not (out / "metrics.json").exists(), name
    assert tree(outside) == outside_before


def _replace_checkpoints(ckpt: dict) -> dict:
    """(CHECKPOINTS in a crafted path: the run's own checkpoints/ folder.)"""
    state = ckpt["callbacks"][_state_key(ckpt)]
    for key, value in list(state.items()):
        if isinstance(value, str) and "CHECKPOINTS" in value:
            state[key] = value.replace("CHECKPOINTS", state["dirpath"])
    return ckpt


@pytest.mark.slow  # two short runs
def test_a_moved_run_folder_resumes_and_tests_with_its_own_files(stopped, tmp_path):
    """A run folder moved elsewhere resumes with its own checkpoints: its best checkpoint, the test
    and the files Lightning replaces are the new folder's; a copy left at the old place is untouched."""
    moved = tmp_path / "moved" / "run"
    shutil.copytree(stopped, moved, symlinks=True)

    def unbeatable(ckpt):  # the stored best stays the best: the resumed run must find it in its own folder
        state = ckpt["callbacks"][_state_key(ckpt)]
        state["best_model_score"] = state["kth_value"] = torch.tensor(1.0)
        state["best_k_models"] = {k: torch.tensor(1.0) for k in state["best_k_models"]}

    _edit_resume(moved, unbeatable)
    old = tree(stopped)
    summary = _resume(moved, "test=true")
    assert summary["status"] == "finished" and summary["epochs"] == 2
    assert summary["best_checkpoint"] == str(moved / "checkpoints" / "best-epoch000.ckpt")
    assert "test/acc" in summary
    assert tree(stopped) == old  # the folder it was moved from: not read into, not replaced, not deleted


# ---- the run folder ---------------------------------------------------------------------------


def _finished_run_files(folder: Path) -> None:
    (folder / "checkpoints").mkdir(parents=True)
    shutil.copy(FIXTURES / "classify_mlp.ckpt", folder / "checkpoints" / "last.ckpt")
    (folder / "metrics.json").write_text('{"status": "finished"}\n')


def test_overwrite_moves_aside_only_a_folder_that_holds_a_run(tmp_path):
    from zoo.run.folder import RunFolder

    kinds = {
        "a project": {".git/HEAD": "ref: refs/heads/main\n", "pyproject.toml": "[project]\n", "README.md": "mine\n"},
        "a git checkout": {".git/config": "[core]\n"},
        "a user's files": {"notes.txt": "mine\n"},
        "a sub-folder of the user's": {"data/table.csv": "a,b\n1,2\n"},
    }
    for kind, files in kinds.items():
        folder = tmp_path / kind.replace(" ", "_")
        _finished_run_files(folder)
        for rel, text in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
        before = tree(folder)
        with pytest.raises(UserError, match="overwrite=true moves aside only a run folder") as e:
            RunFolder(str(folder)).acquire(resume=False, overwrite=True)
        assert sorted(files)[0].split("/")[0] in str(e.value)
        assert tree(folder) == before, kind
        assert sorted(p.name for p in tmp_path.iterdir() if ".replaced-" in p.name) == []
    run = tmp_path / "a_run"
    _finished_run_files(run)
    (run / "events.out.tfevents.1.host.2.0").write_bytes(b"")
    (run / ".hydra").mkdir()
    (run / "train.log").write_text("")
    held = RunFolder(str(run))
    held.acquire(resume=False, overwrite=True)
    held.release()
    assert sorted(os.listdir(run)) == ["run.lock"]


def test_the_lock_file_is_never_followed_through_a_link(tmp_path):
    from zoo.run.folder import RunFolder

    outside = decoys(tmp_path / "outside")
    before = tree(outside)
    for target in (outside / "precious.txt", outside / "missing.txt", outside / "folder"):
        run = tmp_path / f"run-{target.name}"
        run.mkdir()
        (run / "run.lock").symlink_to(target)
        with pytest.raises(UserError, match="run.lock is a symbolic link; a run never writes through one"):
            RunFolder(str(run)).acquire(resume=False, overwrite=False)
    assert tree(outside) == before and not (outside / "missing.txt").exists()
    fifo = tmp_path / "run-fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "run.lock")
    with pytest.raises(UserError, match="is not a plain file"):
        RunFolder(str(fifo)).acquire(resume=False, overwrite=False)


def test_checkpoints_are_written_inside_the_run_folder_only(tmp_path):
    from zoo.run.config import check_overrides
    from zoo.run.reliability import AtomicCheckpointIO

    outside = decoys(tmp_path / "outside")
    before = tree(outside)
    for dirpath in (str(outside), "${paths.output_dir}/../outside", "/tmp"):
        with pytest.raises(UserError, match="is not inside the run folder; checkpoints are written inside"):
            check_overrides([f"callbacks.checkpoint.dirpath={dirpath}", f"hydra.run.dir={tmp_path / 'run'}"])
    check_overrides(["callbacks.checkpoint.dirpath=${paths.output_dir}/ckpts", f"hydra.run.dir={tmp_path / 'run'}"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(outside / "folder")  # a link out of the run folder
    io = AtomicCheckpointIO(str(run))
    ckpt = {"state_dict": {"w": torch.ones(2)}}
    for target in (outside / "x.ckpt", run / "checkpoints" / "x.ckpt", run / ".." / "outside" / "y.ckpt"):
        with pytest.raises(UserError, match="outside the run folder"):
            io.save_checkpoint(ckpt, target)
    for target in (outside / "precious.txt", outside / "folder", run / "checkpoints" / "inside.txt"):
        with pytest.raises(UserError, match="outside the run folder"):
            io.remove_checkpoint(target)
    assert tree(outside) == before
    io.save_checkpoint(ckpt, run / "own.ckpt")
    assert (run / "own.ckpt").is_file()


@pytest.mark.parametrize("folder", ["/proc/zoo_run", "/sys/zoo_run", "/proc/self/zoo_run", "/dev/null/run"])
def test_run_folders_on_special_file_systems_are_one_sentence(folder):
    from zoo.run.folder import RunFolder

    if not os.path.isdir(folder.rsplit("/", 2)[0] or "/"):
        pytest.skip(f"no {folder.rsplit('/', 1)[0]} here")
    with pytest.raises(UserError) as e:
        RunFolder(folder).acquire(resume=False, overwrite=False)
    assert folder in str(e.value) and "\n" not in str(e.value)
    assert not os.path.exists(folder)


def test_contradictory_flags_get_one_sentence(tmp_path):
    from zoo.run.config import check_overrides

    with pytest.raises(UserError) as e:
        check_overrides(["overwrite=true", "resume=true", f"hydra.run.dir={tmp_path / 'run'}"])
    assert str(e.value) == (
        "overwrite=true starts the run again and resume=true continues it; give one of them, not both."
    )
    assert not (tmp_path / "run").exists()


def test_stored_checkpoint_paths_are_moved_with_the_run_folder():
    from zoo.run.reliability import relocated_callback_states

    state = {
        "dirpath": "/old/run/checkpoints",
        "best_model_path": "/old/run/checkpoints/best-epoch003.ckpt",
        "kth_best_model_path": "/old/run/checkpoints/best-epoch003.ckpt",
        "last_model_path": "/old/run/checkpoints/last.ckpt",
        "best_k_models": {"/old/run/checkpoints/best-epoch003.ckpt": 0.9},
    }
    moved = relocated_callback_states(
        {"ModelCheckpoint{}": state, "Other": {"x": 1}}, "r.ckpt", {"ModelCheckpoint{}": "/new/checkpoints"}
    )
    assert moved["ModelCheckpoint{}"] == {
        "dirpath": "/new/checkpoints",
        "best_model_path": "/new/checkpoints/best-epoch003.ckpt",
        "kth_best_model_path": "/new/checkpoints/best-epoch003.ckpt",
        "last_model_path": "/new/checkpoints/last.ckpt",
        "best_k_models": {"/new/checkpoints/best-epoch003.ckpt": 0.9},
    }
    assert moved["Other"] == {"x": 1}
    for outside in ("/old/run/other.ckpt", "/old/run/checkpoints/../metrics.json", "/etc/passwd", "relative.ckpt"):
        with pytest.raises(UserError, match="outside the folder it says its checkpoints are in"):
            relocated_callback_states({"M": {**state, "last_model_path": outside}}, "r.ckpt")


def test_a_resume_never_cuts_history_it_did_not_write(tmp_path):
    """Event files below the run folder that are not the run's own (another run's, a link out of the
    folder) keep their bytes; the run's own are cut at the checkpoint's step."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from torch.utils.tensorboard import SummaryWriter

    from zoo.run.reliability import rewind_event_files

    run = tmp_path / "run"
    outside = tmp_path / "outside"
    writers = [SummaryWriter(str(folder)) for folder in (run, run / "someone_else", outside)]
    for step in range(10):
        for writer in writers:
            writer.add_scalar("a", step, step)
    for writer in writers:
        writer.close()
    (run / "tensorboard").symlink_to(outside)  # the pre-issue-16 folder's name, as a link out of the run
    kept = {**tree(run / "someone_else"), **tree(outside)}
    rewind_event_files(str(run), 5)
    assert {**tree(run / "someone_else"), **tree(outside)} == kept

    (path,) = [p for p in run.iterdir() if p.name.startswith("events.out")]
    steps = [e.step for e in EventFileLoader(str(path)).Load() if e.summary.value]
    assert steps == list(range(5))


def test_ctrl_c_while_building_the_data_is_an_interrupted_run(tmp_path, monkeypatch):
    """Ctrl-C while the data is built (downloading, reading a large file): exit status 130, no
    traceback, and metrics.json says interrupted, the folder being taken."""
    import json

    import train
    from zoo.errors import RunStopped
    from zoo.run.config import compose_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "build_data", interrupted)
    out = tmp_path / "run"
    with pytest.raises(RunStopped) as e:
        train.train(compose_run([*QUIET, *RUN], str(out)))
    assert e.value.exit_code == 130
    assert str(e.value) == (
        "stopped by SIGINT while building the data and the model; it had not started training: start it again "
        "with overwrite=true"
    )
    assert json.loads((out / "metrics.json").read_text())["status"] == "interrupted"
