"""Config checks that run before torch is imported, so a mistake costs well under a second.

``preflight`` composes the command line's config the way Hydra will and turns Hydra's errors into
one sentence; ``check_config`` rejects values no run can use; ``user_errors`` prints any
``UserError`` as ``error: <sentence>`` and exits with status 2 instead of a traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import itertools
import math
import os
import re
import shlex
import sys

from omegaconf import DictConfig, OmegaConf

from zoo.errors import UserError

# A sweep job's folder: its number, then what the sweep varies (conf/hydra/default.yaml).
OmegaConf.register_new_resolver(
    "zoo.job_folder", lambda num, varied: f"{num}_{varied}" if varied else str(num), replace=True
)
# A run folder's learning rate (conf/hydra/default.yaml): the one it trains with, or lr-find when
# Lightning's learning-rate finder picks it (the folder is named before the finder runs).
OmegaConf.register_new_resolver(
    "zoo.lr_label", lambda lr, find: "lr-find" if str(find).lower() == "true" else f"lr{lr}", replace=True
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
CONF_DIR = os.path.join(ROOT, "conf")
EXIT_USER_ERROR = 2


def fail(message: str) -> None:
    from zoo.run.job import in_multirun

    if in_multirun():  # a job of a sweep: it fails with its sentence (zoo.sweeps.summary lists it), the sweep goes on
        raise UserError(message)
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("SLURM_LOCALID", "0") != "0":
        sys.exit(EXIT_USER_ERROR)  # another process of a DDP run: its rank zero says the sentence
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(EXIT_USER_ERROR)


@contextlib.contextmanager
def user_errors():
    """Report a UserError, and the Trainer's own configuration errors, as one sentence."""
    try:
        yield
    except UserError as e:
        fail(str(e))
    except OSError as e:
        if e.filename is None:  # not about a path the user gave
            raise
        from zoo.run.oserrors import explain_os_error

        fail(explain_os_error(e))
    except Exception as e:
        cause = e
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, UserError):
            fail(str(cause))
        if isinstance(e, MemoryError) or (
            isinstance(e, RuntimeError)
            and re.search(r"out of memory|can't allocate memory|not enough memory", str(e), re.IGNORECASE)
        ):
            fail(
                "the run needs more memory than this machine has ("
                + " ".join(str(e).split())[:120]
                + "); use smaller sizes (the model's widths or layers, data.batch_size) or a machine with more memory."
            )
        if "MisconfigurationException" in (
            type(cause).__name__,
            type(e).__name__,
        ) or "MisconfigurationException(" in str(e):
            text = " ".join(str(cause if "Misconfiguration" in type(cause).__name__ else e).split())
            text = re.sub(
                r"^Error in call to target '[^']+':\s*MisconfigurationException\(['\"](.*)['\"]\)\s*full_key: \S+$",
                r"\1",
                text,
            )
            fail(
                f"the trainer cannot start: {text.rstrip('.!')} (check trainer.accelerator, trainer.devices "
                f"and trainer.precision; trainer=cpu runs anywhere)."
            )
        raise


def group_choices(group: str) -> list[str]:
    """The choices of a config group: its files, less the bases they share (conf/data/_ett.yaml)."""
    folder = os.path.join(CONF_DIR, group)
    return (
        sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml") and not f.startswith("_"))
        if os.path.isdir(folder)
        else []
    )


def groups() -> list[str]:
    return sorted(d for d in os.listdir(CONF_DIR) if os.path.isdir(os.path.join(CONF_DIR, d)))


# Keys that count something: (the smallest value that makes sense, an example). A key a config
# does not have is skipped; null is left to the code that reads it (it means "off" or "automatic").
WHOLE_NUMBERS: dict[str, tuple[int, int]] = {
    "data.batch_size": (1, 64),
    "data.eval_batch_size": (1, 1024),
    "steps_per_execution": (1, "auto"),  # or auto (the default)
    "threads": (1, "auto"),  # or auto (the default)
    "data.num_workers": (0, 2),
    "data.random_crop": (0, 4),
    "data.image_size": (1, 32),
    "data.lookback": (1, 96),
    "data.horizon": (1, 16),
    "data.seq_len": (1, 128),
    "data.length": (1, 3000),
    "data.max_length": (1, 64),
    "data.min_freq": (1, 2),
    "data.max_vocab": (1, 30000),
    "model.hidden": (1, 128),
    "model.embedding": (1, 64),
    "model.kernel_size": (1, 3),
    "model.layers": (1, 2),
    "model.depth": (1, 2),
    "model.latent_dim": (1, 64),
    "model.width": (1, 64),
    "model.n_critic": (1, 1),
    "model.dim": (1, 64),
    "data.negatives": (1, 99),
    "trainer.min_epochs": (0, 1),
    "trainer.accumulate_grad_batches": (1, 1),
    "trainer.num_nodes": (1, 1),
    "trainer.log_every_n_steps": (1, 10),
    "trainer.check_val_every_n_epoch": (1, 1),
    "callbacks.early_stopping.patience": (0, 5),
}
# Keys that are sizes, one per layer (a list, or one number for every layer): (the networks for which
# an empty list makes sense, an example). An MLP without hidden layers is a linear classifier.
SIZE_LISTS: dict[str, tuple[tuple[str, ...], str]] = {
    "model.channels": ((), "[32,64]"),
    "model.widths": (("MLP",), "[256,128]"),
    "model.blocks": ((), "2"),
}
# Keys that are fractions: (the range as [low, high), an example).
FRACTIONS: dict[str, tuple[float, float, str]] = {
    "model.dropout": (0.0, 1.0, "0.1"),
    "optimizer.momentum": (0.0, 1.0, "0.9"),
    "model.label_smoothing": (0.0, 1.0, "0.1"),
}


