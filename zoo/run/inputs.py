"""A user's raw inputs -> the tensors a network was trained on, the way its training data was read.

predict.py and ``zoo.load(ckpt).predict(x)`` (zoo/run/predict.py) hand what the user gave (a file,
a folder, a glob, an array, a tensor, a PIL image, strings, a DataFrame) to the reader of the
checkpoint's kind of data, ``READERS[spec.kind]``. A reader returns ``Inputs``: the rows it could
read as one tensor ``(n, *spec.shape)``, scaled and encoded exactly as the datamodule did for
training, a name for every row (its path, line, index) and, per row, why it could not be read
(a broken image in a folder is a row with an error, the rest are still predicted). Input that
cannot be used at all (a missing file, a missing trained column, a history shorter than the
lookback) is a ``UserError`` of one sentence naming the file, row or column.

A new kind of data adds its reader here: a function ``read(x, spec, options) -> Inputs`` and one line
in ``READERS`` (ARCHITECTURE.md, "Let predict.py read your kind"). Locations (``options.data_dir``)
come from the user's command or the project's defaults, never from a path stored in the checkpoint.
"""

from __future__ import annotations

import glob
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import UserError

# spec.kind -> "module:function" (imported only when used)
READERS = {
    "image": "zoo.run.inputs:read_images",
    "tokens": "zoo.run.inputs:read_texts",
    "series": "zoo.run.inputs:read_series",
    "table": "zoo.run.tables:read_tables",
    "ratings": "zoo.run.inputs:read_users",
    "audio": "zoo.run.inputs:read_audio",
}

# Keys of a data config that say where the files are: a checkpoint's own values of these are never read.
STORED_LOCATIONS = ("data_dir", "path", "root", "url", "mirror")


@dataclass
class PredictOptions:
    """What a reader (and a rows function) may use besides the input: ``data`` is the run's data
    config as rebuilt from conf/ (plain values; its stored locations are not to be used), ``data_dir``
    where datasets live now (data_dir=, else $ZOO_DATA_DIR, else ./data), ``column`` the column of a
    CSV or DataFrame that holds the input (column=), ``top_k`` how many classes a row lists;
    recommenders: ``top_n`` how many items a user gets, ``ratings`` the ratings file whose items each
    user rated, to be left out (ratings=; None: the dataset's own file under ``data_dir``)."""

    data: dict
    data_dir: str
    column: str | None = None
    top_k: int = 3
    top_n: int = 10
    ratings: str | None = None


@dataclass
class Inputs:
    """What a reader read. ``x``: the readable rows, in order, as the network takes them (``(n,
    *spec.shape)``, float32 or token ids). ``columns``: the columns that name each row, read or not
    (``{"path": [...]}``, ``{"line": [...], "text": [...]}``), all of one length. ``errors``: per
    row, None or why it could not be read. ``extra``: what the rows function needs beyond the outputs
    (a forecast's timestamps). ``noun``: what a row is, for messages ("images", "texts", "series")."""

    x: torch.Tensor
    columns: dict[str, list]
    errors: list[str | None]
    extra: dict[str, Any] = field(default_factory=dict)
    noun: str = "inputs"

    def __len__(self) -> int:
        return len(self.errors)

    @property
    def read(self) -> list[int]:
        """The rows that were read (the rows of ``x``)."""
        return [i for i, e in enumerate(self.errors) if e is None]

    @property
    def failed(self) -> int:
        return sum(e is not None for e in self.errors)


