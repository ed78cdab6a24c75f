"""Hydra's basic (grid) sweeper, made to keep going and to continue.

Two differences from Hydra's own ``BasicSweeper``:

- A job that fails is recorded (its exception stays in its JobReturn; zoo.sweeps.summary.SweepSummary lists
  it with its error) and the sweep goes on; Hydra's re-raises the first failure and the rest of
  the sweep is lost.
- Rerunning a sweep into its own folder (``hydra.sweep.dir=<sweep folder>``, same command) skips
  the jobs that already finished there, and continues a job stopped mid-way from its resume
  checkpoint (``resume=true``) when it left one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from zoo import compat
from zoo.sweeps.common import launch_numbered, name_jobs_by_swept, refuse, run_finished

log = logging.getLogger(__name__)

BasicSweeper = compat.hydra_basic_sweeper()


class ZooBasicSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(self._parse_config() + list(arguments))
        for o in overrides:
            if o.is_sweep_override() and not o.is_discrete_sweep():
                refuse(
                    f"{o.input_line} is a search range, which a grid sweep cannot enumerate; search it with "
                    f"Optuna (hparams_search=digits_optuna, or hydra/sweeper=zoo_optuna) or list values: "
                    f"{o.get_key_element()}=a,b,c."
                )
        self.overrides = self.split_arguments(overrides, self.max_batch_size)
        name_jobs_by_swept(self.config, [o.key_or_group for o in overrides if not o.is_sweep_override()])

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        earlier = sweep_dir.is_dir() and any(p.is_dir() for p in sweep_dir.iterdir())
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        log.info(
            f"Sweep folder: {sweep_dir}  (if it stops, rerun the same command with hydra.sweep.dir={sweep_dir} "
            f"to continue it)"
        )

        returns: list[Sequence[Any]] = []
        initial_job_idx = 0
        while not self.is_done():
            batch = self.get_job_batch()
            tic = time.perf_counter()
            self.validate_batch_is_legal(batch)
            log.debug(f"Validated configs of {len(batch)} jobs in {time.perf_counter() - tic:0.2f} seconds")
            jobs = []
            for i, job_overrides in enumerate(batch):
                number = initial_job_idx + i
                job_overrides = list(job_overrides)
                state = self._earlier_run(number, job_overrides) if earlier else None
                if state == "finished":
                    log.info(f"\t#{number} : finished in an earlier run of this sweep, skipped")
                    continue
                if state == "resume":
                    log.info(f"\t#{number} : continues from its resume checkpoint")
                    job_overrides.append("resume=true")
                if state == "rerun":  # its folder holds the failed run: moved aside (zoo/run/folder.py)
                    log.info(f"\t#{number} : failed in an earlier run of this sweep, runs again")
                    job_overrides.append("overwrite=true")
                jobs.append((number, job_overrides))
            if jobs:
                results = launch_numbered(self.launcher, jobs)
                returns.append([results[n] for n, _ in jobs])
            initial_job_idx += len(batch)
        return returns

    # ---- continuing a sweep --------------------------------------------------------------------

    def _job_folder(self, number: int, overrides: list[str]) -> str | None:
        assert self.config is not None and self.hydra_context is not None
        sweep = self.config.hydra.sweep
        subdir = OmegaConf.to_container(sweep, resolve=False)["subdir"]  # the unresolved interpolation
        if subdir == "${hydra.job.num}":  # Hydra's default
            return os.path.join(str(sweep.dir), str(number))
        try:  # a custom subdir: compose the job's config to resolve it
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            with open_dict(cfg.hydra.job):
                cfg.hydra.job.num = number
            return os.path.join(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir))
        except Exception:  # noqa: BLE001 - then the job simply runs again
            return None

    def _earlier_run(self, number: int, overrides: list[str]) -> str | None:
        """'finished' if this job already ran to its end in the sweep folder, 'resume' if it stopped
        with a resume checkpoint, 'rerun' if it failed before one (it runs from the start, its folder's
        content moved aside), None otherwise (it runs from the start)."""
        folder = self._job_folder(number, overrides)
        if folder is None or not os.path.isdir(folder):
            return None
        try:
            recorded = list(OmegaConf.load(os.path.join(folder, ".hydra", "overrides.yaml")))
        except (OSError, ValueError, TypeError):
            return None
        if _without_resume(recorded) != _without_resume(overrides):
            return None  # another command's job under the same number: run ours
        if run_finished(folder):
            return "finished"
        if "resume" in self.config and os.path.isfile(os.path.join(folder, "checkpoints", "resume.ckpt")):
            return "resume"
        if "overwrite" in self.config and os.path.isfile(os.path.join(folder, "metrics.json")):
            return "rerun"
        return None


def _without_resume(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.lstrip("+~").startswith(("resume=", "overwrite="))]