# Every other number a conf/ choice has, by key (``*`` matches one level: any callback): the interval it
# must lie in ("[" includes the end, "(" leaves it out), whether it is a whole number, and an example.
# null passes (off, or automatic). Checked after the keys above, whose sentences are more specific;
# tests/test_hostile.py walks every number of every choice with hostile values against this table.
INF = float("inf")
NUMBERS: dict[str, tuple[str, bool, str]] = {
    "seed": ("[0,4294967295]", True, "42"),  # Lightning picks a random seed for one outside, and says only a warning
    "callbacks.*.seed": ("[0,4294967295]", True, "0"),
    "seeds": ("[1,inf)", True, "5"),
    "callbacks.*.every_n_steps": ("[0,inf)", True, "25"),  # 0: never
    "callbacks.*.every_n_epochs": ("[0,inf)", True, "1"),  # 0: never
    "callbacks.*.num_samples": ("[1,inf)", True, "16"),
    "callbacks.*.num_images": ("[1,inf)", True, "8"),
    "callbacks.*.max_images": ("[1,inf)", True, "16"),
    "callbacks.*.max_texts": ("[1,inf)", True, "20"),
    "callbacks.*.max_samples": ("[1,inf)", True, "500"),
    "callbacks.*.samples": ("[1,inf)", True, "2"),
    "callbacks.*.windows": ("[1,inf)", True, "4"),
    "callbacks.*.figure_budget": ("(0,1]", False, "0.05"),
    "callbacks.*.temperature": ("[0,inf)", False, "0.8"),
    "callbacks.*.length": (f"[1,{100_000}]", True, "300"),
    "callbacks.*.channel": ("[-2147483648,2147483647]", True, "-1"),  # -1: the last channel
    "callbacks.*.refresh_rate": ("[0,inf)", True, "10"),  # 0: no progress bar
    "callbacks.*.max_depth": ("[-1,inf)", True, "2"),  # -1: every layer
    "callbacks.*.save_top_k": ("[-1,inf)", True, "1"),  # -1: every checkpoint, 0: none
    "callbacks.*.min_delta": ("[0,inf)", False, "0.0"),
    "data.channels": ("[1,inf)", True, "3"),
    "data.eval_seq_len": ("[1,inf)", True, "256"),
    "data.stride": ("[1,inf)", True, "1"),
    "data.label_noise": ("[0,1]", False, "0.2"),
    "data.noise": ("[0,inf)", False, "0.1"),
    "data.std": ("(0,inf)", False, "0.5"),
    "data.mean": ("(-inf,inf)", False, "0.5"),
    "data.val_size": ("(0,inf)", False, "0.1"),  # a fraction below 1 or a count
    "data.test_size": ("(0,inf)", False, "0.1"),
    "data.train_fraction": ("(0,1)", False, "0.7"),
    "data.val_fraction": ("(0,1)", False, "0.1"),
    "divergence.factor": ("(1,inf)", False, "1e3"),
    "model.dim": ("[1,inf)", True, "64"),
    "model.heads": ("[1,inf)", True, "4"),
    "model.patch": ("[1,inf)", True, "4"),
    "model.segment": ("[1,inf)", True, "24"),
    "model.stride": ("[1,inf)", True, "8"),
    "model.mlp_ratio": ("(0,inf)", False, "4"),
    "model.init_gain": ("(0,inf)", False, "1.0"),
    "model.d_lr_scale": ("(0,inf)", False, "1.0"),
    "model.gp_weight": ("[0,inf)", False, "10"),
    "optimizer.alpha": ("[0,1)", False, "0.99"),
    "optimizer.lr_decay": ("[0,inf)", False, "0"),
    "optimizer.eps": ("(0,inf)", False, "1e-8"),
    "scheduler.factory.div_factor": ("(0,inf)", False, "25"),
    "scheduler.factory.final_div_factor": ("(0,inf)", False, "1e4"),
    "scheduler.factory.factor": ("(0,1)", False, "0.1"),
    "scheduler.factory.gamma": (
        "(0,inf)",
        False,
        "0.1",
    ),  # above 1 grows the rate (tests/test_reliability.py diverges so)
    "scheduler.factory.min_lr_ratio": ("[0,1]", False, "0"),
    "scheduler.factory.patience": ("[0,inf)", True, "3"),
    "scheduler.factory.pct_start": ("(0,1)", False, "0.3"),
    "scheduler.factory.step_size": ("[1,inf)", True, "10"),
    "scheduler.factory.warmup": ("[0,1)", False, "0.05"),
    "trainer.gradient_clip_val": ("[0,inf)", False, "1.0"),
    "trainer.num_sanity_val_steps": ("[-1,inf)", True, "2"),  # -1: the whole validation set
    "trainer.overfit_batches": ("[0,inf)", False, "0.0"),
    "tuner.min_lr": ("(0,inf)", False, "1e-6"),
    "tuner.max_lr": ("(0,inf)", False, "1.0"),
    "tuner.num_training": ("[1,inf)", True, "100"),
    "tuner.early_stop_threshold": ("(0,inf)", False, "4.0"),
    # tables (data=tabular and its presets) and their views
    "data.test_fraction": ("(0,1)", False, "0.2"),
    "data.split_seed": ("[0,4294967295]", True, "0"),
    "callbacks.*.max_points": ("[1,inf)", True, "2000"),
    "callbacks.*.max_rows": ("[1,inf)", True, "5000"),
    "callbacks.*.repeats": ("[1,inf)", True, "5"),
    # ratings (data=ratings, movielens_*) and recommenders (model=mf, ncf, svdpp)
    "data.fold": ("[1,5]", True, "1"),  # MovieLens-100k's u1-u5
    "model.weight_decay": ("[0,inf)", False, "0.1"),  # 0: none
    "model.bias_decay": ("[0,inf)", False, "0.01"),
    "model.implicit_decay": ("[0,inf)", False, "0.01"),  # svdpp's y; 0: none
    "model.init_std": ("(0,inf)", False, "0.01"),
    # audio (data=audio_folder, spoken_digits, speech_commands) and model=m5
    "data.sample_rate": ("[1,inf)", True, "16000"),
    "data.duration": ("(0,inf)", False, "1.0"),
    "data.n_mels": ("[1,inf)", True, "40"),
    "data.n_mfcc": ("[1,inf)", True, "20"),
    "data.window_ms": ("(0,inf)", False, "25"),
    "data.hop_ms": ("(0,inf)", False, "10"),
    "data.time_shift": ("[0,1]", False, "0.1"),  # a share of the clip; 0: none
    "data.freq_masks": ("[0,inf)", True, "1"),  # 0: none
    "data.freq_mask_width": ("[1,inf)", True, "4"),
    "data.time_masks": ("[0,inf)", True, "1"),  # 0: none
    "data.time_mask_width": ("[1,inf)", True, "5"),
    "data.classes": ("[12,35]", True, "35"),  # Speech Commands: 12 (the protocol) or 35 (every word)
    "data.silence_share": ("[0,1)", False, "0.1"),
    "data.unknown_share": ("[0,1)", False, "0.1"),
    "model.kernel_ms": ("(0,inf)", False, "10"),
    "model.stride_ms": ("(0,inf)", False, "2"),
    "model.pool_size": ("[1,inf)", True, "4"),
    # GANs: the moving average of G's weights
    "model.ema": ("[0,1)", False, "0.999"),  # 0: off
}
# The largest whole number any count may be: torch's sizes and indices are 64-bit, most kernels 32-bit.
MAX_WHOLE = 2**31 - 1


