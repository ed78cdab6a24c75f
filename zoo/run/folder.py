"""A run folder belongs to one run: who may write it, and what an earlier run left in it.

- An exclusive lock (``fcntl.flock`` on ``<folder>/run.lock``, which holds the PID of the run
  writing the folder) is held for the whole run; a second run in the same folder is refused with a
  sentence naming that PID. The lock file is never deleted (deleting a lock file lets two runs each
  hold a lock on a different file).
- A folder that holds a finished or stopped run (its metrics.json or checkpoints/) is refused,
  unless ``resume=true`` (continue it) or ``overwrite=true`` (its earlier content is moved to the
  sibling folder ``<folder>.replaced-<time>``, nothing is deleted). ``resume=true`` on a finished run
  says so and changes nothing (exit 0).
- Temporary files left by a killed run (``*.tmp-<pid>`` of a checkpoint write, ``.tmp-*.json`` of a
  metrics.json write, ``*.rewind`` of an event file cut) are removed when the next run takes the folder.

For ``python train.py`` all this happens in ``claim_before_hydra``, before Hydra writes ``.hydra/`` and
the job log into the folder, so a refused run writes nothing there. Later refusals (a resume
checkpoint that does not fit the model) put back the ``.hydra/`` files and log Hydra rewrote
(``FolderSnapshot``). In a multirun, Hydra creates each job's folder before the job runs; the job
takes its folder in ``train()``. Only the rank-zero process of a DDP run takes the lock: the other
ranks write nothing in the folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import re
import stat
import time

from zoo.errors import UserError
from zoo.run.files import read_json

LOCK_FILE = "run.lock"
HYDRA_FILES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml")
LEFTOVERS = ("checkpoints/*.tmp-*", ".tmp-*.json", "**/events.out.tfevents.*.rewind")

_HELD: dict[str, RunFolder] = {}  # folders this process holds, by real path


def is_rank_zero() -> bool:
    """Whether this process is the one of its run that writes the run folder (not another DDP rank)."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def state(folder: str) -> str | None:
    """'finished', 'stopped' (metrics.json says interrupted, diverged or failed, or there are
    checkpoints but no metrics.json: a killed run) or None (nothing of a run's results in it)."""
    metrics = read_json(os.path.join(folder, "metrics.json"))
    if metrics is not None:
        return "finished" if metrics.get("status", "finished") == "finished" else "stopped"
    ckpts = os.path.join(folder, "checkpoints")
    if os.path.isdir(ckpts) and any(n.endswith(".ckpt") for n in os.listdir(ckpts)):
        return "stopped"
    return None


