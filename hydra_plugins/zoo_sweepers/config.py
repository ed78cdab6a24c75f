"""The configs of this project's two Hydra sweepers, registered in Hydra's ConfigStore.

Hydra imports every public module of the ``hydra_plugins`` namespace package when it starts, so
this file must stay light: dataclasses only, no Optuna (imported when a search actually runs).

- ``hydra/sweeper=zoo_basic`` (the default of conf/hydra/default.yaml): Hydra's basic grid sweeper,
  except that a failed job is recorded and the sweep goes on, and rerunning a sweep into its own
  folder (``hydra.sweep.dir=<sweep folder>``) skips the runs that already finished.
- ``hydra/sweeper=zoo_optuna`` (chosen by conf/hparams_search/*.yaml): an Optuna search on the
  current Optuna release (ask/tell), with a persistent study that the same command continues.
  Samplers: ``hydra/sweeper/sampler=tpe|random|grid``; pruners: ``hydra/sweeper/pruner=median|
  percentile|hyperband|threshold|nop``.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class ZooBasicSweeperConf:
    _target_: str = "hydra_plugins.zoo_sweepers.basic_sweeper.ZooBasicSweeper"
    # Jobs handed to the launcher at once (null: all of them).
    max_batch_size: int | None = None
    # Sweep parameters in config instead of the command line: {key: "a,b,c"}.
    params: dict[str, str] | None = None


# ---- Optuna ----------------------------------------------------------------------------------


@dataclass
class TPESamplerConf:
    """Tree-structured Parzen Estimator: models good and bad trials, the usual choice."""

    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10  # random trials before the model is used
    multivariate: bool = False
    constant_liar: bool = False  # set true when several trials run at once (n_jobs > 1, shared studies)


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class GridSamplerConf:
    """Every combination of the choice(...)/range(...) parameters, in random order; the search
    space is built by the sweeper from hydra.sweeper.params."""

    _target_: str = "optuna.samplers.GridSampler"
    seed: int | None = None


@dataclass
class MedianPrunerConf:
    """Prune a trial whose intermediate value is worse than the median of earlier trials at the same epoch."""

    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5  # trials that always run to the end first
    n_warmup_steps: int = 1  # epochs (from 0) of every trial that are never pruned: the first is noisy
    interval_steps: int = 1


@dataclass
class PercentilePrunerConf:
    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0
    n_startup_trials: int = 5
    n_warmup_steps: int = 1
    interval_steps: int = 1


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3


@dataclass
class ThresholdPrunerConf:
    """Prune a trial whose intermediate value is below ``lower`` or above ``upper``."""

    _target_: str = "optuna.pruners.ThresholdPruner"
    lower: float | None = None
    upper: float | None = None
    n_warmup_steps: int = 0
    interval_steps: int = 1


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class ZooOptunaSweeperConf:
    _target_: str = "hydra_plugins.zoo_sweepers.optuna_sweeper.ZooOptunaSweeper"
    # The sampler and pruner are built by the sweeper (the grid sampler needs the search space).
    _recursive_: bool = False
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
    sampler: Any = MISSING
    pruner: Any = MISSING

    # The study: running the same command again continues it, and processes given the same
    # study_name and storage share it. storage null = sqlite:///<sweep folder>/optuna.db; any
    # SQLAlchemy URL works (postgresql://user:pass@host/db, mysql+pymysql://...).
    study_name: str | None = None
    storage: str | None = None
    direction: str = "maximize"  # of the value the run returns (optimized_metric): maximize | minimize
    # Finished trials the study should have (complete, pruned or failed), counting earlier runs of
    # the command and other processes sharing the study.
    n_trials: int = 20
    # Trials handed to the launcher at once (with hydra/launcher=joblib or submitit they run in parallel).
    n_jobs: int = 1
    # The search space: {key: "interval(1e-4, 1e-1)" | "tag(log, interval(...))" | "choice(a, b)" | "range(1, 5)" | value}
    params: dict[str, str] | None = None
    # Seconds between "still alive" marks of running trials; a trial whose process died is failed
    # and retried once its mark is older than 2x this (RDB storages only; 0 = off).
    heartbeat_interval: int = 60


cs = ConfigStore.instance()
cs.store(group="hydra/sweeper", name="zoo_basic", node=ZooBasicSweeperConf, provider="zoo")
cs.store(group="hydra/sweeper", name="zoo_optuna", node=ZooOptunaSweeperConf, provider="zoo")
for name, node in {"tpe": TPESamplerConf, "random": RandomSamplerConf, "grid": GridSamplerConf}.items():
    cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider="zoo")
for name, node in {
    "median": MedianPrunerConf,
    "percentile": PercentilePrunerConf,
    "hyperband": HyperbandPrunerConf,
    "threshold": ThresholdPrunerConf,
    "nop": NopPrunerConf,
}.items():
    cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider="zoo")
