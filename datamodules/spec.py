"""What a datamodule yields, published before any model exists (see shared/DESIGN.md).

Models read their sizes from a ``DataSpec``; nobody types ``input_size: 784`` in a config.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class DataSpec:
    name: str                      # the data= choice, e.g. "mnist"
    kind: str                      # "image" (later: "tokens", "series", ...)
    shape: tuple[int, ...]         # one sample, without the batch: (C, H, W) for images
    num_classes: int = 0           # 0 when the data has no labels to classify
    class_names: tuple[str, ...] = field(default_factory=tuple)
    task: str = "classify"         # the learning problem the data poses: a name in zoo.tasks.TASKS

    def to_dict(self) -> dict:
        """Plain types only: stored in checkpoints, which load with weights_only=True."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        return cls(**{**d, "shape": tuple(d["shape"]), "class_names": tuple(d["class_names"])})