class RunFolder:
    """The lock on one run folder, held from ``acquire`` to ``release`` (or the process's end)."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.lock_path = os.path.join(self.path, LOCK_FILE)
        self._fd: int | None = None
        self.snapshot: FolderSnapshot | None = None
        self.created = False  # made by this run: a refused run removes it whole (``undo``)
        self.kept: dict[str, tuple[bytes, int]] = {}  # files of an earlier run changed before training (``keep``)
        self.found: set[str] | None = None  # what an earlier folder held when taken (``entries``)

    def acquire(self, resume: bool, overwrite: bool, keep: tuple[str, ...] = (), fresh: bool = False) -> None:
        """Take the folder or refuse with a sentence (UserError); writes nothing before it has decided.
        ``keep`` are names Hydra already wrote for this run (a multirun job), not moved by overwrite.
        ``fresh``: the path is the default name of a new run (its time to the second), which another
        run started in the same second may hold: then this run takes ``<name>-2`` (``-3``, ...) and
        ``self.path`` says which."""
        if fresh and not resume and not overwrite:
            self._take_free_name()
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise UserError(f"the run folder {self.path} is a file; give hydra.run.dir a folder path.")
        try:
            if self._fd is None:  # (held already when a fresh name was taken)
                self._lock(create=False)  # an earlier run's lock file: refuse now if a run holds it
            earlier = state(self.path) if os.path.isdir(self.path) else None
            if overwrite and resume:
                raise UserError(
                    "overwrite=true starts the run again and resume=true continues it; give one of them, not both."
                )
            if overwrite and earlier:
                foreign = not_a_runs(self.path, keep)
                if foreign:
                    raise UserError(
                        f"overwrite=true moves aside only a run folder, and {self.path} also holds "
                        f"{', '.join(foreign[:3])}{' and more' if len(foreign) > 3 else ''}, which no run wrote; "
                        f"nothing was moved: choose another hydra.run.dir."
                    )
            if earlier == "finished" and resume and not overwrite:
                raise AlreadyFinished(
                    f"{self.path} holds a finished run (metrics.json): nothing to resume; "
                    f"to train it again from the start add overwrite=true."
                )
            if earlier and not resume and not overwrite:
                what = "a finished run" if earlier == "finished" else "a stopped run"
                raise UserError(
                    f"{self.path} already holds {what} (metrics.json or checkpoints/); add resume=true "
                    f"to continue it, overwrite=true to move its content aside and start again, or "
                    f"choose another hydra.run.dir."
                )
            self._check_writable()
            if self._fd is None:
                self.created = not os.path.exists(self.path)
                try:
                    os.makedirs(self.path, exist_ok=True)
                except OSError as e:  # a special file system (/proc, /sys), a full or read-only disk
                    from zoo.run.oserrors import explain_os_error

                    if e.errno in (errno.ENOENT, errno.EPERM, errno.EINVAL) and os.path.isdir(
                        os.path.dirname(self.path)
                    ):
                        raise UserError(
                            f"cannot make the run folder {self.path}: {os.path.dirname(self.path)} takes no new "
                            f"folders (a special file system such as /proc or /sys, or no permission); choose a "
                            f"folder on a disk with hydra.run.dir=..."
                        ) from None
                    raise UserError(explain_os_error(e, self.path, "hydra.run.dir")) from None
                self._lock(create=True)
            self.found = None if self.created else entries(self.path)
        except BaseException:
            self.release()
            raise
        os.ftruncate(self._fd, 0)  # the holder's PID, for the sentence of a refused run (through the
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)  # descriptor: the lock file, never a link)
        clean_leftovers(self.path)
        if overwrite and earlier:
            moved = move_aside(self.path, keep=(LOCK_FILE, *keep))
            print(f"overwrite=true: the earlier content of {self.path} was moved to {moved}.")
        _HELD[os.path.realpath(self.path)] = self

    def _take_free_name(self) -> None:
        """Make the first of ``path``, ``path-2``, ``path-3``, ... that does not exist (``os.mkdir``
        fails on an existing name, so two runs starting at once never get the same folder)."""
        base = self.path
        try:
            os.makedirs(os.path.dirname(base), exist_ok=True)
        except OSError:  # a read-only or special parent: acquire says so in its sentence
            return
        for n in range(1, 1000):
            path = base if n == 1 else f"{base}-{n}"
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            except OSError:  # a read-only or special parent: acquire says so in its sentence
                return
            self.path, self.lock_path = path, os.path.join(path, LOCK_FILE)
            try:
                self._lock(create=True)
            except BaseException:
                import shutil

                shutil.rmtree(path, ignore_errors=True)  # made a moment ago: at most its lock file
                raise
            self.created = True
            return

    def _lock(self, create: bool) -> None:
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | (os.O_CREAT if create else 0)
        try:
            fd = os.open(self.lock_path, flags, 0o644)
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno == errno.ELOOP or os.path.islink(self.lock_path):
                raise UserError(
                    f"{self.lock_path} is a symbolic link; a run never writes through one (it could be made to "
                    f"overwrite a file elsewhere): delete the link, or choose another hydra.run.dir."
                ) from None
            raise UserError(
                f"cannot write the run folder {self.path} ({e.strerror}); choose a folder you can "
                f"write with hydra.run.dir=..."
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UserError(
                f"{self.lock_path} is not a plain file; a run's lock file is one: delete it, or choose another "
                f"hydra.run.dir."
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise UserError(
                f"{self.path} is being written by another run (PID {holder(self.lock_path)}); wait for "
                f"it to end, stop it, or choose another hydra.run.dir."
            ) from None
        self._fd = fd

    def _check_writable(self) -> None:
        existing = self.path
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(
                f"cannot write the run folder {self.path} ({existing} is not a writable folder); "
                f"choose one you can write with hydra.run.dir=..."
            )

    def keep(self, paths: list[str]) -> None:
        """Remember the bytes and times of files this run is about to change before it trains (the
        event files a resume cuts back to its checkpoint's step), for ``undo`` to put back."""
        for path in paths:
            if path not in self.kept and os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    self.kept[path] = (f.read(), os.stat(path).st_mtime_ns)

    def undo(self) -> None:
        """A run refused after it took the folder (a download that cannot be made, a model that
        cannot take the data, a resume the fit refuses) leaves nothing behind: a folder this run made
        is removed with what it and Hydra wrote there (the lock, ``.hydra/``, the log); an earlier
        folder gets its ``.hydra/`` files and log back as they were (``FolderSnapshot``), and the
        files it kept (``keep``)."""
        for path, (blob, mtime) in self.kept.items():
            with open(path, "wb") as f:
                f.write(blob)
            os.utime(path, ns=(mtime, mtime))
        self.kept = {}
        if self.snapshot is not None:
            self.snapshot.restore()
        if self.found is not None and not self.created:  # what this run added (an events file) goes
            import shutil

            for name in sorted(entries(self.path) - self.found - {LOCK_FILE}, reverse=True):
                path = os.path.join(self.path, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
        if self.created:
            import shutil

            self.release()
            shutil.rmtree(self.path, ignore_errors=True)

    def release(self) -> None:
        _HELD.pop(os.path.realpath(self.path), None)
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def interrupted(folder: str, when: str):
    """A Ctrl-C before training began (while Lightning and torch are imported, while the data and the
    model are built): ``metrics.json`` says ``interrupted`` when this process holds the folder, and
    the RunStopped to raise (exit 130) says how to go on."""
    from zoo.errors import RunStopped
    from zoo.run.files import write_json_atomic

    held = _HELD.get(os.path.realpath(folder))
    resumable = os.path.isfile(os.path.join(folder, "checkpoints", "resume.ckpt"))
    if held is not None and is_rank_zero():
        write_json_atomic(
            os.path.join(folder, "metrics.json"),
            {"status": "interrupted", "error": f"stopped by SIGINT {when}", "epochs": 0, "global_step": 0},
        )
    how = (
        "continue it with the same command and resume=true"
        if resumable
        else "it had not started training: start it again with overwrite=true"
    )
    return RunStopped(f"stopped by SIGINT {when}; {how}", 130)


class AlreadyFinished(UserError):
    """``resume=true`` on a finished run: nothing to do (exit 0)."""


# What a run writes in its folder (train.py, its loggers and callbacks, Hydra): overwrite=true moves
# aside a folder that holds nothing else. A folder holding anything more (a project, a .git, a user's
# files) is not a run folder, whatever else it holds.
RUN_NAMES = (
    "metrics.json",
    "events.out.tfevents.*",
    "*.log",
    "checkpoints",
    ".hydra",
    LOCK_FILE,
    "projector_config.pbtxt",  # the embedding projector's (callbacks.embeddings), with numbered folders
    "csv",  # logger=csv
    "tensorboard",  # Lightning's TensorBoard logger, before issue 16
    "hparams.yaml",
    ".tmp-*.json",
    "*.rewind",
)


def not_a_runs(folder: str, keep: tuple[str, ...] = ()) -> list[str]:
    """The names in ``folder`` that no run writes (sorted): empty for a run folder."""
    import fnmatch

    foreign = []
    for name in sorted(os.listdir(folder)):
        if name in keep or any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_NAMES):
            continue
        if re.fullmatch(r"\d+", name) and os.path.isdir(os.path.join(folder, name)):
            continue  # the embedding projector's step folders (00003/)
        foreign.append(name)
    return foreign


# The folders of a run folder whose entries a run adds to before its first step (besides its top level).
RUN_SUBFOLDERS = ("checkpoints", "csv", "tensorboard", ".hydra")


def entries(folder: str) -> set[str]:
    """The names in ``folder`` and in its RUN_SUBFOLDERS (``checkpoints/last.ckpt``): what a refused
    run compares against to remove what it added, without walking a large folder's tree."""
    names = set(os.listdir(folder))
    for sub in RUN_SUBFOLDERS:
        path = os.path.join(folder, sub)
        if sub in names and os.path.isdir(path) and not os.path.islink(path):
            names.update(f"{sub}/{name}" for name in os.listdir(path))
    return names


def holder(lock_path: str) -> str:
    """The PID written in a lock file (a moment after the lock is taken: retried briefly)."""
    for _ in range(20):
        try:
            with open(lock_path) as f:
                pid = f.read().strip()
            if pid:
                return pid
        except OSError:
            pass
        time.sleep(0.05)
    return "unknown"


def clean_leftovers(folder: str) -> list[str]:
    """Remove the temporary files a killed run left (their complete versions were never renamed in)."""
    removed = []
    for pattern in LEFTOVERS:
        for path in glob.glob(os.path.join(glob.escape(folder), pattern), recursive=True):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(path)
    return removed


def move_aside(folder: str, keep: tuple[str, ...]) -> str:
    """Move everything in ``folder`` but ``keep`` to ``<folder>.replaced-<time>``; returns that path."""
    target = f"{folder.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while os.path.exists(target):
        target = f"{folder.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
        n += 1
    os.makedirs(target)
    for name in os.listdir(folder):
        if name not in keep:
            os.replace(os.path.join(folder, name), os.path.join(target, name))
    return target


class FolderSnapshot:
    """The ``.hydra/`` files and job log as they were before Hydra started this run, so a run refused
    after Hydra wrote them (a resume checkpoint that does not fit) leaves the folder as it found it."""

    def __init__(self, folder: str, log_name: str):
        self.folder = folder
        self.files: dict[str, tuple[bytes, int] | None] = {}
        for name in HYDRA_FILES:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    self.files[name] = (f.read(), os.stat(path).st_mtime_ns)
            else:
                self.files[name] = None
        self.hydra_dir_existed = os.path.isdir(os.path.join(folder, ".hydra"))
        self.log = os.path.join(folder, log_name)
        exists = os.path.isfile(self.log)
        self.log_state = (os.path.getsize(self.log), os.stat(self.log).st_mtime_ns) if exists else None

    def restore(self) -> None:
        for name, saved in self.files.items():
            path = os.path.join(self.folder, name)
            if saved is not None:
                with open(path, "wb") as f:
                    f.write(saved[0])
                os.utime(path, ns=(saved[1], saved[1]))
            elif os.path.exists(path):
                os.remove(path)
        hydra_dir = os.path.join(self.folder, ".hydra")
        if not self.hydra_dir_existed and os.path.isdir(hydra_dir) and not os.listdir(hydra_dir):
            os.rmdir(hydra_dir)
        if self.log_state is None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.log)
        elif os.path.isfile(self.log):
            os.truncate(self.log, self.log_state[0])
            os.utime(self.log, ns=(self.log_state[1], self.log_state[1]))


