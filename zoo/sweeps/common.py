"""What both sweepers share: launching jobs whose numbers are not contiguous, reading a job's
outcome, and refusing bad input with one sentence."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn

from zoo import compat
from zoo.run.files import read_json

EXIT_USER_ERROR = 2


def refuse(message: str) -> None:
    """A mistake in the sweep's settings: one sentence and exit status 2, as for a single run."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(EXIT_USER_ERROR)


def contiguous(numbered: Sequence[tuple[int, Any]]) -> list[list[tuple[int, Any]]]:
    """Split [(job number, x), ...] into runs of consecutive numbers.

    Hydra's launchers number the jobs of one ``launch`` call consecutively from ``initial_job_idx``
    (and the job number is the job's subfolder), so jobs that must keep given numbers are launched
    one run of consecutive numbers at a time."""
    groups: list[list[tuple[int, Any]]] = []
    for item in sorted(numbered, key=lambda t: t[0]):
        if groups and groups[-1][-1][0] + 1 == item[0]:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def launch_numbered(launcher, jobs: Sequence[tuple[int, list[str]]]) -> dict[int, JobReturn]:
    """Launch jobs with their own job numbers; {number: JobReturn}."""
    results: dict[int, JobReturn] = {}
    for group in contiguous(jobs):
        returns = launcher.launch([overrides for _, overrides in group], initial_job_idx=group[0][0])
        for (number, _), ret in zip(group, returns):
            results[number] = ret
    return results


def job_error(ret: JobReturn) -> BaseException | None:
    """The exception a failed job raised (None for a completed one), without Hydra's re-raise."""
    return compat.job_exception(ret)


def describe(error: BaseException) -> str:
    """One line for a job's error (the same as the sweep summary's)."""
    from zoo.sweeps.summary import describe_error

    return describe_error(error)


def run_finished(folder: str) -> bool:
    """Whether the run in ``folder`` ran to its end (metrics.json says so)."""
    metrics = read_json(os.path.join(folder, "metrics.json"))
    if not metrics:
        return False
    return metrics.get("status", "finished") == "finished"


# Keys a sweeper adds to a job's command line (continuing a sweep): never part of a job's name.
NOT_NAMING = ("resume", "overwrite")


def name_jobs_by_swept(config, fixed_keys: Sequence[str]) -> None:
    """Make each job's folder name (``hydra.sweep.subdir``, from ``hydra.job.override_dirname``)
    say only what the sweep varies: ``3_optimizer.lr=0.01``, not every override of the command line.
    Hydra composes every job with the sweep's own ``hydra.*`` overrides; the keys that do not vary
    are added to ``override_dirname.exclude_keys`` there (``overrides.yaml`` is unchanged)."""
    from omegaconf import open_dict, read_write

    exclude = sorted({*fixed_keys, *NOT_NAMING})
    line = f"hydra.job.config.override_dirname.exclude_keys=[{','.join(exclude)}]"
    with read_write(config.hydra), open_dict(config.hydra):
        kept = [
            o
            for o in config.hydra.overrides.hydra
            if not str(o).startswith("hydra.job.config.override_dirname.exclude_keys=")
        ]
        config.hydra.overrides.hydra = [*kept, line]
