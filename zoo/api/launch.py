"""``zoo.train`` and ``zoo.sweep``: the commands ``python train.py ...`` and ``python train.py -m ...``
from Python, on the same machinery.

``train`` composes the overrides with Hydra's compose API and checks them as ``python train.py`` does
(``check_overrides`` in zoo/run/config.py: a mistake raises ``UserError`` with the same sentence), takes
the run folder Hydra would make (``RunFolder``, zoo/run/folder.py: the same lock, the same refusals),
writes the ``.hydra/`` files Hydra writes, and calls train.py's own ``train()`` in this process. How
the run ends is recorded by the run itself (metrics.json); a stop (the notebook's stop button: SIGINT)
leaves a resumable run, and ``train`` returns its ``Run`` (``run.resume()`` continues it).

``sweep`` checks the overrides the same way, then runs ``python train.py -m <overrides>`` in a new
process (Hydra's sweepers and launchers, unchanged) and returns the sweep's summary as a DataFrame.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from zoo.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from zoo.api.results import Run

# Keys the API's own calls add to a run's overrides; not part of what the user asked for.
_RUN_KEYS = ("resume", "overwrite", "hydra.run.dir")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def quoted_folder(key: str, folder: str) -> str:
    """``key='<folder>'`` as a Hydra override (a folder with spaces or ``=`` stays one value)."""
    return f"{key}='" + folder.replace("\\", "\\\\").replace("'", "\\'") + "'"


def train(*overrides: str, callbacks: Sequence = ()) -> Run:
    """Train one run, as ``python train.py <overrides>`` would, and return its :class:`~zoo.api.results.Run`.

    ```python
    import zoo

    run = zoo.train("model=cnn", "data=digits", "trainer.max_epochs=5")
    run.plot()
    ```

    Args:
        *overrides: the command line's ``group=choice`` and ``key=value`` arguments, one per string.
        callbacks: Lightning callbacks of your own, added to the run's (to watch it; not recorded in
            its config).

    Returns:
        The run, finished, or stopped with its sentence printed as the command prints it (interrupted
        by the notebook's stop button or Ctrl-C, which ``run.resume()`` continues; or diverged, which
        ``run.status`` and ``run.diagnoses`` describe).

    Raises:
        zoo.UserError: a mistake in the overrides, the data or the run folder, in the sentence
            ``python train.py`` prints after ``error:``.
    """
    args = [str(o) for o in overrides]
    for a in args:
        if a.startswith("-") or _key(a) == "seeds":
            raise UserError(
                f"zoo.train runs one run and takes overrides only, got {a!r}; for a sweep or several seeds "
                f"use zoo.sweep(...)."
            )
    from zoo.run.config import check_overrides

    cfg = check_overrides(args, "train", multirun=False)
    return _train_config(cfg, args, callbacks)


def _train_config(cfg, args: list[str], callbacks: Sequence):
    """The run of the composed ``cfg`` (with its ``hydra`` node), in the folder Hydra would make."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict, read_write

    from zoo.api.results import Run
    from zoo.run.folder import AlreadyFinished, FolderSnapshot, RunFolder, names_its_folder
    from zoo.run.reliability import Diverged, RunStopped

    HydraConfig.instance().set_config(cfg)  # for the ${hydra:...} and ${now:...} in the folder's name
    folder = os.path.abspath(str(OmegaConf.select(cfg, "hydra.run.dir")))
    held = RunFolder(folder)
    try:  # the default name holds the time to the second: a run started in the same second takes <name>-2
        held.acquire(bool(cfg.get("resume")), bool(cfg.get("overwrite")), fresh=not names_its_folder(args))
    except AlreadyFinished as e:  # resume=true on a finished run: nothing to do, as the command says
        print(str(e))
        return Run(folder)
    folder = held.path
    try:
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.runtime.output_dir = folder
        HydraConfig.instance().set_config(cfg)
        extra = [*notebook_progress(cfg), *callbacks]  # before the config is written: it ran with that
        subdir = OmegaConf.select(cfg, "hydra.output_subdir", default=".hydra")
        if subdir is not None:
            held.snapshot = FolderSnapshot(folder, f"{cfg.hydra.job.name}.log")
            write_hydra_files(cfg, os.path.join(folder, str(subdir)))
        run_cfg = cfg.copy()
        with open_dict(run_cfg):
            del run_cfg["hydra"]
        import train as train_script  # the repository's train.py: the one train() of every run

        with kept_matplotlib_backend():
            try:
                train_script.train(run_cfg, extra_callbacks=tuple(extra))
            except RunStopped as stop:
                sys.stderr.write(f"{stop} (in Python: run.resume())\n")
            except Diverged as diverged:  # an outcome of the run, recorded in its metrics.json: look at it
                sys.stderr.write(f"{diverged}\n")
    finally:
        held.release()
    return Run(folder)


