"""Runs that survive being killed, interrupted or diverging, and lose nothing already written.

- ``RunState`` writes ``checkpoints/resume.ckpt`` between epochs (after the epoch's logging) with the
  RNG states, so ``resume=true`` continues exactly: same batches, same dropout masks; the event
  files are first cut back to the checkpoint's step, so no step appears twice.
- ``GracefulStop``: the first Ctrl-C (SIGINT) or SIGTERM stops after the current step with a
  resumable checkpoint (at once outside training steps); a second one stops at once.
- ``DivergenceGuard`` stops within a step when the loss is NaN, infinite or grown orders of magnitude
  over its best, before any checkpoint of the broken weights is written.
- ``AtomicCheckpointIO`` writes every checkpoint to a temporary file and renames it into place.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
from typing import Self

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from zoo.errors import RunStopped, UserError

RESUME_FILE = "resume.ckpt"


class Diverged(UserError):
    """The loss became NaN or infinite."""


# ---- atomic checkpoint files -------------------------------------------------------------------


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: a crash while saving leaves the previous file whole.
    Each checkpoint stores the SHA-256 of its tensors (zoo/run/checkpoints.py),
    and, given the run folder (``root``), is written inside it only: a path outside it, or reached
    through a symbolic link that leads out of it, is refused with a sentence."""

    def __init__(self, root: str | None = None):
        super().__init__()
        self.root = root
        self._written: tuple | None = None  # (global step, weights digest, keys, path) of the last file written

    def inside_root(self, path: str) -> None:
        if self.root is None:
            return
        root = os.path.realpath(self.root)
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            raise UserError(
                f"a checkpoint would be written to {path}, outside the run folder {self.root}; "
                f"checkpoints are written inside the run folder only: leave callbacks.checkpoint.dirpath "
                f"at its default (and checkpoints/ a folder, not a link out of the run folder)."
            )

    @override
    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        from zoo.run.checkpoints import WEIGHTS_DIGEST, weights_digest

        path = str(path)
        self.inside_root(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        digest = weights_digest(checkpoint)
        checkpoint = {**checkpoint, WEIGHTS_DIGEST: digest}
        written = (checkpoint.get("global_step"), digest, tuple(sorted(map(str, checkpoint))), path)
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            if not self._link_to_previous(written, tmp):
                super().save_checkpoint(checkpoint, tmp, storage_options)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
            if os.path.exists(tmp):
                os.replace(tmp, path)
            self._written = written
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _link_to_previous(self, written: tuple, tmp: str) -> bool:
        """ModelCheckpoint writes the best checkpoint and then last.ckpt at the same step, with the same
        weights and optimizer state, and LastWeights writes last.ckpt once more when fitting ends: the
        second file is made a hard link to the first (as Lightning's ``save_last="link"``, which links
        to whichever was written last, however old), not serialised and synced again, a third of the
        checkpoint time of a short epoch (matrix factorisation: 3 files of 2 MB per 0.4 s epoch).
        Only at the same step with the same digest and the same parts (a weights-only checkpoint is
        not a full one); never for resume.ckpt, whose loop and random state are its own moment's.
        True when ``tmp`` is the link, or when nothing needs writing."""
        *identity, path = written
        if self._written is None:
            return False
        *previous_identity, previous = self._written
        if RESUME_FILE in (os.path.basename(path), os.path.basename(previous)):
            return False
        if identity[0] is None or identity != previous_identity or not os.path.isfile(previous):
            return False
        if os.path.abspath(previous) == os.path.abspath(path):
            return True  # the same file, already whole on disk
        try:
            os.link(previous, tmp)
        except OSError:  # a file system without hard links: write it
            return False
        return True

    @override
    def remove_checkpoint(self, path) -> None:
        """Lightning removes a checkpoint that fell out of the top k, or the previous last.ckpt: only
        ever one inside the run folder (a stored path from elsewhere is never acted on)."""
        self.inside_root(str(path))
        super().remove_checkpoint(path)


# ---- exact resumption --------------------------------------------------------------------------


def rng_state() -> dict:
    """Every random generator a training step may draw from, as plain data (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def check_rng_state(state) -> None:
    """Raise ValueError unless ``state`` is what ``rng_state`` writes (each generator's own layout):
    numpy and Python accept some states they cannot draw from, so the layout is checked first."""
    import torch as _torch

    if not isinstance(state, dict) or not isinstance(state.get("torch"), _torch.Tensor):
        raise ValueError("no torch generator state")
    if state["torch"].dtype != _torch.uint8 or state["torch"].numel() != torch.get_rng_state().numel():
        raise ValueError(f"a torch generator state of {state['torch'].numel()} bytes")
    python = state.get("python")
    if not (
        isinstance(python, (list, tuple))
        and len(python) == 3
        and isinstance(python[1], (list, tuple))
        and len(python[1]) == 625
        and all(isinstance(v, int) and 0 <= v < 2**32 for v in python[1][:624])
        and isinstance(python[1][624], int)
        and 0 <= python[1][624] <= 624
    ):
        raise ValueError("a Python generator state that is not Mersenne Twister's")
    n = state.get("numpy")
    if not (
        isinstance(n, dict)
        and isinstance(n.get("keys"), _torch.Tensor)
        and n["keys"].numel() == 624
        and isinstance(n.get("pos"), int)
        and 0 <= n["pos"] <= 624
        and n.get("has_gauss") in (0, 1)
        and isinstance(n.get("gauss"), float)
    ):
        raise ValueError("a numpy generator state that is not Mersenne Twister's")


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# Where a run's TensorBoard logger writes its event files: the run folder itself, and, before issue 16,
# its tensorboard/ sub-folder. Event files anywhere else in the folder are not the run's own.
EVENT_FOLDERS = ("", "tensorboard")


def rewind_event_files(log_dir: str, step: int) -> int:
    """Drop from the run's TensorBoard event files every event at ``step`` or later (and the final
    HParams summary): that part of the run is about to be replayed from a checkpoint at ``step``.
    Every event of a step is logged at that step or earlier (epoch-end metrics at the epoch's last
    step), so the resumed run writes each step once. Only the run's own event files are read
    (``EVENT_FOLDERS``; a symbolic link is never followed): event files of other runs below the run
    folder are never cut. Returns the number of events dropped."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    dropped = 0
    for path in event_files(log_dir):
        # Raw records, written back as they were: the migrating EventFileLoader would turn a
        # graph (the model_graph callback's) into a summary that reads back twice.
        raw = list(RawEventFileLoader(path).Load())
        events = [(r, event_pb2.Event.FromString(r)) for r in raw]
        keep = [
            (r, e)
            for r, e in events
            if not (
                e.HasField("summary")
                and (e.step >= step or any(v.tag.startswith("_hparams_/") for v in e.summary.value))
            )
        ]
        if len(keep) == len(events):
            continue
        dropped += len(events) - len(keep)
        tmp = path + ".rewind"
        with open(tmp, "wb") as f:
            writer = RecordWriter(f)
            for record, _ in keep:
                writer.write(record)
        os.replace(tmp, path)
    return dropped


def event_files(log_dir: str) -> list[str]:
    """The run's own TensorBoard event files (``EVENT_FOLDERS``, no symbolic link followed), sorted."""
    paths = []
    for folder in EVENT_FOLDERS:
        root = os.path.join(log_dir, folder)
        if os.path.islink(root) or not os.path.isdir(root):
            continue
        names = [n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n))]
        for name in sorted(n for n in names if n.startswith("events.out.tfevents.") and not n.endswith(".rewind")):
            path = os.path.join(root, name)
            if not os.path.islink(path):
                paths.append(path)
    return paths


