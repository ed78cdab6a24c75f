"""What a datamodule yields, published before any model exists (see ARCHITECTURE.md, "The contracts").

Models read their sizes from a ``DataSpec``; nobody types ``input_size: 784`` in a config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class DataSpec:
    name: str  # the data= choice, e.g. "mnist"
    kind: str  # "image", "tokens" (text) or "series" (numeric time series)
    shape: tuple[int, ...]  # one sample, without the batch: (C, H, W) for images
    num_classes: int = 0  # 0 when the data has no labels to classify
    class_names: tuple[str, ...] = field(default_factory=tuple)
    task: str = "classify"  # the learning problem the data poses: a name in zoo.tasks.TASKS
    # Token sequences (kind "tokens"): shape is (sequence length,)
    vocab_size: int = 0  # number of token ids (embedding rows)
    vocabulary: tuple[str, ...] = field(default_factory=tuple)  # the token of each id (characters or words)
    pad_index: int = -1  # id that pads sequences to the same length; -1: never padded
    # Numeric series (kind "series"): shape is (lookback, channels); the last `target_channels`
    # channels are the ones forecast, `horizon` steps ahead
    horizon: int = 0
    target_channels: int = 0
    channel_names: tuple[str, ...] = field(default_factory=tuple)
    channel_mean: tuple[float, ...] = field(default_factory=tuple)  # the train-split scaler of each channel,
    channel_std: tuple[float, ...] = field(default_factory=tuple)  # to report errors on the original scale
    # Images (kind "image"): pixels in [0, 1] were fed as (x - pixel_mean) / pixel_std, per channel, so
    # that new images (predict.py, export) are scaled as the training images were; empty in
    # checkpoints from before issue 25 (predict.py then recomputes them from the dataset)
    pixel_mean: tuple[float, ...] = field(default_factory=tuple)
    pixel_std: tuple[float, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        """Plain types only: stored in checkpoints, which load with weights_only=True."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        known = {f.name for f in fields(cls)}  # a spec stored by a newer version may have more fields
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})
