"""DistributedDataParallel that works with Hydra: in single runs and multiruns, one run folder per
run, logs and checkpoints written once (conf/trainer/ddp.yaml, conf/trainer/ddp_cpu.yaml).

Lightning's ``ddp`` starts the other ranks by running ``sys.argv`` again. Under Hydra that is the
wrong command: in a multirun it is the whole sweep (so every rank starts a sweep of its own: stray
folders, then a hang), in a submitit or joblib worker it is the worker's bootstrap. ``DDPStrategy``
here starts rank k as the *job*: ``python train.py <the job's own overrides> hydra.run.dir=<the
job's folder>``, without ``-m`` and without writing a second ``.hydra`` or log file. Lightning's
rank-zero rule then writes the TensorBoard events, checkpoints and metrics.json once.

After each job of a multirun, ``release()`` (called by zoo.sweeps.summary.SweepSummary) waits for the job's
ranks, closes the process group and removes the variables the launch set, so the next job starts
its own ranks instead of waiting for the finished job's (the other cause of hangs).

When processes are created by a cluster (SLURM's srun, torchrun), Lightning sees ``LOCAL_RANK``
and nothing is started here; see docs/guide/scaling-out.md.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import torch
from typing_extensions import override

from zoo import compat

log = logging.getLogger(__name__)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
_ENV_KEYS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")
_LAUNCHED: list[HydraJobLauncher] = []  # launches of this process whose ranks may still run


class DDPStrategy(compat.ddp_strategy_with_hooks()):
    """Lightning's DDP, with ranks started as the Hydra job (see the module's docstring).

    Also keeps a task's non-persistent buffers (per-process accumulators such as the running
    training loss sums) out of DDP's buffer broadcast, which would overwrite the other ranks' own
    sums with rank zero's at every step. Persistent buffers (BatchNorm statistics) are broadcast as usual.
    """

    @override
    def replace_launcher(self, launcher):
        if isinstance(launcher, compat.subprocess_script_launcher()):
            return HydraJobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)
        return launcher

    @override
    def before_wrap(self, model: torch.nn.Module) -> None:
        per_process = compat.non_persistent_buffer_names(model)
        if per_process:
            compat.ddp_ignore(model, per_process)


class HydraJobLauncher(compat.subprocess_script_launcher()):
    """Starts ranks 1..N-1 of this node once per job (fit, then test, reuse them)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.env_before: dict[str, str | None] = {}
        self.threads = torch.get_num_threads()

    @override
    def launch(self, function, *args, trainer=None, **kwargs):
        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        if not self.cluster_environment.creates_processes_externally and not self.procs and self.num_processes > 1:
            self._start_ranks(trainer)
        compat.set_num_threads_if_needed(self.num_processes)
        return function(*args, **kwargs)

    def _start_ranks(self, trainer) -> None:
        self.env_before = {k: os.environ.get(k) for k in _ENV_KEYS}
        self.threads = torch.get_num_threads()
        env = dict(os.environ)
        env.update(
            MASTER_ADDR=self.cluster_environment.main_address,
            MASTER_PORT=str(self.cluster_environment.main_port),
            NODE_RANK=str(self.cluster_environment.node_rank()),
            WORLD_SIZE=str(self.num_processes * self.num_nodes),
        )
        if os.environ.get("PL_GLOBAL_SEED") is None:
            env.pop("PL_GLOBAL_SEED", None)
        command, cwd = rank_command(trainer)
        for local_rank in range(1, self.num_processes):
            self.procs.append(subprocess.Popen(command, env={**env, "LOCAL_RANK": str(local_rank)}, cwd=cwd))
        _LAUNCHED.append(self)
        from zoo.run.job import in_multirun

        _RankWatcher(self.procs, end_main=not in_multirun()).start()  # decided now: Hydra's state moves on between jobs


def rank_command(trainer=None) -> tuple[list[str], str | None]:
    """The command that runs this Hydra job as another rank, and its working directory."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return compat.basic_subprocess_cmd(), None
    hc = HydraConfig.get()
    out_dir = OmegaConf.select(hc, "runtime.output_dir", default=None, throw_on_missing=False)
    if not out_dir and trainer is not None:
        out_dir = trainer.default_root_dir
    command = [
        sys.executable,
        _script(),
        f"--config-name={hc.job.config_name}",
        *hc.overrides.task,
        f"hydra.run.dir={_quote(os.path.abspath(out_dir))}",
        "hydra.output_subdir=null",  # rank zero writes .hydra/
        "hydra.job_logging.root=null",  # and train.log
        "hydra.hydra_logging.root=null",
    ]
    cwd = OmegaConf.select(hc, "runtime.cwd", default=None, throw_on_missing=False)
    return command, cwd


def _script() -> str:
    """This project's script being run (train.py), even inside a joblib or submitit worker."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if path and path.endswith(".py") and os.path.dirname(os.path.abspath(path)) == ROOT:
        return os.path.abspath(path)
    return os.path.join(ROOT, "train.py")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _RankWatcher(threading.Thread):
    """When a rank dies with an error, end the other ranks instead of leaving them waiting in a
    collective. In a single run the main process is ended too if it has not ended by itself
    GRACE_S seconds later (as Lightning does at once: it may be waiting forever); in a multirun it
    is left to fail its job, so the sweep goes on."""

    GRACE_S = 20

    def __init__(self, procs: list[subprocess.Popen], end_main: bool):
        super().__init__(daemon=True, name="ddp-rank-watcher")
        self.procs, self.end_main = procs, end_main

    def run(self) -> None:
        while True:
            time.sleep(2)
            codes = [p.poll() for p in self.procs]
            if all(c == 0 for c in codes):
                return
            failed = [p for p, c in zip(self.procs, codes) if c not in (None, 0)]
            if failed:
                log.error(
                    f"rank process {failed[0].pid} ended with exit status {failed[0].returncode}; "
                    f"ending the other ranks"
                )
                for p in self.procs:
                    if p.poll() is None:
                        p.kill()
                if self.end_main:
                    time.sleep(self.GRACE_S)  # time to end on its own (an error every rank raised)
                    os.kill(os.getpid(), signal.SIGKILL)
                return


def release() -> None:
    """After a job: wait for the ranks it started, close its process group, undo its variables."""
    while _LAUNCHED:
        launcher = _LAUNCHED.pop()
        for p in launcher.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for key, value in launcher.env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(launcher.threads)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
