"""Checkpoints as data: loaded with weights_only=True, never unpickling code."""

from __future__ import annotations

import os
import pickle
import zipfile

from zoo.errors import UserError


def load_checkpoint(path: str) -> dict:
    """Load a checkpoint of this framework as data only; never unpickles code."""
    import torch

    if not path or not os.path.isfile(path):
        raise UserError(f"no checkpoint at {path}; give the path of a .ckpt file from a run's checkpoints/ folder.")
    if not zipfile.is_zipfile(path):
        raise UserError(
            f"{path} is not a readable checkpoint (not a PyTorch checkpoint archive); "
            f"it may be truncated or corrupt: use another one, e.g. last.ckpt."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(
            f"{path} holds objects other than plain data and was refused unopened "
            f"({str(e).splitlines()[0]}); only load checkpoints written by this framework."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise UserError(
            f"{path} is not a readable checkpoint ({str(e).splitlines()[0]}); "
            f"it may be truncated or corrupt: use another one, e.g. last.ckpt."
        ) from None
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "config" not in hp or "state_dict" not in ckpt:
        raise UserError(
            f"{path} is not a checkpoint of this framework (it has no stored run config); "
            f"give one from a run's checkpoints/ folder."
        )
    return ckpt


def net_state(state_dict: dict) -> dict:
    """The network's own tensors of a task's state_dict (the task holds it as ``net``)."""
    return {k.removeprefix("net."): v for k, v in state_dict.items() if k.startswith("net.")}


def load_weights(net, path: str) -> list[str]:
    """Copy a checkpoint's network weights into ``net`` (fine-tuning: a new run starts from them).

    The checkpoint is first rebuilt as any other (zoo.run.rebuild: nothing in it is instantiated),
    so one that eval.py would refuse is refused here too. Tensors whose shape differs (a new head
    for another number of classes) are left as initialised; their names are returned."""
    from zoo.run.rebuild import rebuild

    state = rebuild(path).net.state_dict()
    own = net.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise UserError(f"none of the weights in {path} fit model; init_from needs a checkpoint of the same network.")
    net.load_state_dict(matching, strict=False)
    return sorted(set(own) - set(matching))