def write_hydra_files(cfg, folder: str) -> None:
    """``config.yaml``, ``hydra.yaml`` and ``overrides.yaml``, as Hydra writes them for a command's run."""
    from omegaconf import OmegaConf, open_dict

    os.makedirs(folder, exist_ok=True)
    task = cfg.copy()
    with open_dict(task):
        del task["hydra"]
    OmegaConf.save(task, os.path.join(folder, "config.yaml"))
    OmegaConf.save(OmegaConf.create({"hydra": cfg.hydra}), os.path.join(folder, "hydra.yaml"))
    OmegaConf.save(OmegaConf.create(list(cfg.hydra.overrides.task)), os.path.join(folder, "overrides.yaml"))


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (IPython's ZMQ shell), not a terminal."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def notebook_progress(cfg) -> list:
    """In a notebook, the console's progress bar (rich, redrawn in place: garbled in a notebook's output)
    gives way to one that fits: Lightning's tqdm bar as a notebook widget where ipywidgets is installed,
    else one printed line per epoch (``EpochLines``). Elsewhere nothing changes."""
    from omegaconf import open_dict

    bar = cfg.callbacks.get("progress_bar") if cfg.get("callbacks") else None
    # the console's bar: Lightning's rich one, or zoo's (zoo.callbacks.console.ProgressBar, a rich one)
    target = str(bar.get("_target_", "")) if bar is not None else ""
    if not in_notebook() or bar is None or not ("Rich" in target or target.startswith("zoo.callbacks.console.")):
        return []
    import importlib.util

    with open_dict(cfg):
        if importlib.util.find_spec("ipywidgets") is not None:  # tqdm.auto draws a widget
            cfg.callbacks.progress_bar = {
                "_target_": "lightning.pytorch.callbacks.TQDMProgressBar",
                "refresh_rate": bar.get("refresh_rate", 10),
            }
            return []
        cfg.callbacks.progress_bar = None
    return [epoch_lines()]


def epoch_lines():
    """A Lightning callback printing one line per epoch: its number, time, and train and validation metrics."""
    import lightning as L

    class EpochLines(L.Callback):
        def __init__(self):
            self.started = time.perf_counter()
            self.printed = -1

        def on_train_epoch_start(self, trainer, pl_module):
            self._line(trainer, trainer.current_epoch - 1)
            self.started = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            self._line(trainer, trainer.current_epoch - (0 if trainer.should_stop else 1))

        def _line(self, trainer, epoch: int) -> None:
            if epoch < 0 or epoch <= self.printed or trainer.sanity_checking:
                return
            self.printed = epoch
            metrics = {
                k: float(v)
                for k, v in sorted(trainer.callback_metrics.items())
                if k.startswith(("train/", "val/")) and not k.endswith("_step")
            }
            total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
            shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            print(f"epoch {epoch + 1}{total} ({time.perf_counter() - self.started:.1f} s)  {shown}", flush=True)

    return EpochLines()


@contextlib.contextmanager
def kept_matplotlib_backend():
    """The figure callbacks select matplotlib's Agg backend (no window in a run on a server); the backend
    the caller had is put back afterwards, so a notebook's own plots still show. In a notebook that is
    the inline backend (which Jupyter's kernel names in MPLBACKEND, even before pyplot is imported), put
    back as ``%matplotlib inline`` does: that also registers the figures' display in the notebook again."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    before = pyplot.get_backend() if pyplot is not None else os.environ.get("MPLBACKEND")
    try:
        yield
    finally:
        if before:
            import matplotlib.pyplot as plt

            if "inline" in before and in_notebook():
                sys.modules["IPython"].get_ipython().run_line_magic("matplotlib", "inline")
            elif plt.get_backend() != before:
                plt.switch_backend(before)


def sweep(*overrides: str, quiet: bool = False) -> pd.DataFrame:
    """Run a sweep, as ``python train.py -m <overrides>`` would, and return its summary as a DataFrame.

    ```python
    summary = zoo.sweep("data=digits", "optimizer=sgd,adam", "trainer.max_epochs=3")
    zoo.compare(summary)
    ```

    One row per run (the settings the sweep varies, the metrics of metrics.json, the status, the
    best marked: zoo/sweeps/summary.py's ``summary.csv``); ``summary.attrs["folder"]`` is the sweep
    folder. ``seeds=5`` runs every setting over five seeds, as on the command line.

    Args:
        *overrides: the command line's arguments (a sweep is ``key=a,b,c``), without ``-m``.
        quiet: print nothing of the runs' output (the summary table is still returned).

    Raises:
        zoo.UserError: a mistake in the overrides (each value of the sweep is checked before any runs),
            or a sweep that stopped before it wrote its summary.
    """
    import pandas as pd

    from zoo.run.config import check_overrides, expand_seeds
    from zoo.sweeps.summary import SUMMARY_CSV

    args = [str(o) for o in overrides if str(o) not in ("-m", "--multirun")]
    args = [a for a in expand_seeds(args) if a not in ("-m", "--multirun")]
    cfg = check_overrides(args, "train", multirun=True)
    folder = _sweep_folder(cfg, args)
    if not any(_key(a) == "hydra.sweep.dir" for a in args):
        args.append(quoted_folder("hydra.sweep.dir", folder))
    # The console's progress bar redraws in place: in a pipe it would print every redraw.
    quiet_bar = [] if any(_key(a) == "callbacks.progress_bar" for a in args) else ["callbacks.progress_bar=null"]
    command = [sys.executable, _train_script(), "-m", *args, *quiet_bar]
    code = _stream(command, quiet)
    path = os.path.join(folder, SUMMARY_CSV)
    if not os.path.isfile(path):
        raise UserError(
            f"the sweep ended (exit status {code}) without a summary in {folder}; read its output above, "
            f"or continue it with the same call (a sweep folder continues where it stopped)."
        )
    summary = pd.read_csv(path)
    summary.attrs["folder"] = folder
    return summary


def _sweep_folder(cfg, args: list[str]) -> str:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    HydraConfig.instance().set_config(cfg)
    return os.path.abspath(str(OmegaConf.select(cfg, "hydra.sweep.dir")))


def _train_script() -> str:
    import importlib.util

    spec = importlib.util.find_spec("train")
    if spec is None or not spec.origin:
        raise UserError("cannot find train.py; install zoo (pip install -e .) or run from the repository's root.")
    return spec.origin


def _stream(command: list[str], quiet: bool) -> int:
    """Run ``command``, printing its output as it comes (a notebook shows a child's output only so);
    an interrupt (the stop button) is passed on to it, which stops the sweep as Ctrl-C does."""
    import signal

    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        for line in proc.stdout:
            if not quiet:
                print(line, end="", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
