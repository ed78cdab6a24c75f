"""An Optuna search as a Hydra sweeper, on Optuna's ask/tell interface (any current Optuna release).

Why our own: the released hydra-optuna-sweeper pins Optuna < 3, whose sqlite storage breaks with
SQLAlchemy 2, and it cannot continue a search. Here:

- The search space is written in Hydra's sweep syntax, in ``hydra.sweeper.params`` or on the
  command line: ``interval(a, b)`` (float), ``tag(log, interval(a, b))``, ``tag(int, interval(a, b))``,
  ``choice(x, y, ...)`` or ``x,y`` (categorical), ``range(a, b[, step])`` (integers, b excluded).
- The study lives in a database: ``hydra.sweeper.storage`` (any SQLAlchemy URL), by default
  ``sqlite:///<sweep folder>/optuna.db``. The hparams_search configs put the sweep folder at
  ``<log_dir>/searches/<study_name>``, so running the same command again finds the same study and
  continues it up to ``n_trials`` finished trials; any number of processes given the same
  study_name and storage share it. A study remembers the command-line settings it was started
  with and refuses to mix in trials run with other ones.
- Trial N runs as Hydra job number N, in ``<sweep folder>/N``; the job finds its trial from that
  number, so zoo.sweeps.pruning.OptunaPruning can report each epoch's validation metric to it and stop it
  when the pruner says so (the trial is then recorded as PRUNED).
- A job that fails is told to Optuna as FAIL with its error and the search goes on. Ctrl-C (or a
  crash) leaves the running trials failed as interrupted and queued again, so the next run of the
  command retries them first; a trial whose process died without a word is found by its missing
  heartbeat and retried as well.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from zoo import compat
from zoo.sweeps.common import describe, job_error, launch_numbered, name_jobs_by_swept, refuse

log = logging.getLogger(__name__)

SWEEPER_TARGET = "hydra_plugins.zoo_sweepers.optuna_sweeper.ZooOptunaSweeper"
DB_FILE = "optuna.db"
# Study attributes that pin what a study was started with (see OptunaSearch._check_same_search).
ATTR_OVERRIDES, ATTR_SPACE = "zoo:overrides", "zoo:search_space"
# Settings that do not change a trial's result: a study may be continued with or without them.
_NOT_RESULTS = ("paths.", "hydra.", "callbacks.progress_bar=", "callbacks.model_summary=")
# Trial attributes: why a FAIL is a FAIL.
ATTR_ERROR, ATTR_INTERRUPTED = "error", "interrupted"


# ---- where a study lives (shared with the jobs: zoo.sweeps.pruning) ----------------------------------


def study_name_of(sweeper: DictConfig) -> str:
    return str(sweeper.get("study_name") or "search")


def storage_url_of(sweeper: DictConfig, sweep_dir: str) -> str:
    url = sweeper.get("storage")
    return str(url) if url else f"sqlite:///{os.path.abspath(os.path.join(sweep_dir, DB_FILE))}"


def open_storage(url: str, heartbeat_interval: int = 0) -> optuna.storages.RDBStorage:
    """The study database. sqlite waits up to a minute for another process's write instead of
    failing at once; a fresh database created by two processes at the same moment is retried."""
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    heartbeat = {}
    if heartbeat_interval and heartbeat_interval > 0:
        heartbeat = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": 2 * heartbeat_interval,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(),
        }
    if url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(url[len("sqlite:///") :]) or ".", exist_ok=True)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except Exception as e:  # noqa: BLE001
            # Two processes creating the same new database race on its tables and version row.
            racing = isinstance(e, (IntegrityError, OperationalError)) and any(
                w in str(e) for w in ("already exists", "locked", "UNIQUE constraint")
            )
            if attempt == 4 or not racing:
                from zoo.errors import UserError

                raise UserError(
                    f"cannot open the Optuna storage {url} ({' '.join(str(e).split())[:300]}); "
                    f"check hydra.sweeper.storage (a SQLAlchemy URL, e.g. sqlite:///search.db "
                    f"or postgresql://user:password@host/db)."
                ) from None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def current_trial() -> optuna.trial.Trial | None:
    """The Optuna trial this Hydra job runs, or None when the job is not part of a zoo_optuna search."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN or hc.sweeper.get("_target_") != SWEEPER_TARGET or hc.job.get("num") is None:
        return None
    pruner = instantiate(hc.sweeper.pruner) if hc.sweeper.get("pruner") else None
    study = optuna.load_study(
        study_name=study_name_of(hc.sweeper),
        storage=open_storage(storage_url_of(hc.sweeper, str(hc.sweep.dir))),
        pruner=pruner,
    )
    return compat.running_trial(study, int(hc.job.num))


