"""Checkpoints as data: loaded with weights_only=True, never unpickling code, and never trusted further
than their bytes can show.

Before ``torch.load`` reads a file, ``check_archive`` looks at the archive's directory: an entry that
declares more bytes than its compressed size could inflate to (a "zip bomb") or another compression
than torch writes is refused before anything is inflated, and every entry's CRC-32 (written by
``torch.save``) is verified, so a flipped byte anywhere in the file is refused, not evaluated. Every
checkpoint this project writes (``AtomicCheckpointIO`` in zoo/run/reliability.py) also stores
``WEIGHTS_DIGEST``, a SHA-256 of its tensors (names, dtypes, shapes, values), verified after loading:
it catches weights changed by a tool that rewrote the archive (and so its CRCs). A checkpoint written
before issue 26 has no digest: it is loaded as before, its archive's CRCs verified all the same.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile

from zoo.errors import UserError

# The SHA-256 of the checkpoint's tensors (``weights_digest``), stored beside Lightning's keys.
WEIGHTS_DIGEST = "zoo_weights_sha256"
# Deflate cannot expand its input more than about 1032 times: an entry declaring more is not deflate data.
MAX_DEFLATE_RATIO = 1032


def weights_digest(checkpoint: dict) -> str:
    """SHA-256 over every tensor of a checkpoint (the weights, the optimizer's state), each with its
    place in the checkpoint, dtype and shape; the same for the checkpoint written and read back."""
    import torch

    h = hashlib.sha256()

    def walk(value, where: str) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous().reshape(-1)
            h.update(f"{where}|{t.dtype}|{tuple(value.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                walk(value[key], f"{where}/{key}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{where}/{i}")

    walk({k: checkpoint.get(k) for k in ("state_dict", "optimizer_states")}, "")
    return h.hexdigest()


def check_archive(path: str) -> None:
    """Refuse an archive that declares more than it holds (before anything is inflated) or whose
    bytes no longer match the CRC-32 written with each entry (a flipped byte)."""
    size = os.path.getsize(path)
    damaged = (
        f"{path} is damaged (%s); it was refused, not evaluated: use another checkpoint of the run, e.g. last.ckpt."
    )
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            declared = 0
            for info in entries:
                stored = info.compress_type == zipfile.ZIP_STORED
                fits = (
                    info.file_size == info.compress_size
                    if stored
                    else info.file_size <= MAX_DEFLATE_RATIO * info.compress_size
                )
                if (
                    info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
                    or not fits
                    or info.compress_size > size
                ):
                    raise UserError(
                        f"{path} declares an entry {info.filename!r} of {info.file_size:,} bytes that its "
                        f"{info.compress_size:,} stored bytes could not hold; it was refused before anything "
                        f"was unpacked: only load checkpoints written by this project."
                    )
                declared += info.compress_size
            if declared > size:
                raise UserError(
                    f"{path} declares {declared:,} bytes of entries in a file of {size:,}; it was refused before "
                    f"anything was unpacked: only load checkpoints written by this project."
                )
            bad = archive.testzip()  # every entry's CRC-32, read in chunks
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise UserError(damaged % str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    if bad is not None:
        raise UserError(damaged % f"its entry {bad} does not match the checksum written with it")


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
    check_archive(path)
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
    if WEIGHTS_DIGEST in ckpt and ckpt[WEIGHTS_DIGEST] != weights_digest(ckpt):
        raise UserError(
            f"{path} is damaged (its weights do not match the checksum written with them); it was refused, "
            f"not evaluated: use another checkpoint of the run, e.g. last.ckpt."
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
