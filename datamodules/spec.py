"""What a datamodule yields, published before any model exists (see ARCHITECTURE.md, "The contracts").

Models read their sizes from a ``DataSpec``; nobody types ``input_size: 784`` in a config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class DataSpec:
    name: str  # the data= choice, e.g. "mnist"
    # "image", "tokens" (text), "series" (numeric time series), "table" (rows of columns), "ratings"
    # (user-item ratings) or "audio" (clips)
    kind: str
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
    # Tables (kind "table"): shape is (features,); feature i of a row comes from the file's column
    # columns[i] and is of the kind column_kinds[i]: "numeric" (the value standardised with the
    # training split's column_mean[i] and column_std[i]; a missing value is the mean, 0), "missing"
    # (1.0 where that column had no value, else 0.0) or "categorical" (the index of the value among
    # the column's categories as a float: 1..cardinalities[i]-1; 0 is "unknown", a value not seen in
    # training). The categories of every categorical feature, in order, one after another, are
    # `categories` (cardinalities[i] - 1 of them each). Plain data, so that predict and export redo
    # the preprocessing from a checkpoint alone (datamodules/tables.py: encode_rows).
    columns: tuple[str, ...] = field(default_factory=tuple)
    column_kinds: tuple[str, ...] = field(default_factory=tuple)
    cardinalities: tuple[int, ...] = field(default_factory=tuple)  # 0 for a feature that is not categorical
    categories: tuple[str, ...] = field(default_factory=tuple)
    column_mean: tuple[float, ...] = field(default_factory=tuple)  # 0.0 for a feature that is not numeric
    column_std: tuple[float, ...] = field(default_factory=tuple)  # 1.0 for a feature that is not numeric
    target: str = ""  # the column predicted: its classes are class_names (task classify), or a value (regress)
    target_mean: float = 0.0  # regression: the training split's scaler of the target (the network
    target_std: float = 1.0  # predicts (y - target_mean) / target_std; metrics are on y's own scale)
    # Ratings (kind "ratings"): shape is (2,), one (user index, item index) pair; index num_users
    # (num_items) stands for a user (item) unseen in training. The ids are the file's, as text, in
    # index order (plain lists in a checkpoint, their lengths checked when read: zoo/run/rebuild.py).
    num_users: int = 0
    num_items: int = 0
    user_ids: tuple[str, ...] = field(default_factory=tuple)
    item_ids: tuple[str, ...] = field(default_factory=tuple)
    item_titles: tuple[str, ...] = field(default_factory=tuple)  # empty when the data has no titles
    rating_min: float = 0.0  # the scale of the ratings: predictions are clipped to it
    rating_max: float = 0.0
    rating_mean: float = 0.0  # the mean training rating: where a network's prediction starts
    # the distinct (user, item) pairs of the training split: the size of the implicit feedback N(u)
    # that SVD++ holds as buffers (zoo/nets/recommend.py; checked against them when a checkpoint is read)
    num_rated: int = 0
    # Audio (kind "audio"): shape is (samples,), a clip's waveform at sample_rate; the network's front
    # end (zoo/nets/audio.py) computes the features below from it, on the whole batch
    sample_rate: int = 0
    features: str = ""  # "logmel" or "mfcc"
    n_fft: int = 0  # STFT window, in samples
    hop_length: int = 0  # samples between frames
    n_mels: int = 0
    n_mfcc: int = 0
    # SpecAugment in training: (frequency masks, widest in bins, time masks, widest in frames)
    spec_augment: tuple[int, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        """Plain types only: stored in checkpoints, which load with weights_only=True."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        known = {f.name for f in fields(cls)}  # a spec stored by a newer version may have more fields
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})
