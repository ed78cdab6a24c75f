"""What a sweep leaves for its user to read: every run, its settings and final metrics, the best one
marked, failures with their error (Hydra callback ``SweepSummary``, registered in conf/hydra/default.yaml).

At the end of ``python train.py -m ...`` (any sweeper, any launcher) the sweep folder gets
``summary.csv`` and ``summary.md`` and the console a table: one row per run folder, the settings
that vary between runs, the metrics of metrics.json, and the status (finished, failed, pruned,
interrupted, unfinished). The table is read back from the run folders, so it covers runs made by
other processes (joblib, SLURM, an earlier invocation of a continued sweep or search) as well.

Each job of a multirun writes ``job.json`` into its folder when it ends (status, error, overrides,
the value it returned) - in the process that ran it, which for joblib and submitit is not this one.

``tensorboard --logdir <sweep folder>`` compares all runs in the HParams tab: TensorBoard builds its
columns from the runs' own sessions (zoo.run.report.write_hparams), the swept hyper-parameters first;
the sweep folder itself holds no events (no empty run in TensorBoard's list).

Importing this module must not import torch: Hydra builds its callbacks at every start.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import statistics
import sys
import time
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from zoo import compat
from zoo.run.files import read_json, write_json_atomic
from zoo.run.job import in_multirun

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
SUMMARY_CSV, SUMMARY_MD = "summary.csv", "summary.md"
SEEDS_CSV = "seeds.csv"  # mean and std over the seeds of each setting (a sweep over seed, e.g. seeds=5)
EXIT_SOME_FAILED = 1
FAILED = ("failed", "diverged")  # statuses that make the sweep exit with EXIT_SOME_FAILED
_LOWER_IS_BETTER = ("loss", "error", "perplexity", "ppl", "mae", "mse", "rmse", "mape", "smape", "nll", "bpc", "fid")


def lower_is_better(metric: str) -> bool:
    leaf = metric.rsplit("/", 1)[-1].lower()
    return any(leaf == w or leaf.endswith(("_" + w, w)) for w in _LOWER_IS_BETTER)


class SweepSummary(Callback):
    """Writes job.json at the end of each job of a multirun, and the sweep's summary at its end."""

    def __init__(self, exit_status_on_failure: bool = True) -> None:
        self.exit_status_on_failure = exit_status_on_failure
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._job_started = time.time()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        _release_distributed()  # DDP leaves a process group and variables behind: the next job needs neither
        if not in_multirun():
            return
        folder = str(config.hydra.runtime.output_dir)
        error = compat.job_exception(job_return)
        if error is None:
            status, value = "completed", job_return.return_value
        else:
            status, value = ("pruned" if type(error).__name__ == "TrialPruned" else "failed"), None
        record = {
            "job": config.hydra.job.get("num"),
            "status": status,
            "error": describe_error(error) if error else None,
            "overrides": list(job_return.overrides or []),
            "value": value if _is_number(value) else None,
            "seconds": round(time.time() - getattr(self, "_job_started", time.time()), 2),
            "finished_at": time.time(),
        }
        try:
            write_json_atomic(os.path.join(folder, JOB_FILE), record)
        except OSError as e:
            log.warning(f"could not write {JOB_FILE} in {folder}: {e}")
        if status == "failed":
            log.error(f"job {record['job']} failed", exc_info=error)  # the traceback, in the job's train.log
            sys.stderr.write(
                f"error: job {record['job']} ({' '.join(record['overrides'])}) failed: {record['error']}\n"
            )
            sys.stderr.flush()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = str(config.hydra.sweep.dir)
        if not os.path.isdir(sweep_dir):
            return
        metric = OmegaConf.select(config, "optimized_metric", default=None)
        rows = collect(sweep_dir)
        if not rows:
            return
        minimize = _minimize(config, metric)
        best = mark_best(rows, metric, minimize)
        columns = write_summary(sweep_dir, rows, metric)
        groups = seed_groups(rows, columns[0])
        if groups:
            write_seed_summary(sweep_dir, groups, metric)
        print_summary(rows, columns, metric, minimize, best, sweep_dir)
        if groups:
            print_seed_summary(groups, metric, sweep_dir)
        failed = [r for r in rows if r["status"] in FAILED and (r.get("finished_at") or 0) >= self.started]
        if failed and self.exit_status_on_failure:
            sys.stderr.write(
                f"error: {len(failed)} of {len(rows)} runs failed (see {os.path.join(sweep_dir, SUMMARY_MD)}).\n"
            )
            sys.stderr.flush()
            sys.exit(EXIT_SOME_FAILED)


