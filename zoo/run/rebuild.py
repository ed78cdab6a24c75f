"""A checkpoint back into a runnable network: the one place a stored run is rebuilt.

A checkpoint holds the run's resolved config, ``_target_`` strings included, and anyone can write
one. So nothing read from the file is instantiated or imported: the run is rebuilt from its stored
group choices (model=cnn, data=digits, optimizer=adam, ...) composed through this project's own
conf/, and only the stored plain values (numbers, strings, booleans, null, lists of them) are laid
over the options that conf/ declares for that choice. A choice that is not a file of conf/<group>/,
a stored target that is not the project's own for that choice, or any other key or value that is
not plain data is refused with one sentence before anything is built.

eval.py, generate.py and ``init_from`` (zoo.run.checkpoints.load_weights) go through ``rebuild``;
``resume=true`` through ``check_file`` before Lightning reads the file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from zoo.errors import UserError
from zoo.run.config import CONF_DIR, group_choices, groups

# The kinds of data a checkpoint may say it was trained on (datamodules/spec.py).
KINDS = ("image", "tokens", "series", "table", "ratings", "audio")
# The sections a rebuild instantiates, each from the conf/ file its stored choice names.
BUILT = ("model", "data", "optimizer")
# Config groups composed to check the stored config against; hparams_search configures only the
# sweeper, and hydra/ is never stored.
NOT_COMPOSED = ("hydra", "hparams_search")
# Keys of Hydra's instantiate protocol a stored section may carry, and then only with conf/'s value.
PROTOCOL_KEYS = ("_target_", "_partial_")


@dataclass
class Rebuilt:
    """What a checkpoint rebuilds to. ``config`` holds the sections in ``BUILT`` as plain data whose
    targets come from conf/; ``hparams`` is what a task is built with: the stored config, checked
    (every target in it is conf/'s), with those sections as rebuilt; ``state_dict`` the task's tensors."""

    net: Any
    spec: Any
    task: str
    choices: dict[str, str]
    config: dict[str, dict]
    hparams: dict[str, Any]
    state_dict: dict[str, Any]


# Options conf/ gained after checkpoints were written without them, with the value that builds what
# such a checkpoint holds (not conf/'s newer default): a recurrent forecaster's checkpoint from before
# model.linear_path (issue 13) has no such weights, and one from before model.segment (issue 13) stepped
# through its window point by point.
# A GAN's checkpoint from before the mode-collapse remedies (issue 31) has none of them.
ADDED_OPTIONS: dict[str, dict] = {
    "model": {
        "linear_path": False,
        "segment": None,
        "spectral_norm": False,
        "minibatch_std": False,
        "ema": 0.0,
        "augment": None,
    }
}


# Options of a data choice that name a place (a folder, a file, a download source) or say whether to
# reach one. They are never read from a checkpoint: a stored location is the writer's machine (or a
# crafted file's target), so a rebuild takes them from conf/ and the user's own command (``places``).
LOCATIONS = ("data_dir", "path", "root", "url", "mirror", "checksum", "download")
# Elements a rebuilt network may hold beyond the tensors its checkpoint stores (buffers it does not
# save): a checkpoint's sizes are checked against its own weights and this, before anything is allocated.
MAX_UNSTORED_ELEMENTS = 1 << 26


def rebuild(path: str, places: dict[str, Any] | None = None):
    """The network of the checkpoint at ``path``, its weights loaded, with its data spec and the
    checked config eval.py needs to rebuild the datamodule and the task. ``places``: the data's
    locations the user gave (eval.py's data_dir=, data_path=), laid over conf/'s; the checkpoint's own
    are never used (``LOCATIONS``)."""
    from hydra.utils import instantiate

    from zoo.run.checkpoints import load_checkpoint, net_state
    from zoo.tasks.registry import build_net

    ckpt = load_checkpoint(path)
    checked = check_checkpoint(ckpt, path, places=places)
    spec, choices, config = checked.spec, checked.choices, checked.config
    check_sizes(config, spec, choices, net_state(ckpt["state_dict"]), path)
    net = build_net(instantiate(config["model"]), spec, choices["model"], choices["data"])
    try:
        net.load_state_dict(net_state(ckpt["state_dict"]))
    except RuntimeError as e:
        raise UserError(
            f"the weights in {path} do not fit model={choices['model']} as conf/ builds it "
            f"({str(e).splitlines()[0]}); use a checkpoint written by this project."
        ) from None
    checked.net = net
    return checked


def check_sizes(config: dict, spec, choices: dict, stored: dict, path: str) -> None:
    """The network the checkpoint describes, built first on the "meta" device (shapes only, nothing
    allocated): every tensor it has must have the shape the checkpoint stores for it, and what it has
    beyond them (buffers it does not save) must stay under ``MAX_UNSTORED_ELEMENTS``. So a crafted
    width, class count or vocabulary is one sentence, not an allocator's traceback."""
    import torch
    from hydra.utils import instantiate

    from zoo.tasks.registry import build_net

    try:
        with torch.device("meta"):
            shell = build_net(instantiate(config["model"]), spec, choices["model"], choices["data"])
    except UserError:
        raise
    except (RuntimeError, ValueError, TypeError, OverflowError, NotImplementedError, MemoryError) as e:
        raise UserError(
            f"{path} describes a network that cannot be built ({str(e).splitlines()[0][:120]}); "
            f"use a checkpoint written by this project."
        ) from None
    unstored = 0
    for name, tensor in [*shell.named_parameters(), *shell.named_buffers()]:
        theirs = stored.get(name)
        if theirs is None:
            unstored += tensor.numel()
        elif tuple(theirs.shape) != tuple(tensor.shape):
            raise UserError(
                f"{path} describes a network whose {name} has shape {tuple(tensor.shape)}, but stores weights of "
                f"shape {tuple(theirs.shape)} for it; its sizes were refused before anything was allocated: use a "
                f"checkpoint written by this project."
            )
    if unstored > MAX_UNSTORED_ELEMENTS:
        raise UserError(
            f"{path} describes a network of {unstored:,} values more than the weights it stores (at most "
            f"{MAX_UNSTORED_ELEMENTS:,}); its sizes were refused before anything was allocated: use a checkpoint "
            f"written by this project."
        )


def check_file(path: str, current: dict | None = None) -> Rebuilt:
    """The checkpoint at ``path`` loaded as data and checked as ``rebuild`` checks it, nothing built
    (resume=true: Lightning restores the training state, and nothing stored may be foreign).
    ``current``: the resolved config of the run about to continue it, whose own targets outside the
    sections a rebuild builds (a callback added with ``+callbacks.x._target_=...``) are accepted."""
    from zoo.run.checkpoints import load_checkpoint

    return check_checkpoint(load_checkpoint(path), path, current)


def _without_current_targets(stored: Any, current: Any) -> Any:
    """``stored`` less the ``_target_``/``_partial_`` values that ``current`` has at the same place:
    what the user's own command line builds is theirs, not the file's."""
    if not isinstance(stored, dict) or not isinstance(current, dict):
        return stored
    return {
        key: _without_current_targets(value, current.get(key))
        for key, value in stored.items()
        if not (key in PROTOCOL_KEYS and key in current and current[key] == value)
    }


def check_checkpoint(
    ckpt: dict, path: str, current: dict | None = None, places: dict[str, Any] | None = None
) -> Rebuilt:
    """Everything a rebuild reads from ``ckpt``, checked as data (nothing built; ``net`` is None);
    ``current`` as for ``check_file``, ``places`` as for ``rebuild``. A location the data needs that
    neither conf/ nor ``places`` gives (data.path of data=csv) is None in ``config``: the code that
    reads the data (eval.py) asks the user for it."""
    from datamodules.spec import DataSpec
    from zoo.tasks.registry import TASKS

    hp = ckpt["hyper_parameters"]
    stored, choices = hp.get("config"), _checked_choices(hp.get("choices"), path)
    if not isinstance(stored, dict):
        raise UserError(
            f"{path} stores its run config as {type(stored).__name__}, not as plain data; "
            f"use a checkpoint written by this project."
        )
    task = hp.get("task", "classify")
    if not isinstance(task, str) or task not in TASKS:
        raise UserError(
            f"{path} names the task {task!r}, which is not one of this project's "
            f"({', '.join(sorted(TASKS))}); use a checkpoint written by this project."
        )
    spec = DataSpec.from_dict(_checked_spec(hp.get("spec"), path))
    project = _compose(choices)
    checked = stored
    if current is not None:
        checked = {k: v if k in BUILT else _without_current_targets(v, current.get(k)) for k, v in stored.items()}
    _check_node(checked, OmegaConf.to_container(project, resolve=False), "", path, strict=False)
    for section in BUILT:
        if not isinstance(stored.get(section), dict):
            raise UserError(
                f"{path} stores no '{section}' section as plain data; use a checkpoint written by this project."
            )
        node = project[section]
        for key, value in stored[section].items():
            if not key.startswith("_") and not (section == "data" and key in LOCATIONS):
                node[key] = value  # plain and declared by conf/ (checked above)
        for key, value in ADDED_OPTIONS.get(section, {}).items():
            if key in node and key not in stored[section]:
                node[key] = value  # written before conf/ had the option: build what it holds
    if isinstance(stored.get("seed"), int):  # interpolated into sections (data.seed: ${seed}) that did not store theirs
        project["seed"] = stored["seed"]
    # conf/'s locations, resolved for this command: paths.root_dir is where it runs (as Hydra's runtime.cwd)
    project.paths.root_dir = os.getcwd()
    for key in LOCATIONS:
        if key in list(project.data):  # (``in`` alone leaves out a ??? value)
            if (places or {}).get(key) is not None:
                project.data[key] = places[key]
            elif OmegaConf.is_missing(project.data, key):
                project.data[key] = None  # required, and not given: eval.py asks for it
    from zoo.run.config import check_values

    check_values(project, path)  # the stored numbers, as train.py checks the user's
    try:
        config = {s: OmegaConf.to_container(project[s], resolve=True, throw_on_missing=True) for s in BUILT}
    except OmegaConfBaseException as e:  # an option conf/ requires (???, an interpolation) that the checkpoint lacks
        raise UserError(
            f"{path} lacks a value conf/ needs to rebuild it ({str(e).splitlines()[0]}); "
            f"use a checkpoint written by this project."
        ) from None
    hparams = {"config": {**stored, **config}, "choices": choices, "spec": spec.to_dict()}
    return Rebuilt(
        net=None, spec=spec, task=task, choices=choices, config=config, hparams=hparams, state_dict=ckpt["state_dict"]
    )


def _checked_choices(choices: Any, path: str) -> dict[str, str]:
    if not isinstance(choices, dict) or not all(isinstance(choices.get(g), str) for g in ("model", "data")):
        raise UserError(
            f"{path} does not record which model and data conf/ files built it; "
            f"use a checkpoint written by this project."
        )
    own_groups = [g for g in groups() if g not in NOT_COMPOSED]
    out = {}
    for group, choice in choices.items():
        if group not in own_groups:
            continue  # not a group of conf/ (hydra/..., or one since removed): never read
        known = group_choices(group)
        if not isinstance(choice, str) or choice not in known:
            raise UserError(
                f"{path} names {group}={choice!r}, which is not a file of conf/{group}/ "
                f"({', '.join(known)}); only checkpoints of this project's own configs are rebuilt."
            )
        out[group] = choice
    return out


def _compose(choices: dict[str, str]) -> DictConfig:
    """This project's config for ``choices`` (every override is a validated file name)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    overrides = [f"{group}={choice}" for group, choice in choices.items()]
    try:
        if GlobalHydra.instance().is_initialized():  # inside eval.py, generate.py, train.py: their conf/ is this one
            return compose(config_name="train", overrides=overrides)
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name="rebuild"):
            return compose(config_name="train", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(
            f"conf/ cannot compose the choices this checkpoint names ({' '.join(overrides)}): {str(e).splitlines()[0]}"
        ) from None


def _plain(value: Any) -> bool:
    """Numbers, strings, booleans, null and lists of them: data that instantiates nothing. Strings
    holding ``${`` are not plain: OmegaConf would resolve them as interpolations."""
    if value is None or isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, str):
        return "${" not in value
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return False


# Targets conf/ named before a class of this project replaced them (issue 16): a checkpoint of an
# earlier run still passes (only compared, never imported or built).
REPLACED_TARGETS = {
    "lightning.pytorch.loggers.TensorBoardLogger": "zoo.callbacks.logger.TensorBoardLogger",
    "lightning.pytorch.callbacks.LearningRateMonitor": "zoo.callbacks.watch.LearningRateLogger",
    # issue 26: the bar counts batches, the summary shows the network
    "lightning.pytorch.callbacks.RichProgressBar": "zoo.callbacks.console.ProgressBar",
    "lightning.pytorch.callbacks.RichModelSummary": "zoo.callbacks.console.ModelSummary",
}


def _same_target(stored: Any, own: Any) -> bool:
    """conf/'s target, or the same class of this project at the module it had before zoo/ was split
    into sub-packages (zoo.cnn.CNN for zoo.nets.cnn.CNN), or the target conf/ had before one of this
    project's classes replaced it (REPLACED_TARGETS). Only compared: neither is imported here."""
    if stored == own or (isinstance(stored, str) and REPLACED_TARGETS.get(stored) == own):
        return True
    return (
        isinstance(stored, str)
        and isinstance(own, str)
        and stored.startswith("zoo.")
        and own.startswith("zoo.")
        and stored.count(".") == 2
        and stored.rsplit(".", 1)[1] == own.rsplit(".", 1)[1]
    )


def _check_node(stored: dict, own: Any, where: str, path: str, strict: bool) -> None:
    """Refuse what in ``stored`` is not plain data the project's config ``own`` declares. In the
    sections a rebuild builds (``strict``) every key must be one conf/ has; elsewhere unknown plain
    keys are ignored, as nothing reads them."""
    for key, value in stored.items():
        name = f"{where}.{key}" if where else str(key)
        declared = isinstance(own, dict) and key in own
        own_value = own[key] if declared else None  # as conf/ writes it: interpolations unresolved
        if not isinstance(key, str):
            raise UserError(
                f"{path} stores a config key {key!r} that is not a name; only checkpoints of this project are rebuilt."
            )
        if key.startswith("_"):
            if (
                key not in PROTOCOL_KEYS
                or not declared
                or not (_same_target(value, own_value) if key == "_target_" else value == own_value)
            ):
                expected = f"conf/ has {own_value!r}" if declared else "conf/ has none there"
                raise UserError(
                    f"{path} stores {name}={value!r} ({expected}); checkpoints are rebuilt from this "
                    f"project's conf/ only, so this one was refused and nothing was built."
                )
            continue
        section_strict = strict or (where == "" and key in BUILT)
        if isinstance(value, dict):
            if not isinstance(own_value, dict):
                if section_strict or any(isinstance(k, str) and k.startswith("_") for k in _keys_deep(value)):
                    raise UserError(
                        f"{path} stores {name} as a mapping where conf/ has "
                        f"{'no such option' if not declared else 'a plain value'}; "
                        f"only plain values are read from a checkpoint, so it was refused."
                    )
                continue
            _check_node(value, own[key], name, path, section_strict)
        elif not _plain(value):
            raise UserError(
                f"{path} stores {name} as {type(value).__name__} {repr(value)[:60]}, not as plain data "
                f"(numbers, strings without '${{', booleans, null, lists of them); it was refused."
            )
        elif section_strict and not declared:
            raise UserError(
                f"{path} stores {name}, an option conf/ does not declare for this choice; "
                f"use a checkpoint written by this project."
            )


def _keys_deep(value: Any):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys_deep(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys_deep(v)


def _checked_spec(spec: Any, path: str) -> dict:
    """The stored DataSpec, field by field of the type DataSpec declares."""
    from datamodules.spec import DataSpec

    if not isinstance(spec, dict):
        raise UserError(f"{path} stores no data spec; use a checkpoint written by this project.")
    types = {f.name: f.type for f in fields(DataSpec)}
    for name, value in spec.items():
        kind = types.get(name)
        if not isinstance(name, str) or name.startswith("_"):
            raise UserError(
                f"{path} stores spec.{name}, which no data spec has; use a checkpoint written by this project."
            )
        if kind is None:
            continue  # a field of a newer version: DataSpec.from_dict leaves it out
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
            "tuple[int, ...]": isinstance(value, list)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
            "tuple[str, ...]": isinstance(value, list) and all(isinstance(v, str) for v in value),
            "tuple[float, ...]": isinstance(value, list)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value),
        }.get(str(kind), False)
        if not ok:
            raise UserError(
                f"{path} stores spec.{name}={repr(value)[:60]}, which is not of type {kind}; "
                f"use a checkpoint written by this project."
            )
    for name in ("name", "kind", "shape"):
        if name not in spec:
            raise UserError(f"{path} stores a data spec without '{name}'; use a checkpoint written by this project.")
    if spec["kind"] not in KINDS or not spec["shape"] or min(spec["shape"]) < 1:
        raise UserError(
            f"{path} stores a data spec of kind {spec['kind']!r} and shape {spec['shape']}; "
            f"use a checkpoint written by this project."
        )
    if spec["kind"] == "ratings":
        _check_ratings_spec(spec, path)
    return spec


def _check_ratings_spec(spec: dict, path: str) -> None:
    """A recommender's id lists against its sizes: the network is built num_users x num_items, and
    predict.py names users and items by these lists (one id a row, each id once, titles none or one an item)."""
    users, items = spec.get("user_ids", []), spec.get("item_ids", [])
    titles = spec.get("item_titles", [])
    sizes_ok = (
        spec.get("num_users", 0) >= 1
        and spec.get("num_items", 0) >= 1
        and len(users) == spec.get("num_users")
        and len(items) == spec.get("num_items")
        and len(set(users)) == len(users)
        and len(set(items)) == len(items)
        and len(titles) in (0, len(items))
        and 0 <= spec.get("num_rated", 0) <= spec.get("num_users", 0) * spec.get("num_items", 0)
    )
    if not sizes_ok:
        raise UserError(
            f"{path} stores a ratings spec whose id lists do not match its sizes ({len(users)} user ids for "
            f"num_users={spec.get('num_users')}, {len(items)} item ids and {len(titles)} titles for "
            f"num_items={spec.get('num_items')}, each id once, num_rated={spec.get('num_rated', 0)} pairs at most "
            f"num_users x num_items); use a checkpoint written by this project."
        )