def _interval(text: str) -> tuple[float, bool, float, bool]:
    low, high = text[1:-1].split(",")
    return float(low), text[0] == "[", float(high), text[-1] == "]"


def _describe(text: str, whole: bool) -> str:
    low, low_in, high, high_in = _interval(text)
    kind = "a whole number" if whole else "a number"

    def spelled(x: float) -> str:
        return f"{int(x):,}" if x.is_integer() and abs(x) >= 1e4 else f"{x:g}"

    parts = []
    if low != -INF:
        parts.append(f"{'at least' if low_in else 'above'} {spelled(low)}")
    if high != INF:
        parts.append(f"{'at most' if high_in else 'below'} {spelled(high)}")
    return kind + (" " + " and ".join(parts) if parts else "")


def _in_range(cfg: DictConfig, key: str, interval: str, whole: bool, example: str) -> None:
    value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    if value is None or OmegaConf.is_config(value):
        return
    low, low_in, high, high_in = _interval(interval)
    ok = _is_number(value) and math.isfinite(value)
    if ok and whole:
        ok = isinstance(value, int) and abs(value) <= MAX_WHOLE
    if ok:
        ok = (value >= low if low_in else value > low) and (value <= high if high_in else value < high)
    if not ok:
        raise UserError(f"{key} must be {_describe(interval, whole)}, got {value!r}; try {key}={example}.")


def _check_numbers(cfg: DictConfig) -> None:
    """The keys of ``NUMBERS`` (``*``: every callback), then every number anywhere in the config: a
    NaN, an infinity or a whole number beyond ``MAX_WHOLE`` is no setting of anything."""
    for pattern, (interval, whole, example) in NUMBERS.items():
        if pattern.startswith("callbacks.*."):
            leaf = pattern.removeprefix("callbacks.*.")
            callbacks = cfg.get("callbacks")
            for name in callbacks if isinstance(callbacks, DictConfig) else ():
                node = callbacks.get(name)
                if isinstance(node, DictConfig) and leaf in node:
                    _in_range(cfg, f"callbacks.{name}.{leaf}", interval, whole, example)
        else:
            _in_range(cfg, pattern, interval, whole, example)
    _finite_everywhere(cfg, "")


def _finite_everywhere(node, prefix: str) -> None:
    keys = list(node.keys()) if isinstance(node, DictConfig) else list(range(len(node)))
    for key in keys:
        name = f"{prefix}[{key}]" if isinstance(key, int) else f"{prefix}.{key}" if prefix else str(key)
        if (not prefix and key in ("hydra", "paths")) or OmegaConf.is_missing(node, key):
            continue
        if OmegaConf.is_interpolation(node, key):
            continue
        value = node[key]
        if OmegaConf.is_config(value):
            _finite_everywhere(value, name)
        elif isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{name} is {value!r}, which is no setting of anything; give a finite number.")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
            raise UserError(f"{name}={value} is too large for any setting; give a smaller number.")
        elif isinstance(value, float) and abs(value) > MAX_MAGNITUDE:
            raise UserError(f"{name}={value:g} is too large to be a setting of anything; give a smaller number.")


# No rate, size, weight or threshold of a run is this large: a larger float is a typing mistake.
MAX_MAGNITUDE = 1e15


def _check_devices_value(cfg: DictConfig) -> None:
    """trainer.devices: a count (1 or more), -1 (every device), "auto", or which devices ("0,1", [0, 1])."""
    devices = OmegaConf.select(cfg, "trainer.devices", default=None)
    if devices is None:
        return
    if OmegaConf.is_list(devices):
        ok = len(devices) > 0 and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1024 for d in devices)
    elif isinstance(devices, bool):
        ok = False
    elif isinstance(devices, int):
        ok = devices == -1 or 1 <= devices <= 1024
    elif isinstance(devices, str):
        ok = devices == "auto" or re.fullmatch(r"-1|\d{1,4}|\d{1,4}(,\d{1,4})+,?|\d{1,4},", devices.strip()) is not None
    else:
        ok = False
    if not ok:
        raise UserError(
            f"trainer.devices must be a number of devices (1 or more), -1 (all of them), auto, or a list of "
            f"device numbers, got {devices!r}; try trainer.devices=1."
        )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole_number(cfg: DictConfig, key: str, least: int, example) -> None:
    value = OmegaConf.select(cfg, key, default=None)
    if value is None:
        return
    if isinstance(value, int) and not isinstance(value, bool) and value >= least:
        return
    kind = "a positive whole number" if least == 1 else f"a whole number of {least} or more"
    if isinstance(value, float) and value.is_integer() and value >= least:
        raise UserError(
            f"{key} must be {kind}, got the decimal number {value!r}; write it without a decimal point "
            f"or exponent, e.g. {key}={example}."
        )
    raise UserError(f"{key} must be {kind}, got {value!r}; try {key}={example}.")