# ---- reading the runs back ---------------------------------------------------------------------


def collect(sweep_dir: str) -> list[dict]:
    """One row per run folder of the sweep (a folder with .hydra/overrides.yaml), in job order."""
    rows = []
    for name in os.listdir(sweep_dir):
        folder = os.path.join(sweep_dir, name)
        overrides_file = os.path.join(folder, ".hydra", "overrides.yaml")
        if not os.path.isfile(overrides_file):
            continue
        try:
            overrides = [str(o) for o in OmegaConf.load(overrides_file)]
        except Exception:  # noqa: BLE001 - a half-written file: the run is listed without its settings
            overrides = []
        job = read_json(os.path.join(folder, JOB_FILE)) or {}
        metrics = read_json(os.path.join(folder, "metrics.json")) or {}
        status = job.get("status")
        if status in (None, "completed") or (status == "failed" and metrics.get("status") == "diverged"):
            status = metrics.get("status") or ("finished" if "seconds" in metrics else status or "unfinished")
        rows.append(
            {
                "job": job_number(name),
                "status": status,
                "overrides": overrides,
                "settings": dict(o.lstrip("+~").split("=", 1) if "=" in o else (o, "") for o in overrides),
                "metrics": {k: v for k, v in metrics.items() if "/" in k and _is_number(v)},
                "epochs": metrics.get("epochs"),
                "seconds": metrics.get("seconds", job.get("seconds")),
                "error": job.get("error") or (metrics.get("error") if status != "finished" else None),
                "finished_at": job.get("finished_at"),
                "folder": folder,
            }
        )
    rows.sort(key=lambda r: (0, int(r["job"]), "") if r["job"].isdigit() else (1, 0, r["job"]))
    return rows


def job_number(folder_name: str) -> str:
    """The job number of a job's folder (``3_optimizer.lr=0.01`` -> ``3``); another name as it is."""
    head = folder_name.split("_", 1)[0]
    return head if head.isdigit() else folder_name


def mark_best(rows: list[dict], metric: str | None, minimize: bool) -> dict | None:
    scored = [
        r
        for r in rows
        if r["status"] == "finished"
        and metric
        and _is_number(r["metrics"].get(metric))
        and math.isfinite(r["metrics"][metric])
    ]
    if not scored:
        return None
    best = (min if minimize else max)(scored, key=lambda r: r["metrics"][metric])
    for r in rows:
        r["best"] = r is best
    return best


def _columns(rows: list[dict], metric: str | None) -> tuple[list[str], list[str]]:
    """The settings that differ between runs (all of them for a single run) and the metric names,
    the optimised one first, then test/ before val/ and the rest."""
    keys: list[str] = []
    for r in rows:  # (resume=true is how a continued sweep restarts a stopped run, not a setting)
        keys += [k for k in r["settings"] if k not in keys and k not in ("resume", "overwrite")]
    varying = [k for k in keys if len({r["settings"].get(k) for r in rows}) > 1] or (keys if len(rows) == 1 else [])
    names = sorted({k for r in rows for k in r["metrics"]}, key=lambda k: (k != metric, not k.startswith("test/"), k))
    return varying, names