# ---- the search space --------------------------------------------------------------------------


def own_study_command(study_name: str, settings: list[str], searched: dict, argv: list[str] | None = None) -> str:
    """The command that runs this search as its own study: this command line with a study name made
    from the refused study's and these settings (the same command gives the same name, so running
    it again continues that study; a short try with trainer.max_epochs=1 never blocks the plain one)."""
    import hashlib
    import shlex
    import sys

    args = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("hydra.sweeper.study_name=")]
    if "-m" not in args and "--multirun" not in args:
        args.insert(0, "-m")
    digest = hashlib.sha256(repr((sorted(settings), sorted(searched.items()))).encode()).hexdigest()[:8]
    return shlex.join(["python", "train.py", *args, f"hydra.sweeper.study_name={study_name}-{digest}"])


class SearchSpace:
    """Hydra sweep overrides read as Optuna distributions; the others are passed to every trial."""

    def __init__(self, lines: Sequence[str]):
        from zoo.errors import UserError

        self.fixed: list[str] = []
        self.distributions: dict[str, BaseDistribution] = {}
        self.spelled: dict[str, str] = {}  # name -> how the user wrote it
        self._strings: dict[str, list[tuple]] = {}  # categorical name -> [(value, override string)]
        for o in OverridesParser.create().parse_overrides(list(lines)):
            key = o.get_key_element()
            if not o.is_sweep_override():
                self.fixed.append(f"{key}={o.get_value_element_as_str()}")
                continue
            self.spelled[key] = o.input_line.partition("=")[2]
            if o.is_interval_sweep():
                v = o.value()
                log_scale, as_int = "log" in v.tags, "int" in v.tags
                if not v.start < v.end:
                    raise UserError(f"{o.input_line}: an interval needs its start below its end.")
                if log_scale and v.start <= 0:
                    raise UserError(f"{o.input_line}: a log interval must start above 0.")
                self.distributions[key] = (
                    IntDistribution(int(v.start), int(v.end), log=log_scale)
                    if as_int
                    else FloatDistribution(float(v.start), float(v.end), log=log_scale)
                )
            elif o.is_range_sweep() or o.is_choice_sweep():
                values, strings = list(o.sweep_iterator()), list(o.sweep_string_iterator())
                if not values:
                    raise UserError(f"{o.input_line} has no values.")
                ints = all(isinstance(x, int) and not isinstance(x, bool) for x in values)
                if o.is_range_sweep() and ints and len(values) > 1:
                    self.distributions[key] = IntDistribution(values[0], values[-1], step=values[1] - values[0])
                    continue
                primitive = all(x is None or isinstance(x, (str, int, float, bool)) for x in values)
                choices = values if primitive and len({(type(x), x) for x in values}) == len(values) else strings
                self.distributions[key] = CategoricalDistribution(choices)
                self._strings[key] = list(zip(choices, strings))
            else:
                raise UserError(
                    f"{o.input_line}: an Optuna search takes interval(...), choice(...), range(...) "
                    f"or a,b,c, not {o.value_type.name.lower()}."
                )

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The command-line overrides of a trial with these parameter values."""
        out = list(self.fixed)
        for key, value in params.items():
            out.append(f"{key}={self._string(key, value)}")
        return out

    def _string(self, key: str, value: Any) -> str:
        for choice, string in self._strings.get(key, ()):
            if choice == value and type(choice) is type(value):
                return string
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is None:
            return "null"
        if isinstance(value, float):
            return repr(value)
        return str(value)

    def grid(self) -> dict[str, list]:
        """The grid of a GridSampler: every parameter must be discrete."""
        from zoo.errors import UserError

        grid = {}
        for key, d in self.distributions.items():
            if isinstance(d, CategoricalDistribution):
                grid[key] = list(d.choices)
            elif isinstance(d, IntDistribution) and not d.log:
                grid[key] = list(range(d.low, d.high + 1, d.step))
            else:
                raise UserError(
                    f"the grid sampler needs choice(...) or range(...) for every parameter, and "
                    f"{key} is {self.spelled.get(key)}; list its values or use hydra/sweeper/sampler=tpe."
                )
        return grid

    def examples(self) -> list[dict[str, Any]]:
        """Parameter sets that between them use every categorical choice (to check they compose)."""
        width = max(
            [len(d.choices) for d in self.distributions.values() if isinstance(d, CategoricalDistribution)], default=1
        )
        out = []
        for i in range(width):
            params = {}
            for key, d in self.distributions.items():
                params[key] = d.choices[i % len(d.choices)] if isinstance(d, CategoricalDistribution) else d.low
            out.append(params)
        return out

    def describe(self) -> dict[str, str]:
        return dict(sorted(self.spelled.items()))


# ---- the sweeper -------------------------------------------------------------------------------


class _Heartbeat(threading.Thread):
    """Marks the trials this process runs as alive, so others can tell them from dead ones."""

    def __init__(self, storage, interval: int):
        super().__init__(daemon=True, name="optuna-heartbeat")
        self.storage, self.interval, self.trial_ids = storage, interval, set()
        self._stop_event = threading.Event()

    def beat(self) -> None:
        for trial_id in list(self.trial_ids):
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception as e:  # noqa: BLE001 - a missed beat is not worth ending the search for
                log.debug(f"heartbeat of trial {trial_id} failed: {e}")

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        self._stop_event.set()


class OptunaSearch:
    def __init__(
        self,
        sampler: DictConfig,
        pruner: DictConfig,
        study_name: str | None = None,
        storage: str | None = None,
        direction: str = "maximize",
        n_trials: int = 20,
        n_jobs: int = 1,
        params: DictConfig | None = None,
        heartbeat_interval: int = 60,
    ) -> None:
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.study_name, self.storage = study_name, storage
        self.direction, self.n_trials, self.n_jobs = str(direction), int(n_trials), max(1, int(n_jobs))
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.heartbeat_interval = int(heartbeat_interval or 0)
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # -- study --------------------------------------------------------------------------------

    def _open_study(self, sweep_dir: str, space: SearchSpace) -> optuna.Study:
        assert self.config is not None
        url = storage_url_of(self.config.hydra.sweeper, sweep_dir)
        storage = open_storage(url, self.heartbeat_interval)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=study_name_of(self.config.hydra.sweeper),
            storage=storage,
            direction=self.direction,
            load_if_exists=True,
        )
        if study.direction.name.lower() != self.direction:
            refuse(
                f"study {study.study_name} in {url} is to {study.direction.name.lower()}, but "
                f"hydra.sweeper.direction={self.direction}; keep its direction or name a new study with "
                f"hydra.sweeper.study_name=NAME."
            )
        self._check_same_search(study, space, url)
        # A seeded sampler continues with a seed moved on by the trials already run: the same seed
        # again would propose the first trials again.
        sampler_cfg = OmegaConf.to_container(self.sampler_cfg, resolve=True)
        if sampler_cfg.get("seed") is not None:
            sampler_cfg["seed"] = int(sampler_cfg["seed"]) + len(study.trials)
        if sampler_cfg["_target_"].endswith("GridSampler"):
            sampler_cfg["search_space"] = space.grid()
        study.sampler = instantiate(sampler_cfg)
        study.pruner = instantiate(self.pruner_cfg)
        self.url = url
        return study

    def _check_same_search(self, study: optuna.Study, space: SearchSpace, url: str) -> None:
        """A study is one search: trials run with other settings are refused, not mixed in."""
        settings = sorted(o for o in space.fixed if not o.lstrip("+~").startswith(_NOT_RESULTS))
        searched = space.describe()
        attrs = study.user_attrs
        if ATTR_OVERRIDES not in attrs:
            # The space first: another process starting the same search reads the overrides as the
            # sign that the record is complete (each attribute is its own write to the storage).
            study.set_user_attr(ATTR_SPACE, searched)
            study.set_user_attr(ATTR_OVERRIDES, settings)
            return
        was, was_space = list(attrs[ATTR_OVERRIDES]), dict(attrs.get(ATTR_SPACE, {}))
        if was == settings and was_space == searched:
            return
        diff = (
            [f"it was started with {', '.join(sorted(set(was) - set(settings))) or 'no other settings'}"]
            if set(was) != set(settings)
            else []
        )
        if set(was) != set(settings):
            diff.append(f"this command has {', '.join(sorted(set(settings) - set(was))) or 'none of them'}")
        if was_space != searched:
            diff.append(f"its search space was {was_space}, this one is {searched}")
        refuse(
            f"study {study.study_name} in {url} is another search ({'; '.join(diff)}); continue it with its own "
            f"command, or run this search as a study of its own: {own_study_command(study.study_name, settings, searched)}"
        )

    # -- the loop -----------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> Any:
        with warnings.catch_warnings():
            # Optuna marks heartbeats "for Study.optimize" and fail_stale_trials "experimental";
            # both are what a search driven by ask/tell needs.
            warnings.filterwarnings("ignore", message=".*Heartbeat of storage.*")
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            return self._sweep(arguments)

    def _sweep(self, arguments: list[str]) -> Any:
        from zoo.errors import UserError

        assert self.config is not None and self.launcher is not None
        sweep_dir = str(self.config.hydra.sweep.dir)
        Path(sweep_dir).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, Path(sweep_dir) / "multirun.yaml")
        if self.direction not in ("maximize", "minimize"):
            refuse(f"hydra.sweeper.direction must be maximize or minimize, got {self.direction!r}.")
        try:
            space = SearchSpace([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
            if not space.distributions:
                raise UserError(
                    "there is nothing to search: give hydra.sweeper.params (see conf/hparams_search/) "
                    "or a range on the command line, e.g. optimizer.lr=tag(log,interval(1e-4,1e-1))."
                )
            name_jobs_by_swept(self.config, [line.partition("=")[0].lstrip("+~") for line in space.fixed])
            self._check_composes(space)
            study = self._open_study(sweep_dir, space)
        except UserError as e:
            refuse(str(e))

        target = self.n_trials
        if isinstance(study.sampler, optuna.samplers.GridSampler):
            target = min(target, math.prod(len(v) for v in space.grid().values()))
        metric = OmegaConf.select(self.config, "optimized_metric", default="value")
        optuna.storages.fail_stale_trials(study)  # trials of processes that died: failed, and queued again
        log.info(
            f"Optuna study {study.study_name} in {self.url}: {_count(study)} of {target} trials done "
            f"({self.direction} {metric}); sweep folder {sweep_dir}"
        )

        heartbeat = None
        if (storage := compat.heartbeat_storage(study)) is not None:
            heartbeat = _Heartbeat(storage, self.heartbeat_interval)
            heartbeat.start()
        returns: list[Sequence[JobReturn]] = []
        worker = f"{socket.gethostname()}:{os.getpid()}"
        in_flight: dict[int, optuna.trial.Trial] = {}
        try:
            while True:
                optuna.storages.fail_stale_trials(study)
                remaining = target - _count(study)
                if remaining <= 0:
                    break
                for _ in range(min(self.n_jobs, remaining)):
                    trial = study.ask(fixed_distributions=space.distributions)
                    trial.set_user_attr("worker", worker)
                    in_flight[trial.number] = trial
                if heartbeat:
                    heartbeat.trial_ids = {compat.trial_id(t) for t in in_flight.values()}
                    heartbeat.beat()
                jobs = [(n, space.overrides(t.params)) for n, t in in_flight.items()]
                results = launch_numbered(self.launcher, jobs)
                returns.append([results[n] for n, _ in jobs])
                for number, trial in list(in_flight.items()):
                    self._tell(study, trial, results[number], metric)
                    del in_flight[number]
                if heartbeat:
                    heartbeat.trial_ids = set()
        except BaseException:
            self._interrupted(study, in_flight.values())
            raise
        finally:
            if heartbeat:
                heartbeat.stop()
        self._report(study, sweep_dir, metric)
        return returns

    def _check_composes(self, space: SearchSpace) -> None:
        """Every key and group choice of the search composes, before any trial is asked."""
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        from zoo.errors import UserError
        from zoo.run.config import explain

        assert self.hydra_context is not None and self.config is not None
        for params in space.examples():
            overrides = space.overrides(params)
            try:
                self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            except (HydraException, OmegaConfBaseException) as e:
                raise UserError(f"the search space does not compose: {explain(e, overrides)}") from None

    def _tell(self, study: optuna.Study, trial: optuna.trial.Trial, ret: JobReturn, metric: str) -> None:
        error = job_error(ret)
        number = trial.number
        if error is None and ret.status == JobStatus.COMPLETED:
            value = ret.return_value
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = None
            if value is None or not math.isfinite(value):
                trial.set_user_attr(ATTR_ERROR, f"the run returned {ret.return_value!r} for {metric}")
                self._safe_tell(study, trial, state=TrialState.FAIL)
                log.info(f"Trial {number} failed: it returned {ret.return_value!r} for {metric}")
                return
            self._safe_tell(study, trial, values=value)
            best = _best(study)
            log.info(
                f"Trial {number} finished: {metric}={value:.4f}"
                + (f" (best: trial {best.number}, {best.value:.4f})" if best is not None else "")
            )
        elif isinstance(error, optuna.TrialPruned):
            self._safe_tell(study, trial, state=TrialState.PRUNED)
            log.info(f"Trial {number} pruned: {describe(error)}")
        else:
            trial.set_user_attr(ATTR_ERROR, describe(error) if error is not None else "unknown failure")
            self._safe_tell(study, trial, state=TrialState.FAIL)
            log.info(f"Trial {number} failed: {trial.user_attrs.get(ATTR_ERROR)}")

    @staticmethod
    def _safe_tell(study: optuna.Study, trial: optuna.trial.Trial, **kwargs) -> None:
        try:
            study.tell(trial, skip_if_finished=True, **kwargs)
        except RuntimeError as e:
            # The grid sampler calls Study.stop once the grid is covered, which Optuna allows only
            # inside Study.optimize; the trial is stored by then, and the loop stops by its count.
            if "Study.stop" not in str(e):
                raise

    @staticmethod
    def _interrupted(study: optuna.Study, trials) -> None:
        """Trials cut off by Ctrl-C or a crash: failed as interrupted and queued to run again."""
        for trial in list(trials):
            try:
                trial.set_user_attr(ATTR_INTERRUPTED, True)
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
                log.info(f"Trial {trial.number} interrupted; the next run of this command runs it again.")
            except Exception as e:  # noqa: BLE001 - the storage may be what failed
                log.warning(f"could not record trial {trial.number} as interrupted: {e}")

    def _report(self, study: optuna.Study, sweep_dir: str, metric: str) -> None:
        states = {
            s.name.lower(): 0 for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
        }
        for t in study.get_trials(deepcopy=False):
            if t.state.name.lower() in states:
                states[t.state.name.lower()] += 1
        best = _best(study)
        results: dict[str, Any] = {
            "name": "optuna",
            "study_name": study.study_name,
            "storage": self.url,
            "direction": self.direction,
            "metric": metric,
            "trials": states,
        }
        if best is not None:
            results.update(best_trial=best.number, best_value=best.value, best_params=dict(best.params))
        OmegaConf.save(OmegaConf.create(results), Path(sweep_dir) / "optimization_results.yaml")


def _count(study: optuna.Study) -> int:
    """Trials that count towards n_trials: finished ones (complete, pruned, failed by their own
    error) and those running now anywhere; interrupted and dead ones are retried instead."""
    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
            n += 1
        elif t.state == TrialState.FAIL and ATTR_ERROR in t.user_attrs:
            n += 1
    return n


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None