# The keys of a checkpoint callback's state that name files (ModelCheckpoint's), and the one that
# names their folder.
PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def relocated_callback_states(states, path: str, dirpaths: dict | None = None) -> dict:
    """The callbacks' states of a resume checkpoint with every stored file path checked: each lies in
    the folder its callback stored (``dirpath``: the run's checkpoints/), or the checkpoint is refused
    with a sentence (a crafted path would have Lightning test, copy or delete a file elsewhere). With
    ``dirpaths`` (state key -> the folder that callback writes now) the paths are moved there, by
    their place in the stored folder, and ``dirpath`` with them."""
    if not isinstance(states, dict):
        return states
    out = {}
    for key, state in states.items():
        if not isinstance(state, dict) or not ("dirpath" in state or any(k in state for k in PATH_KEYS)):
            out[key] = state
            continue
        stored = state.get("dirpath")
        files = [state.get(k) for k in PATH_KEYS]
        best_k = state.get("best_k_models") or {}
        if not isinstance(best_k, dict):
            raise UserError(f"{path} stores best_k_models as {type(best_k).__name__}, not a mapping; {_DAMAGED}")
        files += list(best_k)
        named = [f for f in files if f not in (None, "")]
        if named and not isinstance(stored, str):
            raise UserError(f"{path} stores checkpoint paths without the folder they lie in; {_DAMAGED}")
        for f in named:
            if not isinstance(f, str) or _inside(stored, f) is None:
                raise UserError(
                    f"{path} names the checkpoint {f!r}, outside the folder it says its checkpoints are in "
                    f"({stored}); a resume never reads, copies or deletes a file outside its run, so it was "
                    f"refused: start the run again with overwrite=true."
                )
        target = (dirpaths or {}).get(key)
        if target is None:
            out[key] = state
            continue

        def moved(f, target=target, stored=stored):
            return os.path.join(target, _inside(stored, f)) if f not in (None, "") else f

        out[key] = {
            **state,
            "dirpath": target,
            **{k: moved(state[k]) for k in PATH_KEYS if k in state},
            **({"best_k_models": {moved(f): v for f, v in best_k.items()}} if "best_k_models" in state else {}),
        }
    return out