def _positive(cfg: DictConfig, key: str, example: str) -> None:
    value = OmegaConf.select(cfg, key, default=None)
    if value is not None and not (_is_number(value) and value > 0):
        raise UserError(f"{key} must be a positive number, got {value!r}; try {key}={example}.")


def _fraction(cfg: DictConfig, key: str, low: float, high: float, example: str) -> None:
    value = OmegaConf.select(cfg, key, default=None)
    if value is not None and not (_is_number(value) and low <= value < high):
        raise UserError(f"{key} must be at least {low:g} and below {high:g}, got {value!r}; try {key}={example}.")


def _size_list(cfg: DictConfig, key: str, may_be_empty: tuple[str, ...], example: str) -> None:
    value = OmegaConf.select(cfg, key, default=None)
    if value is None:
        return
    sizes = list(value) if OmegaConf.is_list(value) else [value]
    network = str(OmegaConf.select(cfg, key.rpartition(".")[0] + "._target_", default="")).rpartition(".")[2]
    if not sizes and network not in may_be_empty:
        raise UserError(
            f"{key} is empty, so the network would have no such layer; give at least one size, e.g. {key}={example}."
        )
    bad = [v for v in sizes if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise UserError(
            f"{key} must hold positive whole numbers (one per layer), got {bad[0]!r} in "
            f"{OmegaConf.to_container(value) if OmegaConf.is_list(value) else value!r}; try {key}={example}."
        )


def check_config(cfg: DictConfig) -> None:
    """Values that no run can use, caught before any data is read or torch is imported."""
    _positive(cfg, "optimizer.lr", "1e-3")
    _check_budget(cfg)
    for key, (least, example) in WHOLE_NUMBERS.items():
        if key in ("steps_per_execution", "threads") and OmegaConf.select(cfg, key, default=None) == "auto":
            continue
        _whole_number(cfg, key, least, example)
    for key, (may_be_empty, example) in SIZE_LISTS.items():
        _size_list(cfg, key, may_be_empty, example)
    for key, (low, high, example) in FRACTIONS.items():
        _fraction(cfg, key, low, high, example)
    betas = OmegaConf.select(cfg, "optimizer.betas", default=None)
    if betas is not None and not (
        OmegaConf.is_list(betas) and len(betas) == 2 and all(_is_number(b) and 0 <= b < 1 for b in betas)
    ):
        raise UserError(
            f"optimizer.betas must be two numbers of at least 0 and below 1, got "
            f"{OmegaConf.to_container(betas) if OmegaConf.is_list(betas) else betas!r}; "
            f"try optimizer.betas=[0.9,0.999]."
        )
    weight_decay = OmegaConf.select(cfg, "optimizer.weight_decay", default=None)
    if weight_decay is not None and not (_is_number(weight_decay) and weight_decay >= 0):
        raise UserError(
            f"optimizer.weight_decay must be 0 or more, got {weight_decay!r}; try optimizer.weight_decay=0."
        )
    if not isinstance(cfg.get("seed"), int) or isinstance(cfg.get("seed"), bool):
        raise UserError(f"seed must be a whole number, got {cfg.get('seed')!r}; try seed=42.")
    if OmegaConf.select(cfg, "optimizer.nesterov", default=False) is True and not (
        _is_number(OmegaConf.select(cfg, "optimizer.momentum", default=0)) and cfg.optimizer.momentum > 0
    ):
        raise UserError(
            f"optimizer.nesterov=true needs momentum, and optimizer.momentum is "
            f"{OmegaConf.select(cfg, 'optimizer.momentum', default=None)!r}; give optimizer.momentum=0.9, "
            f"or optimizer.nesterov=false."
        )
    _check_numbers(cfg)
    for key, example in (("hydra.sweeper.n_trials", 20), ("hydra.sweeper.n_jobs", 1)):  # an Optuna search's
        _whole_number(cfg, key, 1, example)
    _check_devices_value(cfg)
    _check_whole_bounds(cfg)
    _check_run_flags(cfg)
    _check_trainer_keys(cfg)
    _check_devices(cfg)


def _check_whole_bounds(cfg: DictConfig) -> None:
    """The counts of ``WHOLE_NUMBERS`` and the sizes of ``SIZE_LISTS`` fit torch's sizes."""
    for key in [*WHOLE_NUMBERS, *SIZE_LISTS, "trainer.max_epochs", "trainer.max_steps"]:
        value = OmegaConf.select(cfg, key, default=None)
        values = list(value) if OmegaConf.is_list(value) else [value]
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and v > MAX_WHOLE:
                raise UserError(
                    f"{key}={v} is larger than any size torch can use (at most {MAX_WHOLE:,}); give a smaller number."
                )


def _check_run_flags(cfg: DictConfig) -> None:
    """resume and overwrite say opposite things; checkpoints are written inside the run folder only."""
    if cfg.get("resume") is True and cfg.get("overwrite") is True:
        raise UserError("overwrite=true starts the run again and resume=true continues it; give one of them, not both.")
    callbacks = cfg.get("callbacks")
    for name in callbacks if isinstance(callbacks, DictConfig) else ():
        node = callbacks.get(name)
        if not isinstance(node, DictConfig) or "dirpath" not in node:
            continue
        raw = OmegaConf.to_container(node, resolve=False)["dirpath"]
        if raw is None:
            continue
        text = str(raw)
        inside = re.fullmatch(r"\$\{paths\.output_dir\}(/[^$]*)?", text) and ".." not in text.split("/")
        if not inside:
            raise UserError(
                f"callbacks.{name}.dirpath={text} is not inside the run folder; checkpoints are written inside "
                f"the run folder only: leave it at ${{paths.output_dir}}/checkpoints (or a folder under "
                f"${{paths.output_dir}})."
            )


def check_values(cfg: DictConfig, source: str) -> None:
    """The numbers of the model, data and optimizer sections checked as ``check_config`` checks the
    user's: for a checkpoint's stored values (zoo/run/rebuild.py), ``source`` naming the file."""
    sections = ("model.", "data.", "optimizer.")
    try:
        for key, (least, example) in WHOLE_NUMBERS.items():
            if key.startswith(sections):
                _whole_number(cfg, key, least, example)
        for key, (may_be_empty, example) in SIZE_LISTS.items():
            _size_list(cfg, key, may_be_empty, example)
        for key, (low, high, example) in FRACTIONS.items():
            _fraction(cfg, key, low, high, example)
        for key, (interval, whole, example) in NUMBERS.items():
            if key.startswith(sections):
                _in_range(cfg, key, interval, whole, example)
        _positive(cfg, "optimizer.lr", "1e-3")
        for section in ("model", "data", "optimizer"):
            if isinstance(cfg.get(section), DictConfig):
                _finite_everywhere(cfg[section], section)
        for key in [k for k in [*WHOLE_NUMBERS, *SIZE_LISTS] if k.startswith(sections)]:
            value = OmegaConf.select(cfg, key, default=None)
            for v in list(value) if OmegaConf.is_list(value) else [value]:
                if isinstance(v, int) and not isinstance(v, bool) and v > MAX_WHOLE:
                    raise UserError(f"{key}={v} is larger than any size torch can use.")
    except UserError as e:
        raise UserError(
            f"{source} stores a value no run can use ({str(e).rstrip('.')}); use a checkpoint written by this project."
        ) from None


# Lightning's max_time as text: days:hours:minutes:seconds.
MAX_TIME = re.compile(r"^\d+:\d+:\d+:\d+$")


def _check_budget(cfg: DictConfig) -> None:
    """The run's budget (trainer.max_epochs, max_steps, max_time) ends the run, and the keys that
    count batches are counts or fractions."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig):
        return
    if not trainer.get("fast_dev_run", False) and trainer.get("max_epochs") != -1:
        _whole_number(cfg, "trainer.max_epochs", 1, 10)
    max_steps = trainer.get("max_steps")
    if max_steps is not None and max_steps != -1:
        _whole_number(cfg, "trainer.max_steps", 1, 1000)
    max_time = trainer.get("max_time")
    if max_time is not None and not (isinstance(max_time, str) and MAX_TIME.match(max_time.strip())):
        raise UserError(
            f"trainer.max_time must be days:hours:minutes:seconds, got {max_time!r}; five minutes is "
            f"trainer.max_time=00:00:05:00."
        )
    if (
        trainer.get("max_epochs") == -1
        and max_steps in (None, -1)
        and max_time is None
        and not trainer.get("fast_dev_run", False)
    ):
        raise UserError(
            "trainer.max_epochs=-1 with no trainer.max_steps or trainer.max_time would train forever; "
            "give a budget, e.g. trainer.max_time=00:00:05:00."
        )
    for key in ("val_check_interval", "limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = trainer.get(key)
        if value is None:
            continue
        if not _is_number(value) or value < 0 or (isinstance(value, float) and value > 1):
            raise UserError(
                f"trainer.{key} must be a whole number of batches or a fraction of the epoch (at most 1.0), "
                f"got {value!r}; try trainer.{key}={'0.25' if key == 'val_check_interval' else '0.1'}."
            )


@functools.lru_cache(maxsize=1)
def trainer_arguments() -> tuple[str, ...]:
    """The keyword arguments of ``lightning.Trainer``, read from its source without importing it
    (importing lightning imports torch: seconds, where a config check should take milliseconds)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("lightning")
    if spec is None or not spec.origin:
        return ()
    path = os.path.join(os.path.dirname(spec.origin), "pytorch", "trainer", "trainer.py")
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError):
        return ()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Trainer":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    return tuple(a.arg for a in item.args.args[1:] + item.args.kwonlyargs)
    return ()