def reader(kind: str):
    """The reader of ``spec.kind``, or a sentence saying predict.py cannot read that kind."""
    if kind not in READERS:
        raise UserError(
            f"predict.py cannot read inputs for data of kind '{kind}' yet (it reads {', '.join(sorted(READERS))}); "
            f"evaluate the checkpoint with eval.py instead."
        )
    module, _, name = READERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def dataset_config(options: PredictOptions, needs: str) -> dict:
    """The run's data config with its locations from now, not from the checkpoint: ``data_dir`` is
    ``options.data_dir``, a URL or mirror is the dataset's own default; data read from a file or
    folder the user named (``data.path``, ``data.root``) cannot be found again, so ``needs`` says
    what to give instead."""
    data = dict(options.data)
    for key in ("path", "root"):
        if key in data:
            raise UserError(f"this model was trained on data from a {key} of yours; {needs}.")
    if "data_dir" in data:
        data["data_dir"] = options.data_dir
    for key in ("url", "mirror"):
        data.pop(key, None)
    return data


def build_dataset(data: dict):
    """A datamodule from a data config whose target is conf/'s (zoo.run.rebuild checked it)."""
    from hydra.utils import instantiate

    return instantiate(data)


def is_array(x) -> bool:
    return isinstance(x, (np.ndarray, torch.Tensor))


def nested_numbers(x) -> bool:
    """A list of lists of numbers (what JSON gives for an array): read as an array."""
    while isinstance(x, (list, tuple)) and len(x):
        x = x[0]
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def as_array(x, what: str) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64)
    except (ValueError, TypeError):
        raise UserError(f"{what} is not a rectangular array of numbers; give rows of equal length.") from None


# ---- images ------------------------------------------------------------------------------------


def image_files(source: str | os.PathLike) -> tuple[list[str], bool]:
    """The files ``source`` names: one file, every file under a folder (recursively, hidden ones left
    out) or a glob's matches, sorted; and whether it named a single file."""
    path = os.path.expanduser(str(source))
    if os.path.isfile(path):
        return [path], True
    if os.path.isdir(path):
        files = sorted(
            os.path.join(folder, name)
            for folder, dirs, names in os.walk(path)
            for name in names
            if not name.startswith(".") and not any(p.startswith(".") for p in Path(folder).relative_to(path).parts)
        )
        if not files:
            raise UserError(f"the folder {path} has no files in it (nor in its sub-folders); give a folder of images.")
        return files, False
    if glob.has_magic(path):
        files = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
        if not files:
            raise UserError(f"no file matches {path}; check the pattern (quote it so the shell leaves it alone).")
        return files, False
    raise UserError(f"no file or folder at {path}; give an image file, a folder of images or a glob.")