_DAMAGED = "this resume checkpoint is damaged: start the run again with overwrite=true."


def _inside(folder: str, path: str) -> str | None:
    """``path`` relative to ``folder`` when it lies inside it (no ``..`` out of it), else None."""
    folder, path = os.path.normpath(folder), os.path.normpath(path)
    if os.path.isabs(folder) != os.path.isabs(path):
        return None
    relative = os.path.relpath(path, folder)
    if relative == os.curdir or relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return None
    return relative


class RunState(L.Callback):
    """Writes ``<dirpath>/resume.ckpt`` between epochs (the previous one complete, validated and
    logged; the next one not begun) and at the end of training, with the random generators' states."""

    def __init__(self, dirpath: str):
        self.path = os.path.join(dirpath, RESUME_FILE)
        self._resumed_at: int | None = None
        self._between_epochs = False

    def save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)

    @override
    def state_dict(self) -> dict:
        return {"rng": rng_state()}

    @override
    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        """Before any callback loads its state: the paths a checkpoint callback stored (its best and
        last checkpoints) are moved to where that callback writes now, so a copied or moved run folder
        resumes (and is tested) with its own files, never the folder it was copied from."""
        dirpaths = {
            cb.state_key: cb.dirpath for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None) is not None
        }
        checkpoint["callbacks"] = relocated_callback_states(checkpoint.get("callbacks"), self.path, dirpaths)

    @override
    def load_state_dict(self, state: dict) -> None:
        set_rng_state(state["rng"])
        self._resumed_at = -1  # the epoch resumed into is not saved again before it has run

    @override
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._resumed_at == -1:
            self._resumed_at = trainer.current_epoch
        if trainer.current_epoch > 0 and trainer.current_epoch != self._resumed_at:
            self._between_epochs = True
            try:
                self.save(trainer)
            finally:
                self._between_epochs = False

    @override
    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self._between_epochs:
            # Lightning has already counted the next epoch as "ready" when this hook runs; record the
            # state as it was a moment before (previous epoch completed, next not yet begun), which
            # is the state Lightning resumes cleanly from.
            progress = checkpoint["loops"]["fit_loop"]["epoch_progress"]
            for part in ("current", "total"):
                progress[part]["ready"] = progress[part]["completed"]

    @override
    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.global_step > 0:
            self.save(trainer)


def read_resume_state(path: str) -> dict:
    """The epoch and step a resume.ckpt continues from (loaded as data only)."""
    from zoo.run.checkpoints import load_checkpoint

    ckpt = load_checkpoint(path)
    return {"epoch": ckpt.get("epoch"), "global_step": int(ckpt.get("global_step", 0))}


# ---- signals -----------------------------------------------------------------------------------


