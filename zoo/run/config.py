"""Config checks that run before torch is imported, so a mistake costs well under a second.

``preflight`` composes the command line's config the way Hydra will and turns Hydra's errors into
one sentence; ``check_config`` rejects values no run can use; ``user_errors`` prints any
``UserError`` as ``error: <sentence>`` and exits with status 2 instead of a traceback.
"""
from __future__ import annotations

import contextlib
import difflib
import os
import re
import sys

from omegaconf import DictConfig, OmegaConf

from zoo.errors import UserError

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
    except Exception as e:  # noqa: BLE001 - translated only when the cause is the user's input
        cause = e
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, UserError):
            fail(str(cause))
        if "MisconfigurationException" in (type(cause).__name__, type(e).__name__) or "MisconfigurationException(" in str(e):
            text = " ".join(str(cause if "Misconfiguration" in type(cause).__name__ else e).split())
            text = re.sub(r"^Error in call to target '[^']+':\s*MisconfigurationException\(['\"](.*)['\"]\)\s*full_key: \S+$", r"\1", text)
            fail(f"the trainer cannot start: {text.rstrip('.!')} (check trainer.accelerator, trainer.devices "
                 f"and trainer.precision; trainer=cpu runs anywhere).")
        raise


def group_choices(group: str) -> list[str]:
    folder = os.path.join(CONF_DIR, group)
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")) if os.path.isdir(folder) else []


def groups() -> list[str]:
    return sorted(d for d in os.listdir(CONF_DIR) if os.path.isdir(os.path.join(CONF_DIR, d)))


def _positive(cfg: DictConfig, key: str, example: str, integer: bool = False) -> None:
    value = OmegaConf.select(cfg, key, default=None)
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "a positive whole number" if integer else "a positive number"
        raise UserError(f"{key} must be {kind}, got {value!r}; try {key}={example}.")


def check_config(cfg: DictConfig) -> None:
    """Values that no run can use, caught before any data is read or torch is imported."""
    _positive(cfg, "optimizer.lr", "1e-3")
    _positive(cfg, "data.batch_size", "64", integer=True)
    _positive(cfg, "steps_per_execution", "1", integer=True)
    _positive(cfg, "data.eval_batch_size", "1024", integer=True)
    if not OmegaConf.select(cfg, "trainer.fast_dev_run", default=False):
        _positive(cfg, "trainer.max_epochs", "10", integer=True)
    dropout = OmegaConf.select(cfg, "model.dropout", default=0.0)
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise UserError(f"model.dropout must be in [0, 1), got {dropout!r}; try model.dropout=0.1.")
    if not isinstance(cfg.get("seed"), int):
        raise UserError(f"seed must be a whole number, got {cfg.get('seed')!r}; try seed=42.")


def _explain(e: Exception, overrides: list[str]) -> str:
    """One sentence for the ways composing a config from the command line fails."""
    from hydra.errors import MissingConfigException, OverrideParseException

    msg = str(e)
    if isinstance(e, MissingConfigException) and e.missing_cfg_file and "/" in e.missing_cfg_file:
        group, _, choice = e.missing_cfg_file.rpartition("/")
        options = e.options or group_choices(group)
        return f"'{choice}' is not a choice for {group}; choose one of: {', '.join(options)}."
    if isinstance(e, OverrideParseException):
        return f"cannot read the command line ({' '.join(msg.split())}); write each override as key=value."
    m = re.search(r"Could not override '([^']+)'", msg)
    if m:
        key = m.group(1)
        parent, _, leaf = key.rpartition(".")
        if "No match in the defaults list" in msg or (not parent and "." not in key):
            close = difflib.get_close_matches(key, groups(), n=1)
            hint = f"did you mean {close[0]}?" if close else f"the groups are: {', '.join(groups())}."
            return f"'{key}' is neither a config group nor a key; {hint}"
        keys = _keys_at(parent, overrides)
        close = difflib.get_close_matches(leaf, keys, n=1)
        hint = f"did you mean {parent}.{close[0]}?" if close else f"{parent} has: {', '.join(keys)}."
        return (f"'{key}' is not a config key; {hint} (To add a new key on purpose, write +{key}=...)")
    first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
    return first


def _keys_at(parent: str, overrides: list[str]) -> list[str]:
    """Keys of a node of the config composed without the failing key overrides."""
    try:
        cfg = _compose([o for o in overrides if "=" in o and "." not in o.split("=")[0]])
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return sorted(node.keys()) if isinstance(node, DictConfig) else []
    except Exception:  # noqa: BLE001 - only a hint
        return []


def _compose(overrides: list[str], config_name: str = "train") -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name=config_name):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


def compose_run(overrides: list[str], output_dir: str, data_dir: str | None = None) -> DictConfig:
    """The config ``python train.py <overrides>`` would run, for running ``train.train`` in-process
    (tests, benchmarks): its run folder is ``output_dir`` and Hydra's runtime info is set up."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    root = os.path.dirname(os.path.abspath(output_dir))
    base = [f"hydra.run.dir={output_dir}", f"paths.output_dir={output_dir}", f"paths.root_dir={root}",
            f"paths.data_dir={data_dir or os.path.join(root, 'data')}"]
    cfg = _compose(base + overrides)
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
    for key in node.keys():
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
            choices = sorted(f[:-5] for f in os.listdir(path) if f.endswith(".yaml"))
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
        cfg = _compose(overrides, config_name)
    except (HydraException, OmegaConfBaseException) as e:
        fail(_explain(e, overrides))
    template = cfg.hydra.help.template
    if "$HYDRA_CONFIG_GROUPS" in template or "$FLAGS_HELP" in template:
        return False
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)  # for --resolve, as Hydra does
    with open_dict(cfg):
        del cfg["hydra"]
    groups = "".join(f"{g}: {', '.join(c)}\n" for g, c in _config_groups().items())
    print(string.Template(template).substitute(APP_CONFIG_GROUPS=groups,
                                               CONFIG=OmegaConf.to_yaml(cfg, resolve="--resolve" in flags)))
    return True


def preflight(config_name: str, argv: list[str]) -> None:
    """Compose the config Hydra is about to compose and report a mistake in one sentence.

    ``--help`` is answered here (``print_help``); other flags (--cfg, -cn, ...) are left to Hydra.
    """
    args = [a for a in argv if a not in ("-m", "--multirun")]
    if "--help" in args or "-h" in args:
        if print_help(config_name, args):
            sys.exit(0)
        return
    if any(a.startswith("-") for a in args):
        return
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        for overrides in _combinations(args):
            cfg = _compose(overrides, config_name)
            missing = _missing_keys(cfg)
            if missing:
                raise UserError(f"{missing[0]} must be given; add {missing[0]}=... to the command line.")
            if config_name == "train":
                check_config(cfg)
    except UserError as e:
        fail(str(e))
    except (HydraException, OmegaConfBaseException) as e:
        fail(_explain(e, args))