def write_summary(sweep_dir: str, rows: list[dict], metric: str | None) -> tuple[list[str], list[str]]:
    varying, names = _columns(rows, metric)
    header = ["job", "status", "best", *varying, *names, "epochs", "seconds", "error", "folder"]
    table = []
    for r in rows:
        table.append(
            [
                r["job"],
                r["status"],
                "*" if r.get("best") else "",
                *(r["settings"].get(k, "") for k in varying),
                *(r["metrics"].get(k, "") for k in names),
                _blank(r["epochs"]),
                "" if r["seconds"] is None else round(float(r["seconds"]), 1),
                r["error"] or "",
                os.path.relpath(r["folder"], sweep_dir),
            ]
        )
    tmp = os.path.join(sweep_dir, f".{SUMMARY_CSV}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(table)
    os.replace(tmp, os.path.join(sweep_dir, SUMMARY_CSV))

    def cell(v: Any) -> str:
        text = _short(v).replace("|", "\\|").replace("\n", " ")
        return text

    md = [
        f"# Sweep {sweep_dir}",
        "",
        f"{len(rows)} runs: "
        + ", ".join(f"{n} {s}" for s, n in _counts(rows).items())
        + (f"; best by {metric} marked *" if any(r.get("best") for r in rows) else ""),
        "",
        "| " + " | ".join(header[:-1]) + " |",
        "|" + "---|" * (len(header) - 1),
    ]
    md += ["| " + " | ".join(cell(v) for v in row[:-1]) + " |" for row in table]
    with open(tmp, "w") as f:
        f.write("\n".join(md) + "\n")
    os.replace(tmp, os.path.join(sweep_dir, SUMMARY_MD))
    return varying, names


def print_summary(rows, columns, metric, minimize, best, sweep_dir) -> None:
    from rich.console import Console
    from rich.table import Table

    varying, names = columns
    table = Table(title=f"Sweep: {len(rows)} runs ({', '.join(f'{n} {s}' for s, n in _counts(rows).items())})")
    for c in ["job", "status", *varying, *names, "epochs"]:
        table.add_column(c, justify="right" if c in names or c in ("job", "epochs") else "left")
    for r in rows:
        style = "bold green" if r.get("best") else ("red" if r["status"] in FAILED else None)
        table.add_row(
            ("* " if r.get("best") else "") + r["job"],
            r["status"],
            *(_short(r["settings"].get(k, "")) for k in varying),
            *(_short(r["metrics"].get(k, "")) for k in names),
            _short(r["epochs"]),
            style=style,
        )
    console = Console()
    wide = Console(width=10_000).measure(table).maximum  # the whole table, even in a narrow terminal or a log
    (Console(width=wide) if wide > console.width else console).print(table)
    for r in rows:
        if r["error"] and r["status"] in ("failed", "diverged", "pruned"):
            console.print(f"  job {r['job']} {r['status']}: {r['error']}", soft_wrap=True, markup=False)
    if best is not None:
        settings = " ".join(f"{k}={best['settings'][k]}" for k in varying if k in best["settings"])
        console.print(
            f"Best ({'lowest' if minimize else 'highest'} {metric}): job {best['job']}, "
            f"{metric}={best['metrics'][metric]:.4f}" + (f": {settings}" if settings else ""),
            soft_wrap=True,
            markup=False,
        )
    console.print(
        f"Summary: {os.path.join(sweep_dir, SUMMARY_MD)}  {os.path.join(sweep_dir, SUMMARY_CSV)}", soft_wrap=True
    )
    console.print(f"TensorBoard: tensorboard --logdir {sweep_dir}", soft_wrap=True)


# ---- repeated seeds: mean +- std --------------------------------------------------------------


def seed_groups(rows: list[dict], varying: list[str]) -> list[dict]:
    """The finished runs of a sweep over ``seed`` grouped by their other settings, one group per
    setting: how many runs, their seeds, and the mean and standard deviation of every metric and of
    the seconds (the sample standard deviation, n - 1; 0 for a single run). Empty when seed does not
    vary. Papers report a setting this way (DLinear: the mean of 5 runs)."""
    if "seed" not in varying:
        return []
    others = [k for k in varying if k != "seed"]
    grouped: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "finished":
            grouped.setdefault(tuple(r["settings"].get(k, "") for k in others), []).append(r)
    out = []
    for key, runs in grouped.items():
        names = sorted({m for r in runs for m in r["metrics"]})
        stats = {}
        for m in names:
            values = [float(r["metrics"][m]) for r in runs if _is_number(r["metrics"].get(m))]
            stats[m] = mean_std(values)
        seconds = [float(r["seconds"]) for r in runs if _is_number(r["seconds"])]
        out.append(
            {
                "settings": dict(zip(others, key)),
                "runs": len(runs),
                "seeds": [r["settings"].get("seed", "") for r in runs],
                "stats": stats,
                "seconds": mean_std(seconds),
            }
        )
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) of ``values``; (nan, nan) for none, std 0 for one."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plus_minus(mean: float, std: float) -> str:
    return f"{_short(mean)} ± {_short(std)}"


