"""Which Lightning task trains which pairing, and building networks from a data spec.

The data says what learning problem it poses (``spec.task``: classify, language_model, forecast, regress);
a network may insist on its own (a GAN's ``task = "adversarial"``). ``TASKS`` maps that name to
the task class, so a new kind of problem is one line here and one module in zoo/.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from zoo.errors import UserError
from zoo.nets.init import initialise

KIND_WORDS = {
    "image": "images",
    "tokens": "token sequences",
    "series": "numeric series",
    "table": "tables",
    "ratings": "user-item ratings",
    "audio": "audio clips",
}

# task name -> "module:Class" (imported only when used)
TASKS = {
    "classify": "zoo.tasks.classify:ClassificationTask",
    "adversarial": "zoo.tasks.adversarial:AdversarialTask",
    "language_model": "zoo.tasks.language_model:LanguageModelTask",
    "forecast": "zoo.tasks.forecast:ForecastTask",
    "regress": "zoo.tasks.regress:RegressionTask",
    "recommend": "zoo.tasks.recommend:RecommendTask",
}


def task_name(spec, factory: Callable | None = None) -> str:
    """The task a run needs: the network's own, if it has one, else the one its data poses."""
    cls = getattr(factory, "func", factory)
    return getattr(cls, "task", None) or spec.task


def build_net(factory: Callable, spec, model_name: str = "the model", data_name: str | None = None) -> nn.Module:
    """``factory`` is the model config instantiated as a partial; it is called with the spec. Its
    ``init`` and ``init_gain`` options (``model.init``, ``model.init_gain``: every network has them)
    are not the network's own: the network is built, then its weights are drawn by that scheme and
    scaled by that gain (zoo/nets/init.py)."""
    init, gain = "default", 1.0
    if isinstance(factory, functools.partial) and {"init", "init_gain"} & set(factory.keywords):
        keywords = dict(factory.keywords)
        init, gain = keywords.pop("init", None) or "default", float(keywords.pop("init_gain", None) or 1.0)
        factory = functools.partial(factory.func, *factory.args, **keywords)
    data_name = data_name or spec.name
    check_pairing(getattr(factory, "func", factory), spec.kind, model_name, data_name)
    try:
        return initialise(factory(spec), init, gain)
    except (ValueError, TypeError) as e:
        raise UserError(f"model={model_name} cannot be built for data={data_name}: {e}.") from None


def check_pairing(network, kind: str | None, model_name: str, data_name: str) -> None:
    """A network (class or builder, with its ``accepts``) that cannot take data of this ``kind`` is
    one sentence naming both sides. train.py asks it before the data is built (a datamodule class
    says its ``kind``), so a pair that cannot work is refused before any download is tried."""
    accepts = getattr(network, "accepts", None)
    if accepts is not None and kind is not None and kind not in accepts:
        wants = " or ".join(KIND_WORDS.get(k, k) for k in accepts)
        raise UserError(
            f"model={model_name} cannot take data={data_name}: it needs {wants}, and "
            f"{data_name} yields {KIND_WORDS.get(kind, kind)}; pick another model or dataset."
        )


def task_class(name: str):
    if name not in TASKS:
        raise UserError(f"no task named '{name}'; known tasks: {', '.join(sorted(TASKS))}.")
    module, _, cls = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def build_task(
    name: str,
    spec,
    net: nn.Module,
    optimizer: Callable,
    scheduler: dict | None,
    hparams: dict[str, Any],
    task_options: dict | None = None,
):
    """The Lightning module for task ``name``. ``hparams`` (plain data) goes into every checkpoint;
    the task's name is added so a checkpoint says what trained it."""
    cls = task_class(name)
    return cls.from_parts(
        spec=spec,
        net=net,
        optimizer=optimizer,
        scheduler=scheduler or {},
        hparams={**hparams, "task": name},
        **(task_options or {}),
    )