def names_its_folder(overrides: list[str]) -> bool:
    """Whether the command line gives ``hydra.run.dir=...`` (then that folder is used or refused; the
    default name, which holds the time, gives way to ``<name>-2`` when taken: ``acquire(fresh=True)``)."""
    return any(a.lstrip("+").startswith("hydra.run.dir=") for a in overrides)


def claim_before_hydra(cfg, argv: list[str]) -> list[str]:
    """Take the run folder of ``python train.py`` before Hydra writes into it (``cfg``: the config
    preflight composed, with its ``hydra`` node). Refusals print one sentence and exit 2;
    ``resume=true`` on a finished run says so and exits 0. Returns the override to add to the command
    line so that Hydra uses the very folder taken (the default folder name holds the time, which
    Hydra would read again a moment later)."""
    import sys

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from zoo.run.config import fail

    if not is_rank_zero() or OmegaConf.select(cfg, "hydra.output_subdir", default=".hydra") is None:
        return []
    HydraConfig.instance().set_config(cfg)  # for the ${hydra:...} in the folder's path
    folder = str(OmegaConf.select(cfg, "hydra.run.dir"))
    held = RunFolder(folder)
    chosen = names_its_folder(argv)
    try:
        held.acquire(bool(cfg.get("resume")), bool(cfg.get("overwrite")), fresh=not chosen)
    except AlreadyFinished as e:
        print(str(e))
        sys.exit(0)
    except UserError as e:
        fail(str(e))
    held.snapshot = FolderSnapshot(held.path, f"{OmegaConf.select(cfg, 'hydra.job.name', default='train')}.log")
    if chosen:
        return []
    from zoo.run.config import hydra_quoted

    return [f"hydra.run.dir={hydra_quoted(held.path)}"]


@contextlib.contextmanager
def run_folder(path: str, resume: bool, overwrite: bool):
    """Hold ``path`` for the ``with`` block: the lock ``claim_before_hydra`` took in this process, or a
    new one (a multirun job; a run started in-process). Yields the RunFolder (None on a rank > 0)."""
    if not is_rank_zero():
        yield None
        return
    held = _HELD.get(os.path.realpath(path))
    if held is None:
        held = RunFolder(path)
        from zoo.run.job import in_multirun

        keep = (".hydra", "train.log") if in_multirun() else ()
        try:
            held.acquire(resume, overwrite, keep=keep)
        except AlreadyFinished as e:
            raise UserError(str(e)) from None
    try:
        yield held
    finally:
        held.release()