def open_image(path: str):
    """A file as a decoded Pillow image, or the reason it is not one (a string)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # decodes the whole file: a truncated one fails here
            return img.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return " ".join(str(e).split()) or type(e).__name__


def image_pixels(img, channels: int, via_rgb: bool) -> torch.Tensor:
    """A Pillow image as uint8 (channels, H, W) at its own size. ``via_rgb``: every image is made RGB
    first and grey is torchvision's weighting of it (the image-folder datamodule's way); otherwise a
    grey image stays as it is and others are made grey by Pillow (the way MNIST's files are grey)."""
    from torchvision.transforms.v2 import functional as F

    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit and float images: scaled to 8 bits
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        from PIL import Image

        img = Image.fromarray(np.clip(a * (255.0 / top), 0, 255).round().astype(np.uint8), "L")
    if channels == 1 and not via_rgb:
        return F.pil_to_tensor(img if img.mode == "L" else img.convert("L"))
    t = F.pil_to_tensor(img.convert("RGB"))
    return F.rgb_to_grayscale(t, 1) if channels == 1 else t


def conform_pixels(x: torch.Tensor, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """(N, C, H, W) pixels (uint8 0-255 or float 0-1) -> float (N, *shape) in [0, 1]: alpha dropped,
    grey made RGB or RGB grey (torchvision's weighting), resized with antialiasing as the
    image-folder datamodule resizes."""
    from torchvision.transforms.v2 import functional as F

    channels, size = shape[0], list(shape[1:])
    if x.dtype == torch.uint8:
        x = x.float().div_(255)
    elif x.dtype.is_floating_point:
        x = x.to(torch.float32, copy=True)  # never the caller's own tensor: it is normalised in place
        if len(x) and (x.min() < 0 or x.max() > 1):
            raise UserError(
                f"{what} holds float pixels from {float(x.min()):.3g} to {float(x.max()):.3g}; give pixels as "
                f"uint8 (0-255) or floats in [0, 1], not already normalised."
            )
    else:
        raise UserError(f"{what} holds {x.dtype} values; give pixels as uint8 (0-255) or floats in [0, 1].")
    c = x.shape[1]
    if c in (2, 4):  # grey or RGB with alpha
        x = x[:, : c - 1]
        c -= 1
    if c != channels:
        if c == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif c == 3 and channels == 1:
            x = F.rgb_to_grayscale(x, 1)
        else:
            raise UserError(f"{what} has {c} channels per image; the model takes {channels} (give grey or RGB images).")
    if list(x.shape[2:]) != size:
        x = F.resize(x, size, antialias=True)
    return x.contiguous()  # a tensor of its own (not a view of an expanded or sliced one)


def image_batch(x, what: str) -> torch.Tensor:
    """An array or tensor of pixels as (N, C, H, W): numpy in Pillow's layout ((H, W), (H, W, C), a
    batch (N, H, W) or (N, H, W, C)), torch in torchvision's ((H, W), (C, H, W), (N, C, H, W))."""
    if isinstance(x, np.ndarray):
        if np.issubdtype(x.dtype, np.integer) and x.size and x.min() >= 0 and x.max() <= 255:
            x = x.astype(np.uint8)  # whole numbers 0-255 (a JSON array of pixels)
        if x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating):
            t = torch.from_numpy(np.ascontiguousarray(x))
        else:
            raise UserError(f"{what} holds {x.dtype} values; give pixels as uint8 (0-255) or floats in [0, 1].")
        if t.ndim == 2:
            return t[None, None]
        if t.ndim == 3:
            return t.permute(2, 0, 1)[None] if t.shape[-1] in (1, 2, 3, 4) else t[:, None]
        if t.ndim == 4:
            return t.permute(0, 3, 1, 2)
    else:
        t = x.detach().cpu()
        if t.ndim == 2:
            return t[None, None]
        if t.ndim == 3:
            return t[None]
        if t.ndim == 4:
            return t
    raise UserError(
        f"{what} has shape {tuple(x.shape)}; give one image ((H, W) or (H, W, C) for numpy, (C, H, W) for "
        f"torch) or a batch ((N, H, W, C) for numpy, (N, C, H, W) for torch)."
    )


def pixel_scaler(spec, options: PredictOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel mean and std the training images were normalised with: the spec's, or for a
    checkpoint from before they were stored, the data config's (image folders) or the training
    split's, recomputed from the dataset where data_dir= says it is now."""
    if spec.pixel_mean and spec.pixel_std:
        return torch.tensor(spec.pixel_mean), torch.tensor(spec.pixel_std)
    channels = spec.shape[0]
    if "mean" in options.data and "std" in options.data:
        return torch.full((channels,), float(options.data["mean"])), torch.full((channels,), float(options.data["std"]))
    dm = build_dataset(dataset_config(options, "retrain it with this version, which stores its pixel statistics"))
    dm.prepare_data()
    dm.setup("predict")
    return dm.pixel_mean.float().cpu(), dm.pixel_std.float().cpu()


def read_images(x, spec, options: PredictOptions) -> Inputs:
    """Image files (one, a folder searched recursively, a glob), Pillow images, arrays or tensors, or a
    list of any of them: converted to the trained channels and size and normalised per channel as
    the training images were."""
    from PIL import Image

    if x is None:
        raise UserError("give the images to label with input=: an image file, a folder of images or a glob.")
    via_rgb = str(options.data.get("_target_", "")).endswith("ImageFolderData")
    channels = spec.shape[0]
    names, errors, pixels = [], [], []
    if nested_numbers(x):
        x = np.asarray(x)
        if x.dtype == np.float64 and np.all(x == np.round(x)) and x.max() > 1:
            x = x.astype(np.int64)  # whole numbers written as floats: pixels 0-255
    if isinstance(x, (str, os.PathLike)):
        files, single = image_files(x)
        items = files
    else:
        single = False
        items = list(x) if isinstance(x, (list, tuple)) else [x]
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            path = str(item)
            img = open_image(path) if os.path.isfile(path) else "no such file"
            if isinstance(img, str) and single:
                raise UserError(
                    f"{path} cannot be read as an image ({img}); give a file Pillow reads (PNG, JPEG, ...)."
                )
            names.append(path)
        elif isinstance(item, Image.Image):
            img = item
            names.append(i)
        elif is_array(item):
            batch = conform_pixels(image_batch(item, "the array"), spec.shape, "the array")
            names.extend(range(len(names), len(names) + len(batch)))
            errors.extend([None] * len(batch))
            pixels.append(batch)
            continue
        else:
            raise UserError(
                f"cannot read a {type(item).__name__} as an image; give paths, Pillow images, arrays or tensors."
            )
        if isinstance(img, str):
            errors.append(img)
            continue
        errors.append(None)
        pixels.append(conform_pixels(image_pixels(img, channels, via_rgb)[None], spec.shape, str(names[-1])))
    if len(errors) and all(e is not None for e in errors):
        raise UserError(
            f"none of the {len(errors)} files could be read as an image (the first, {names[0]}: {errors[0]}); "
            f"give image files Pillow reads (PNG, JPEG, ...)."
        )
    mean, std = pixel_scaler(spec, options)
    x = (torch.cat(pixels) if len(pixels) > 1 else pixels[0]) if pixels else torch.zeros(0, *spec.shape)
    x = x.sub_(mean[:, None, None]).div_(std[:, None, None])  # x is ours: conform_pixels made a new tensor
    key = "path" if all(isinstance(n, str) for n in names) else "index"
    return Inputs(x=x.contiguous(), columns={key: names}, errors=errors, noun="images")


# ---- texts -------------------------------------------------------------------------------------


def text_table(path: str, column: str | None) -> tuple[list, list[str]]:
    """(the file line of each row, the text of each row) of a CSV file: the column ``column``, else
    the column named "text", else the only column."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty; give a CSV file with a header row and one text per row.") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as e:
        raise UserError(f"{path} cannot be read as a UTF-8 CSV file ({' '.join(str(e).split())}).") from None
    texts = table_texts(table, column, path)
    return [i + 2 for i in range(len(table))], texts


def table_texts(table, column: str | None, where: str) -> list[str]:
    columns = [str(c) for c in table.columns]
    if column is None:
        if "text" in columns:
            column = "text"
        elif len(columns) == 1:
            column = columns[0]
        else:
            raise UserError(
                f"{where} has the columns {', '.join(columns)}; say which one holds the text with column=NAME."
            )
    if column not in columns:
        raise UserError(f"{where} has no column '{column}' (column=); its columns are: {', '.join(columns)}.")
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in table[column].tolist()]


def read_texts(x, spec, options: PredictOptions) -> Inputs:
    """Texts for a text classifier: a text file (one example per non-blank line), a CSV file (the
    column ``column=``), strings, or a DataFrame; tokenised, looked up in the stored vocabulary and
    padded exactly as the training articles were (datamodules/text.py)."""
    import pandas as pd

    from datamodules.files import read_text
    from datamodules.text import UNK, encode_padded, tokenize

    if spec.task != "classify":
        raise UserError("predict.py labels texts with a text classifier; this checkpoint is not one.")
    if x is None:
        raise UserError("give the texts to label with input=: a text file (one per line) or a CSV file with column=.")
    where = "the texts"
    if isinstance(x, os.PathLike) or (isinstance(x, str) and os.path.isfile(os.path.expanduser(x))):
        path = os.path.expanduser(str(x))
        if not os.path.isfile(path):
            raise UserError(f"no file at {path}; give a text file (one example per line) or a CSV file with column=.")
        where = path
        if path.lower().endswith((".csv", ".tsv")) or options.column:
            lines, texts = text_table(path, options.column)
        else:
            numbered = [(i + 1, t) for i, t in enumerate(read_text(path, "input").splitlines()) if t.strip()]
            lines, texts = [n for n, _ in numbered], [t for _, t in numbered]
        columns = {"line": lines, "text": texts}
    elif isinstance(x, str):
        texts, columns = [x], {"index": [0], "text": [x]}
    elif isinstance(x, pd.DataFrame):
        texts = table_texts(x, options.column, "the DataFrame")
        columns = {"index": list(x.index), "text": texts}
    elif isinstance(x, (list, tuple, pd.Series, np.ndarray)) and all(isinstance(t, str) for t in list(x)):
        texts = [str(t) for t in list(x)]
        columns = {"index": list(x.index) if isinstance(x, pd.Series) else list(range(len(texts))), "text": texts}
    else:
        raise UserError(
            f"cannot read a {type(x).__name__} as texts; give a string, a list of strings, a DataFrame or a file."
        )
    if not texts:
        raise UserError(f"{where} holds no texts; give at least one.")
    words = [tokenize(t) for t in texts]
    errors = [None if w else "no words in this text" for w in words]
    if all(e is not None for e in errors):
        raise UserError(f"{where} holds no words to classify; give texts with words in them.")
    vocabulary = list(spec.vocabulary)
    if UNK not in vocabulary:
        raise UserError(
            "this checkpoint stores no vocabulary with an <unk> word; use a checkpoint of a text classifier."
        )
    stoi = {w: i for i, w in enumerate(vocabulary)}
    ids = encode_padded([w for w in words if w], stoi, spec.shape[0])
    return Inputs(x=ids, columns=columns, errors=errors, noun="texts")


# ---- series ------------------------------------------------------------------------------------


def future_timestamps(dates, horizon: int):
    """The ``horizon`` timestamps after the last of ``dates`` at the series' own frequency: the one
    pandas infers from its last dates (hourly, daily, weekly, month ends, ...), else the most common
    step between them; None when the dates give no step."""
    import pandas as pd

    dates = pd.DatetimeIndex(dates)
    recent = dates[-min(len(dates), 200) :]
    freq = pd.infer_freq(recent) if len(recent) >= 3 else None
    if freq is None:
        steps = pd.Series(recent).diff().dropna()
        steps = steps[steps > pd.Timedelta(0)]
        if steps.empty:
            return None
        freq = steps.mode().iloc[0]
    return pd.date_range(start=dates[-1], periods=horizon + 1, freq=freq)[1:]


def csv_reader(path: str, spec, options: PredictOptions):
    """data=csv's own reader (``CSVSeries``) for the file at ``path``, with the run's date format
    and fill policy: its sentences name the file, line and column of what it cannot use."""
    from datamodules.series import CSVSeries

    names = list(spec.channel_names)
    return CSVSeries(
        path=path,
        date_column=None,
        date_format=options.data.get("date_format"),
        fill=options.data.get("fill"),
        target=names[-(spec.target_channels or len(names)) :],
        lookback=spec.shape[0],
        horizon=spec.horizon,
    )


def series_from_table(table, spec, options: PredictOptions, where: str, reader):
    """(history (lookback, C) in the file's units, the dates of its rows or None, its row count) from
    a table of text (a CSV file read by ``CSVSeries.read_table``, or a DataFrame): the trained
    columns, dated, ordered and filled as data=csv reads them (``reader``: a ``CSVSeries``)."""
    names = list(spec.channel_names)
    header = [str(c) for c in table.columns]
    if "date_column" in options.data:
        date_column = options.data["date_column"]
    else:  # a dataset whose datamodule names its date column itself (the ETT sets: "date")
        date_column = getattr(reader, "date_column", None) or ("date" if "date" in header else None)
    missing = [c for c in names if c not in header]
    if missing:
        raise UserError(
            f"{where} has no column '{missing[0]}', which the model was trained on (it reads "
            f"{', '.join(names)}); its columns are: {', '.join(header)}."
        )
    dates = None
    if date_column:
        if date_column not in header:
            raise UserError(
                f"{where} has no date column '{date_column}' (the model's data had one); its columns are: "
                f"{', '.join(header)}."
            )
        dates = reader.parse_dates(table[date_column], date_column)
        if dates.isna().any():
            row = int(np.argmax(dates.isna().to_numpy()))
            raise UserError(f"column '{date_column}' of {where} has no date at line {row + 2}; fix the file.")
        order = np.argsort(dates.to_numpy(), kind="stable")
        table, dates = table.iloc[order], dates.iloc[order]
    values = reader.numeric(table, names)
    if dates is not None and reader.fill == "drop":
        dates = dates[table[names].notna().all(axis=1).to_numpy()]
    lookback = spec.shape[0]
    if len(values) < lookback:
        raise UserError(
            f"{where} has {len(values):,} rows of history, fewer than the {lookback:,} (the lookback) the model "
            f"reads before it forecasts; give at least the last {lookback:,} rows."
        )
    return values[-lookback:], (None if dates is None else dates.to_numpy()), len(values)


def read_series(x, spec, options: PredictOptions) -> Inputs:
    """The history to forecast from, in the data's own units: a CSV file with the trained columns
    (read as data=csv reads it: dates, order, fill), a DataFrame of them, or an array/tensor
    (lookback+, C) or (N, lookback+, C); without input, the end of the dataset the model was
    trained on (for a dataset found under data_dir=, or generated). Normalised with the training
    split's scaler (spec.channel_mean, channel_std); the last ``lookback`` rows are the history."""
    import pandas as pd

    lookback, channels = spec.shape
    histories, stamps, steps, columns = [], [], [], {}
    if x is None:
        data = dataset_config(options, "give the CSV file to forecast from with input=FILE")
        dm = build_dataset(data)
        where = f"data={spec.name}"
        if hasattr(dm, "read_table"):
            table = dm.read_table()
            history, dates, n = series_from_table(table, spec, options, dm.csv_path(), dm)
        else:
            values = dm.load()[0]
            if len(values) < lookback:
                raise UserError(f"{where} has {len(values)} rows, fewer than the lookback of {lookback}.")
            history, dates, n = values[-lookback:], None, len(values)
        histories, stamps, steps = [history], [dates], [n]
    elif isinstance(x, (str, os.PathLike)):
        path = os.path.expanduser(str(x))
        if not os.path.isfile(path):
            raise UserError(f"no file at {path}; give a CSV file with the columns the model was trained on.")
        reader = csv_reader(path, spec, options)
        history, dates, n = series_from_table(reader.read_table(), spec, options, path, reader)
        histories, stamps, steps = [history], [dates], [n]
    elif isinstance(x, pd.DataFrame):
        table = x.map(lambda v: np.nan if pd.isna(v) else str(v))  # text, as a CSV file is read
        table.columns = [str(c) for c in table.columns]
        table.index = range(len(table))
        reader = csv_reader("the DataFrame", spec, options)
        history, dates, n = series_from_table(table, spec, options, "the DataFrame", reader)
        histories, stamps, steps = [history], [dates], [n]
    elif is_array(x) or nested_numbers(x):
        a = x.detach().cpu().numpy().astype(np.float64) if isinstance(x, torch.Tensor) else as_array(x, "the series")
        several = a.ndim == 3
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.shape[2] != channels or a.shape[1] < lookback:
            raise UserError(
                f"the array has shape {tuple(a.shape)}; give (rows, {channels}) or (series, rows, {channels}) "
                f"with at least {lookback} rows (the lookback), channels in the order {', '.join(spec.channel_names)}."
            )
        if not np.isfinite(a).all():
            raise UserError("the array holds NaN or infinite values; fill them first.")
        histories = a[:, -lookback:]  # (series, lookback, channels): stacked already
        stamps, steps = [None] * len(a), [a.shape[1]] * len(a)
        columns = {"series": list(range(len(a)))} if several else {}
    else:
        raise UserError(
            f"cannot read a {type(x).__name__} as a series; give a CSV file, a DataFrame, or an array (rows, channels)."
        )
    mean = np.asarray(spec.channel_mean or [0.0] * channels)
    std = np.asarray(spec.channel_std or [1.0] * channels)
    history = np.stack(histories) if isinstance(histories, list) else histories
    series = torch.from_numpy(((history - mean) / std).astype(np.float32))
    future = [None if d is None else future_timestamps(d, spec.horizon) for d in stamps]
    return Inputs(
        x=series,
        columns=columns,
        errors=[None] * len(series),
        extra={"timestamps": future, "rows": steps},
        noun="series",
    )


# ---- users (recommenders) ----------------------------------------------------------------------


def user_ids(x, column: str | None) -> tuple[list[str], str]:
    """The user ids ``x`` names, as text, and what each row is named by: a file (a Path) of one id a
    line, or a CSV whose ``column`` holds them; one id (a string or number); or a list of ids."""
    if isinstance(x, os.PathLike):
        path = os.path.expanduser(str(x))
        if not os.path.isfile(path):
            raise UserError(f"input={path} is not a file; give a file of user ids, one a line.")
        if column:
            import pandas as pd

            try:
                frame = pd.read_csv(path, dtype=str)
            except (ValueError, OSError, pd.errors.ParserError) as e:
                raise UserError(f"{path} cannot be read as a CSV file ({' '.join(str(e).split())}).") from None
            if column not in frame.columns:
                raise UserError(f"{path} has no column '{column}'; its columns are: {', '.join(frame.columns)}.")
            ids = [str(v).strip() for v in frame[column].dropna()]
        else:
            try:
                with open(path, encoding="utf-8-sig") as f:
                    ids = [line.strip() for line in f if line.strip()]
            except (OSError, UnicodeDecodeError) as e:
                raise UserError(f"{path} cannot be read as a UTF-8 text file of user ids ({e}).") from None
        if not ids:
            raise UserError(f"{path} holds no user ids; give one id a line.")
        return ids, "user"
    if isinstance(x, (str, int, np.integer)):
        return [str(x)], "user"
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (str, int, np.integer)) for v in x):
        return [str(v) for v in x], "user"
    raise UserError(
        "a recommender is asked for users: give user=ID (python predict.py ckpt_path=... user=196), input= a file "
        "of user ids, one a line, or in Python an id or a list of ids."
    )


def rated_items(spec, options: PredictOptions) -> dict[str, set[int]]:
    """What each user rated, as item indices of the model: read from ``options.ratings`` (ratings=),
    else from the dataset's own ratings file under today's ``data_dir`` (never a path stored in the
    checkpoint). Items the model does not know are left out (they are never recommended)."""
    from datamodules.ratings import read_ratings

    data = options.data
    if options.ratings:
        path = os.path.expanduser(str(options.ratings))
    else:
        config = dataset_config(
            options,
            "give ratings=FILE, the ratings file whose items each user has rated (they are left out of the "
            "recommendations)",
        )
        dataset = build_dataset(config)
        dataset.prepare_data()
        path = dataset.path
    table = read_ratings(path, data.get("columns") or None, data.get("sep") or None, what="ratings")
    index = {item: k for k, item in enumerate(spec.item_ids)}
    items = table["item"].map(index)
    known = items.notna()
    rated: dict[str, set[int]] = {}
    for user, item in zip(table["user"][known], items[known].astype(int)):
        rated.setdefault(user, set()).add(int(item))
    return rated


def read_users(x, spec, options: PredictOptions) -> Inputs:
    """Users -> every (user, item) pair of the model's items, ``num_items`` rows per user the model
    knows; the items each user rated go to ``extra["rated"]``, to be left out. A user the model was not
    trained on is a row with an error."""
    ids, name = user_ids(x, options.column)
    index = {u: k for k, u in enumerate(spec.user_ids)}
    rated = rated_items(spec, options)
    errors = [
        None if u in index else f"user '{u}' is not one of the {spec.num_users:,} users the model was trained on"
        for u in ids
    ]
    known = [index[u] for u in ids if u in index]
    items = torch.arange(spec.num_items)
    users = torch.tensor(known, dtype=torch.long).repeat_interleave(spec.num_items)
    pairs = torch.stack([users, items.repeat(len(known))], dim=1)
    return Inputs(
        x=pairs,
        columns={name: ids},
        errors=errors,
        extra={"rated": [sorted(rated.get(u, ())) for u in ids if u in index]},
        noun="users",
    )


# ---- audio -------------------------------------------------------------------------------------


def audio_sources(source: str | os.PathLike) -> tuple[list[str], bool]:
    """The clips ``source`` names: one file, the audio files under a folder (recursively, by their
    extension, as data=audio_folder finds them) or a glob's matches, sorted; and whether it named a
    single file."""
    from datamodules.audio import AUDIO_EXTENSIONS, audio_files

    path = os.path.expanduser(str(source))
    if os.path.isfile(path):
        return [path], True
    if os.path.isdir(path):
        files = audio_files(path)
        if not files:
            raise UserError(
                f"the folder {path} has no audio files in it (nor in its sub-folders: {', '.join(AUDIO_EXTENSIONS[:4])}, "
                f"...); give a folder of clips."
            )
        return files, False
    if glob.has_magic(path):
        files = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
        if not files:
            raise UserError(f"no file matches {path}; check the pattern (quote it so the shell leaves it alone).")
        return files, False
    raise UserError(f"no file or folder at {path}; give an audio file (WAV, FLAC, OGG), a folder of clips or a glob.")


def read_audio(x, spec, options: PredictOptions) -> Inputs:
    """Audio files (one, a folder searched recursively, a glob) or waveforms (an array or tensor of
    samples at the model's rate, one clip or a batch), or a list of either: each read as the training
    clips were (datamodules/audio.py: mono, resampled to ``spec.sample_rate``, cut or zero-padded to
    the trained length). The network's own front end computes the features."""
    from datamodules.audio import ClipError, read_clip

    if x is None:
        raise UserError("give the clips to label with input=: an audio file, a folder of clips or a glob.")
    samples = spec.shape[0]
    if isinstance(x, (str, os.PathLike)):
        items, single = audio_sources(x)
    elif is_array(x) or nested_numbers(x):
        wave = torch.as_tensor(np.asarray(x, dtype=np.float32) if not is_array(x) else x).detach().cpu().float()
        if wave.ndim not in (1, 2):
            raise UserError(
                f"the waveforms have shape {tuple(wave.shape)}; give one clip (samples,) or a batch (clips, samples) "
                f"at {spec.sample_rate} Hz."
            )
        wave = wave[None] if wave.ndim == 1 else wave
        fitted = torch.zeros(len(wave), samples)
        fitted[:, : min(samples, wave.shape[1])] = wave[:, :samples]
        return Inputs(fitted, {"index": list(range(len(wave)))}, [None] * len(wave), noun="clips")
    else:
        items, single = list(x), False
    names, errors, waves = [], [], []
    for item in items:
        path = os.path.expanduser(str(item))
        try:
            if not os.path.isfile(path):
                raise ClipError("no such file")
            waves.append(torch.from_numpy(read_clip(path, spec.sample_rate, samples)))
            errors.append(None)
        except ClipError as e:
            if single:
                raise UserError(
                    f"{path} cannot be read as a clip ({e}); give a whole audio file (WAV, FLAC, OGG)."
                ) from None
            errors.append(str(e))
        names.append(path)
    x = torch.stack(waves) if waves else torch.zeros(0, samples)
    return Inputs(x, {"path": names}, errors, noun="clips")