def write_seed_summary(sweep_dir: str, groups: list[dict], metric: str | None) -> None:
    """seeds.csv (a mean and a std column per metric) and a section of summary.md (mean ± std)."""
    settings = list(groups[0]["settings"])
    names = sorted({m for g in groups for m in g["stats"]}, key=lambda k: (k != metric, not k.startswith("test/"), k))
    header = [*settings, "runs", "seeds", *(f"{m} {part}" for m in names for part in ("mean", "std"))]
    header += ["seconds mean", "seconds std"]
    tmp = os.path.join(sweep_dir, f".{SEEDS_CSV}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for g in groups:
            stats = [v for m in names for v in g["stats"].get(m, (math.nan, math.nan))]
            writer.writerow([*g["settings"].values(), g["runs"], " ".join(map(str, g["seeds"])), *stats, *g["seconds"]])
    os.replace(tmp, os.path.join(sweep_dir, SEEDS_CSV))
    md = [
        "",
        "## Mean ± std over seeds",
        "",
        "| " + " | ".join([*settings, "runs", *names, "seconds"]) + " |",
        "|" + "---|" * (len(settings) + len(names) + 2),
    ]
    for g in groups:
        cells = [*map(_short, g["settings"].values()), str(g["runs"])]
        cells += [plus_minus(*g["stats"][m]) if m in g["stats"] else "" for m in names]
        md.append("| " + " | ".join([*cells, plus_minus(*g["seconds"])]) + " |")
    with open(os.path.join(sweep_dir, SUMMARY_MD), "a") as f:
        f.write("\n".join(md) + "\n")


def print_seed_summary(groups: list[dict], metric: str | None, sweep_dir: str) -> None:
    from rich.console import Console
    from rich.table import Table

    settings = list(groups[0]["settings"])
    names = sorted({m for g in groups for m in g["stats"]}, key=lambda k: (k != metric, not k.startswith("test/"), k))
    table = Table(title=f"Mean ± std over seeds ({os.path.join(sweep_dir, SEEDS_CSV)})")
    for c in [*settings, "runs", *names, "seconds"]:
        table.add_column(c, justify="left" if c in settings else "right")
    for g in groups:
        table.add_row(
            *map(_short, g["settings"].values()),
            str(g["runs"]),
            *(plus_minus(*g["stats"][m]) if m in g["stats"] else "" for m in names),
            plus_minus(*g["seconds"]),
        )
    wide = Console(width=10_000).measure(table).maximum
    Console(width=max(wide, 80)).print(table)


# ---- small helpers ----------------------------------------------------------------------------


def _minimize(config: DictConfig, metric: str | None) -> bool:
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if direction in ("minimize", "maximize"):
        return direction == "minimize"
    if metric and OmegaConf.select(config, "callbacks.checkpoint.monitor", default=None) == metric:
        return OmegaConf.select(config, "callbacks.checkpoint.mode", default="max") == "min"
    return bool(metric) and lower_is_better(metric)


def _release_distributed() -> None:
    ddp = sys.modules.get("zoo.run.ddp")
    if ddp is not None:
        ddp.release()


def describe_error(error: BaseException) -> str:
    """A UserError is already a sentence; other errors get their type in front."""
    from zoo.errors import UserError

    text = " ".join(str(error).split())
    if isinstance(error, UserError) or type(error).__name__ == "TrialPruned":
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _counts(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _short(v: Any) -> str:
    if isinstance(v, str) and any(c.isdigit() for c in v) and len(v) > 8:
        try:  # a sampled number as a setting: 0.0008468008575248334 -> 0.000847
            v = float(v)
        except ValueError:
            return v
    if isinstance(v, float):
        return f"{v:.4f}" if 1e-3 <= abs(v) < 1e4 or v == 0 else f"{v:.3g}"
    return "" if v is None else str(v)


def _blank(v: Any) -> Any:
    return "" if v is None else v
