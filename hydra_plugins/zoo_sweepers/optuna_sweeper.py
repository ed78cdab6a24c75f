"""The Optuna sweeper as Hydra sees it; the search itself is in _optuna.py, imported only when a
search runs (Hydra imports this module at every start to find its plugins)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class ZooOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from zoo.sweeps.optuna import OptunaSearch

        self.search = OptunaSearch(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.search.sweep(arguments)
