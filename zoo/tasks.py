"""Which task trains which kind of data, and building networks from a data spec.

The registry is the one place that pairs a spec's ``kind`` with the Lightning module for it;
new kinds (token sequences, series, adversarial) add a line here.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from zoo.errors import UserError

KIND_WORDS = {"image": "images"}


def build_net(factory: Callable, spec, model_name: str = "the model", data_name: str | None = None) -> nn.Module:
    """``factory`` is the model config instantiated as a partial; it is called with the spec."""
    cls = getattr(factory, "func", factory)
    accepts = getattr(cls, "accepts", None)
    data_name = data_name or spec.name
    if accepts is not None and spec.kind not in accepts:
        wants = " or ".join(KIND_WORDS.get(k, k) for k in accepts)
        raise UserError(f"model={model_name} cannot take data={data_name}: it needs {wants}, and "
                        f"{data_name} yields {KIND_WORDS.get(spec.kind, spec.kind)}; pick another model or dataset.")
    try:
        return factory(spec)
    except (ValueError, TypeError) as e:
        raise UserError(f"model={model_name} cannot be built for data={data_name}: {e}.") from None


def build_task(spec, net: nn.Module, optimizer: Callable, scheduler: dict | None, hparams: dict[str, Any]):
    from zoo.classify import ClassificationTask

    scheduler = scheduler or {}
    if spec.kind == "image" and spec.num_classes > 0:
        return ClassificationTask(net, spec.num_classes, optimizer, scheduler.get("factory"),
                                  scheduler.get("interval", "epoch"), scheduler.get("monitor", "val/loss"),
                                  hparams=hparams)
    raise UserError(f"no task trains data of kind '{spec.kind}' yet; pick an image dataset.")