TRAINER_TARGETS = ("lightning.Trainer", "lightning.pytorch.Trainer", "pytorch_lightning.Trainer")


def _check_trainer_keys(cfg: DictConfig) -> None:
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig) or trainer.get("_target_") not in TRAINER_TARGETS:
        return
    known = trainer_arguments()
    if not known:
        return
    for key in trainer:
        if str(key).startswith("_") or key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=3)
        hint = (
            f"did you mean {' or '.join(f'trainer.{c}' for c in close)}?"
            if close
            else "see https://lightning.ai/docs/pytorch/stable/common/trainer.html for its arguments."
        )
        raise UserError(f"trainer.{key} is not an argument of lightning.Trainer; {hint}")


def _check_devices(cfg: DictConfig) -> None:
    """Several processes on a CPU with fewer cores than processes: allowed (DDP can be tried out on a
    laptop), but slower than one, so it is said before they start."""
    devices = OmegaConf.select(cfg, "trainer.devices", default=None)
    accelerator = OmegaConf.select(cfg, "trainer.accelerator", default="auto")
    if not isinstance(devices, int) or isinstance(devices, bool) or devices <= 1:
        return
    cpu = accelerator == "cpu" or (accelerator == "auto" and not os.path.exists("/dev/nvidiactl"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpu and devices > cores and os.environ.get("LOCAL_RANK", "0") == "0":  # once, not again in each process
        sys.stderr.write(
            f"warning: trainer.devices={devices} starts {devices} training processes on a CPU with "
            f"{cores} core(s); they share the cores and run slower than trainer.devices=1.\n"
        )


def check_monitors(cfg: DictConfig, task, name: str) -> None:
    """Every metric a callback or the plateau scheduler watches is one the task logs (else it would be
    found missing only after the first epoch), or a sentence listing what it logs. A task publishes
    its metrics as ``logged_metrics``: a tuple, or a method where they depend on the network."""
    logged = task.logged_metrics() if callable(task.logged_metrics) else task.logged_metrics
    watched = [
        (f"callbacks.{key}.monitor", c.get("monitor"))
        for key, c in (cfg.get("callbacks") or {}).items()
        if isinstance(c, DictConfig) and c.get("monitor")
    ]
    if OmegaConf.select(cfg, "scheduler.monitor", default=None) and OmegaConf.select(cfg, "scheduler.factory"):
        watched.append(("scheduler.monitor", cfg.scheduler.monitor))
    for key, metric in watched:
        if metric not in logged:
            raise UserError(
                f"{key}={metric} is not a metric the {name} task logs; watch one of "
                f"{', '.join(m for m in logged if m.startswith('val/'))}."
            )


def check_eval_config(cfg: DictConfig) -> None:
    """eval.py's own options, before the checkpoint is read."""
    from zoo.run.oserrors import check_writable_file

    if cfg.get("split") not in ("test", "val"):
        raise UserError(f"split must be test or val, got {cfg.get('split')!r}.")
    _whole_number(cfg, "batch_size", 1, 256)
    if cfg.get("out"):
        check_writable_file(cfg.out, "out")


EXPORT_FORMATS = ("onnx", "torchscript", "pt2")


def check_export_config(cfg: DictConfig) -> None:
    """export.py's own options, before the checkpoint is read."""
    from zoo.run.oserrors import check_writable_folder

    if cfg.get("format") not in EXPORT_FORMATS:
        raise UserError(
            f"format must be one of {', '.join(EXPORT_FORMATS)}, got {cfg.get('format')!r}; try format=onnx."
        )
    _whole_number(cfg, "samples", 1, 256)
    if cfg.get("out"):
        if os.path.isfile(os.path.expanduser(str(cfg.out))):
            raise UserError(f"out={cfg.out} is a file; give a folder for the exported file and export.json.")
        check_writable_folder(cfg.out, "out")


def check_serve_config(cfg: DictConfig) -> None:
    """serve.py's own options, before the checkpoint is read."""
    _whole_number(cfg, "port", 0, 8000)
    if isinstance(cfg.get("port"), int) and cfg.port > 65535:
        raise UserError(f"port must be at most 65535, got {cfg.port}; try port=8000.")
    _whole_number(cfg, "max_batch_size", 1, 32)
    _whole_number(cfg, "workers", 1, 1)
    _whole_number(cfg, "threads", 1, 1)
    _whole_number(cfg, "max_request_mb", 1, 16)
    timeout = cfg.get("batch_timeout")
    if not (_is_number(timeout) and 0 <= timeout <= 10):
        raise UserError(f"batch_timeout must be seconds from 0 to 10, got {timeout!r}; try batch_timeout=0.01.")
    host = cfg.get("host")
    if not isinstance(host, str) or not host or any(c.isspace() for c in host):
        raise UserError(f"host must be an address to bind, got {host!r}; try host=127.0.0.1.")


def check_predict_config(cfg: DictConfig) -> None:
    """predict.py's own options, before the checkpoint is read: a refusal costs no torch import."""
    import glob

    from zoo.run.oserrors import check_writable_file, check_writable_folder

    _whole_number(cfg, "top_k", 1, 3)
    _whole_number(cfg, "top_n", 1, 10)
    _whole_number(cfg, "batch_size", 1, 256)
    user = cfg.get("user")
    if user is not None and (isinstance(user, bool) or not isinstance(user, (str, int))):
        raise UserError(f"user must be one user id, got {user!r}; e.g. user=196 or user=alice.")
    ratings = cfg.get("ratings")
    if ratings is not None and not (isinstance(ratings, str) and os.path.isfile(os.path.expanduser(ratings))):
        raise UserError(f"ratings={ratings}: no file there; give the ratings file whose items each user rated.")
    for key in ("input", "out", "column", "data_dir"):
        value = cfg.get(key)
        if value is not None and not isinstance(value, str):
            raise UserError(f"{key} must be a path or a name, got {value!r}; quote it if it is one: {key}='{value}'.")
    source = cfg.get("input")
    if source:
        path = os.path.expanduser(source)
        if not (os.path.exists(path) or glob.has_magic(path)):
            raise UserError(
                f"input={source}: no file or folder there; give the file, folder or glob to predict "
                f"(python predict.py --help says what each kind of model reads)."
            )
    out = cfg.get("out")
    if out:
        if out.lower().endswith(".csv"):
            check_writable_file(out, "out")
        else:
            if os.path.isfile(os.path.expanduser(out)):
                raise UserError(f"out={out} is a file; give a folder (predictions.csv goes in it) or a .csv file name.")
            check_writable_folder(out, "out")


# Characters generate.py samples one at a time: 100,000 take minutes on a CPU; more is a mistake.
MAX_GENERATE_LENGTH = 100_000


def check_generate_config(cfg: DictConfig) -> None:
    """generate.py's own options, before the checkpoint is read."""
    from zoo.run.oserrors import check_writable_file

    _whole_number(cfg, "num_samples", 1, 64)
    _in_range(cfg, "seed", "[0,4294967295]", True, "0")
    _in_range(cfg, "num_samples", f"[1,{MAX_WHOLE}]", True, "64")
    _whole_number(cfg, "length", 0, 500)
    _whole_number(cfg, "top_k", 1, 10)
    if cfg.get("length", 0) > MAX_GENERATE_LENGTH:
        raise UserError(
            f"length={cfg.length} characters would take hours to sample one by one; give at most "
            f"length={MAX_GENERATE_LENGTH} (several commands can continue each other's text with prompt=)."
        )
    temperature = cfg.get("temperature")
    if temperature is not None and not (_is_number(temperature) and temperature >= 0):
        raise UserError(f"temperature must be 0 or more, got {temperature!r}; try temperature=0.8.")
    if cfg.get("out"):
        check_writable_file(cfg.out, "out")


def explain(e: Exception, overrides: list[str]) -> str:
    """One sentence for the ways composing a config from the command line fails."""
    from hydra.errors import MissingConfigException, OverrideParseException

    msg = str(e)
    if isinstance(e, MissingConfigException) and e.missing_cfg_file and "/" in e.missing_cfg_file:
        group, _, choice = e.missing_cfg_file.rpartition("/")
        options = [o for o in e.options or group_choices(group) if not o.startswith("_")]  # bases are no choice
        return f"'{choice}' is not a choice for {group}; choose one of: {', '.join(options)}."
    if isinstance(e, OverrideParseException):
        return f"cannot read the command line ({' '.join(msg.split())}); write each override as key=value."
    m = re.search(r"Could not override '([^']+)'", msg)
    if m:
        key = m.group(1)
        parent, _, _leaf = key.rpartition(".")
        if "No match in the defaults list" in msg or (not parent and "." not in key):
            close = difflib.get_close_matches(key, groups(), n=1)
            hint = f"did you mean {close[0]}?" if close else f"the groups are: {', '.join(groups())}."
            return f"'{key}' is neither a config group nor a key; {hint}"
        found, keys, missing = _nearest_node(key, overrides)
        close = difflib.get_close_matches(missing[0], keys, n=1)
        where = f"{found}." if found else ""
        if close:
            hint = f"did you mean {where}{'.'.join([close[0], *missing[1:]])}?"
        else:
            hint = f"{found or 'the config'} has: {', '.join(keys)}."
        return f"'{key}' is not a config key; {hint} (To add a new key on purpose, write +{key}=...)"
    first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
    return first


def _nearest_node(key: str, overrides: list[str]) -> tuple[str, list[str], list[str]]:
    """For a dotted key the config lacks: the deepest node of it that exists, that node's keys, and
    the parts of the key below it (the first one is the misspelled one). The config is composed
    from the group choices only, without the failing key overrides."""
    parts = key.split(".")
    try:
        node = compose_config([o for o in overrides if "=" in o and "." not in o.split("=")[0]])
        for i, part in enumerate(parts):
            if not isinstance(node, DictConfig) or part not in node:
                return (
                    ".".join(parts[:i]),
                    sorted(map(str, node.keys())) if isinstance(node, DictConfig) else [],
                    parts[i:],
                )
            node = node[part]
    except Exception:  # noqa: BLE001 - only a hint
        pass
    return ".".join(parts[:-1]), [], parts[-1:]


def compose_config(overrides: list[str], config_name: str = "train") -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name=config_name):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


def compose_run(overrides: list[str], output_dir: str, data_dir: str | None = None) -> DictConfig:
    """The config ``python train.py <overrides>`` would run, for running ``train.train`` in-process
    (tests, benchmarks): its run folder is ``output_dir`` and Hydra's runtime info is set up."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    root = os.path.dirname(os.path.abspath(output_dir))
    base = [
        f"hydra.run.dir={output_dir}",
        f"paths.output_dir={output_dir}",
        f"paths.root_dir={root}",
        f"paths.data_dir={data_dir or os.path.join(root, 'data')}",
    ]
    cfg = compose_config(base + overrides)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _combinations(args: list[str]) -> list[list[str]]:
    """The overrides to try: every value of every sweep at least once, the others at their first."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(args)
    values: list[list[str]] = []
    for o in parsed:
        key = o.get_key_element()
        if not o.is_sweep_override():
            values.append([o.input_line])
        elif o.is_interval_sweep():
            values.append([])  # a search range (Optuna): nothing to try here
        else:
            values.append([f"{key}={v}" for v in o.sweep_string_iterator()])
    first = [v[0] for v in values if v]
    combos = [first]
    for i, vs in enumerate(values):
        for v in vs[1:]:
            combos.append([v if j == i else (w[0] if w else None) for j, w in enumerate(values)])
    return [[x for x in c if x is not None] for c in combos]


def _missing_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Keys left as ??? (without resolving interpolations, which need a running Hydra job)."""
    out = []
    for key in node:
        if not prefix and key == "hydra":
            continue
        if OmegaConf.is_missing(node, key):
            out.append(f"{prefix}{key}")
        elif not OmegaConf.is_interpolation(node, key) and isinstance(node[key], DictConfig):
            out += _missing_keys(node[key], f"{prefix}{key}.")
    return sorted(out)


def _config_groups(folder: str = CONF_DIR, parent: str = "") -> dict[str, list[str]]:
    """Every config group under conf/ (nested ones as a/b) with its choices, hydra/ left out."""
    out: dict[str, list[str]] = {}
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if os.path.isdir(path) and not (parent == "" and entry == "hydra"):
            group = f"{parent}{entry}"
            choices = sorted(f[:-5] for f in os.listdir(path) if f.endswith(".yaml") and not f.startswith("_"))
            if choices:
                out[group] = choices
            out.update(_config_groups(path, f"{group}/"))
    return out


def print_help(config_name: str, args: list[str]) -> bool:
    """Print what Hydra's ``--help`` prints, from the same template, without Hydra's help machinery.

    Hydra lists the config groups by building a config repository per group, each a deep copy of
    every config its plugins registered: 1.4 s with the sweeper and launcher plugins installed. The
    groups are the folders of conf/, so they are read from there (0.3 s in all). Returns False, to
    leave it to Hydra, for a flag or template placeholder this does not handle.
    """
    import string

    flags = [a for a in args if a.startswith("-")]
    if any(f not in ("--help", "-h", "--resolve") for f in flags):
        return False
    overrides = [a for a in args if not a.startswith("-")]
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = compose_config(overrides, config_name)
    except (HydraException, OmegaConfBaseException) as e:
        fail(explain(e, overrides))
    template = cfg.hydra.help.template
    if "$HYDRA_CONFIG_GROUPS" in template or "$FLAGS_HELP" in template:
        return False
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)  # for --resolve, as Hydra does
    with open_dict(cfg):
        del cfg["hydra"]
    groups = "".join(f"{g}: {', '.join(c)}\n" for g, c in _config_groups().items())
    print(
        string.Template(template).substitute(
            APP_CONFIG_GROUPS=groups, CONFIG=OmegaConf.to_yaml(cfg, resolve="--resolve" in flags)
        )
    )
    return True


def hydra_quoted(value: str) -> str:
    """``value`` as a Hydra override value that reads back as exactly this string: as it is when it
    holds only characters Hydra takes as plain text, else in single quotes, with a quote and the
    backslashes before a quote or the end escaped (Hydra's rule) and ``${`` escaped for OmegaConf. A
    comma, space, bracket, ``=`` or quote in a folder name would otherwise make it a list, a
    sweep or an error."""
    if re.fullmatch(r"[A-Za-z0-9_./+-]+", value):
        return value
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value).replace("'", "\\'")
    return "'" + escaped.replace("${", "\\${") + "'"


def _split_values(args: list[str]) -> None:
    """An argument without ``=`` after one with it is the rest of a value the shell split at a space."""
    for before, arg in itertools.pairwise(args):
        if "=" not in arg and not arg.startswith(("-", "~")) and "=" in before:
            raise UserError(
                f"'{arg}' is not a key=value override; if it is the rest of a value with a space in it, "
                f"quote the whole override: {shlex.quote(f'{before} {arg}')}."
            )


def _check_run_folder(cfg: DictConfig, multirun: bool) -> None:
    """The folder Hydra is about to make for the run (or the sweep) can be made and written."""
    from hydra.core.hydra_config import HydraConfig

    from zoo.run.oserrors import check_writable_folder

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        HydraConfig.instance().set_config(cfg)  # for ${hydra:...} in the folder's name, as Hydra resolves it
        folder = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    except Exception:  # noqa: BLE001 - a value only a running job can resolve: Hydra makes it, and says why not
        return
    if folder:
        check_writable_folder(str(folder), key)


def expand_seeds(argv: list[str]) -> list[str]:
    """``seeds=N`` on the command line: the same command as a multirun over N seeds, from ``seed=S`` (or
    the seed of conf/train.yaml) on: ``-m ... seed=S,S+1,...``. The sweep's summary then gives the mean
    ± std of every metric over the seeds (zoo/sweeps/summary.py: seed_groups)."""
    given = [a for a in argv if a.split("=", 1)[0].lstrip("+") == "seeds"]
    if not given:
        return argv
    value = given[-1].split("=", 1)[-1]
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"seeds must be a positive whole number of runs, got {value!r}; try seeds=5.")
    rest = [a for a in argv if a not in given]
    seed_args = [a for a in rest if a.split("=", 1)[0] == "seed"]
    if int(value) == 1:
        return rest
    if seed_args:
        start = seed_args[-1].split("=", 1)[-1]
        if not start.lstrip("-").isdigit():
            raise UserError(
                f"seeds={value} runs the seeds from seed= on, so seed must be one whole number, got {start!r}; "
                f"give either seeds=N or a list of seeds (-m seed=1,2,3)."
            )
        first = int(start)
    else:
        first = int(OmegaConf.load(os.path.join(CONF_DIR, "train.yaml")).seed)
    seeds = ",".join(str(first + i) for i in range(int(value)))
    multirun = [] if any(a in ("-m", "--multirun") for a in rest) else ["-m"]
    return [*multirun, *(a for a in rest if a not in seed_args), f"seed={seeds}"]


def preflight(config_name: str, argv: list[str]) -> DictConfig | None:
    """Compose the config Hydra is about to compose and report a mistake in one sentence.

    ``--help`` is answered here (``print_help``); other flags (--cfg, -cn, ...) are left to Hydra.
    Returns the composed config (with its ``hydra`` node) when the command is a single run, else None.
    """
    multirun = any(a in ("-m", "--multirun") for a in argv)
    args = [a for a in argv if a not in ("-m", "--multirun")]
    if "--help" in args or "-h" in args:
        if print_help(config_name, args):
            sys.exit(0)
        return
    if any(a.startswith("-") for a in args):
        return
    try:
        cfg = check_overrides(args, config_name, multirun)
    except UserError as e:
        fail(str(e))
    return None if multirun or "MULTIRUN" in str(OmegaConf.select(cfg, "hydra.mode", default="")) else cfg


def check_overrides(
    args: list[str], config_name: str = "train", multirun: bool = False, run_folder: bool = True
) -> DictConfig:
    """Every config the command line ``args`` composes (each value of a sweep once) is one the command
    can run, or a UserError: Hydra's own errors explained, then the checks of ``config_name`` (and of
    the run folder Hydra will make, unless ``run_folder`` is False: a script that picks its own).
    Returns the last config composed (the only one, for a single run)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _split_values(args)
    try:
        for overrides in _combinations(args):
            cfg = compose_config(overrides, config_name)
            missing = _missing_keys(cfg)
            if missing:
                raise UserError(f"{missing[0]} must be given; add {missing[0]}=... to the command line.")
            search = OmegaConf.select(cfg, "hydra.runtime.choices.hparams_search", default=None)
            if search and not multirun:
                raise UserError(
                    f"hparams_search={search} runs a search of many runs, which needs -m; run: "
                    f"python {config_name}.py -m {shlex.join(args)}"
                )
            if config_name == "train":
                check_config(cfg)
            elif config_name == "eval":
                check_eval_config(cfg)
            elif config_name == "generate":
                check_generate_config(cfg)
            elif config_name == "export":
                check_export_config(cfg)
            elif config_name == "serve":
                check_serve_config(cfg)
            elif config_name == "predict":
                check_predict_config(cfg)
            if run_folder:
                _check_run_folder(cfg, multirun)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(explain(e, args)) from None
    return cfg