class GracefulStop(L.Callback):
    """SIGINT (Ctrl-C) and SIGTERM, at any moment of a run, end it as "interrupted" (RunStopped, exit
    128 + the signal's number: 130, 143). During training steps the first one finishes the current
    step, writes a resumable checkpoint and stops; outside them (building, sanity check, validation
    of the last epoch, test) it stops at once. A second signal stops at once.

    ``with stop:`` installs the handlers for the whole run (train.py); the callback re-installs them
    when training starts, replacing Lightning's SIGTERM handler, which would end the run with its own
    SIGTERMException (a SystemExit without a code: exit 0, nothing recorded) at an epoch boundary."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, dirpath: str):
        self.path = os.path.join(dirpath, RESUME_FILE)
        self.received: str | None = None
        self._previous: dict = {}
        self._in_steps = False

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        code = 128 + signum
        if self.received:
            raise RunStopped(f"stopped at once by a second {name}", code)
        self.received = name
        if not self._in_steps:
            raise RunStopped(f"stopped by {name}", code)
        sys.stderr.write(
            f"\n{name} received: stopping after this step and writing a checkpoint "
            f"(press Ctrl-C again to stop at once).\n"
        )

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.SIGNALS:
            sig = getattr(signal, name)
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __enter__(self) -> Self:
        self._install()
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    @override
    def on_train_start(self, trainer, pl_module) -> None:
        self._install()
        self._in_steps = True

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.received:
            self._in_steps = False  # a second signal during the checkpoint write stops at once
            trainer.save_checkpoint(self.path, weights_only=False)
            code = 128 + getattr(signal, self.received)
            raise RunStopped(
                f"stopped by {self.received} at epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}; the checkpoint {self.path} resumes it",
                code,
            )

    @override
    def on_train_end(self, trainer, pl_module) -> None:
        self._in_steps = False

    def check(self) -> None:
        """Stop now if a signal came after the last training step (e.g. during the last validation)."""
        if self.received:
            raise RunStopped(
                f"stopped by {self.received} after training; the checkpoint {self.path} resumes it",
                128 + getattr(signal, self.received),
            )


# ---- divergence --------------------------------------------------------------------------------


class DivergenceGuard(L.Callback):
    """Stops training when the training loss is NaN or infinite, or when its moving average has grown
    ``factor`` times over the lowest it reached (a learning rate far too high: losses of 1e12 are
    finite). The average (weight ``SMOOTHING`` per step, about the last 20 steps) keeps one noisy batch
    from tripping it. On a CPU the loss of each step is checked at once; on an accelerator the check
    reads the previous step's flag, which is ready by then, so it costs no wait (the run stops one
    step later)."""

    SMOOTHING = 0.05

    def __init__(self, factor: float = 1e3):
        if not factor > 1:
            raise UserError(f"divergence.factor must be greater than 1, got {factor!r}; try divergence.factor=1e3.")
        self.factor = factor
        self._pending: tuple[torch.Tensor, int, torch.Tensor] | None = None
        self._average: torch.Tensor | None = None
        self._lowest: torch.Tensor | None = None

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        value = loss.detach().float()
        finite = torch.isfinite(value).all()
        # (On an accelerator a NaN enters the average unchecked, to avoid a wait; the finite flag reports it.)
        if value.device.type != "cpu" or bool(finite):
            mean = value.mean()
            self._average = mean if self._average is None else torch.lerp(self._average, mean, self.SMOOTHING)
            self._lowest = self._average if self._lowest is None else torch.minimum(self._lowest, self._average)
        ok = finite
        if self._average is not None:  # growth counts only for a positive loss (a WGAN critic's may be negative)
            ok = ok & ((self._lowest <= 0) | (self._average <= self.factor * self._lowest))
        current = (ok, trainer.global_step, value)
        check, self._pending = (current, None) if loss.device.type == "cpu" else (self._pending, current)
        if check is not None and not bool(check[0]):
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
            folder = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else "the run folder"
            what = (
                f"the loss became {float(check[2])}"
                if not torch.isfinite(check[2]).all()
                else f"the loss grew to {float(check[2]):.3g}, its moving average to over {self.factor:g} times the "
                f"lowest it reached ({float(self._lowest):.3g}; divergence.factor={self.factor:g})"
            )
            raise Diverged(
                f"training diverged at step {check[1]}: {what}, most likely because the learning rate is too high "
                f"for this model (optimizer.lr={lr:g}); try a 10x smaller optimizer.lr or "
                f"trainer.gradient_clip_val=1.0 (the last good checkpoints are kept in {folder})."
            )
