"""What Hydra says about the job this process runs: the group choices and whether it is one job
of a multirun. Importing this module imports no torch."""

from __future__ import annotations

import sys


def in_multirun() -> bool:
    """Whether this process is running a job of a Hydra multirun (where a job's error must fail
    that job only, not end the process that runs the whole sweep)."""
    if "hydra" not in sys.modules:
        return False
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def group_choices() -> dict[str, str]:
    """The choice made for each config group (model=cnn, ...), as Hydra recorded it."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return {k: v for k, v in HydraConfig.get().runtime.choices.items() if v and not k.startswith("hydra")}
