"""Multichannel time series as forecasting windows: the ``lookback`` steps before a point are the
input, the ``horizon`` steps after it the target.

The splits are chronological. Each split's rows overlap the previous split by ``lookback`` rows, so
its first window forecasts the first step after the previous split (the protocol of Informer,
Autoformer, DLinear and PatchTST). Values are z-normalised with the mean and standard deviation of
the training rows only; the scaler is published in the spec so errors can also be reported on the
original scale. Windows are views of one tensor (``unfold``): nothing is copied until a batch is
taken by indexing.

Channel order: the target channels come last, so a network's output is the last
``spec.target_channels`` channels of its input, ``spec.horizon`` steps on.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable

import numpy as np
import torch

from datamodules.base import TensorDataModule
from datamodules.files import fetch, source_url
from datamodules.spec import DataSpec
from datamodules.windows import WindowedSplits, forecast_windows
from zoo.errors import UserError

FEATURES = ("M", "S", "MS")  # multivariate in and out; univariate (the target alone); multivariate in, target out


class SeriesData(WindowedSplits, TensorDataModule):
    kind = "series"  # the DataSpec kind it publishes, known before any file is read
    """Windows over a (T, C) array. Subclasses return the array, its channel names, how many of the
    last channels are targets, and the row ranges of the three splits from ``load``."""

    name = "series"

    def __init__(
        self,
        lookback: int = 96,
        horizon: int = 96,
        batch_size: int = 32,
        eval_batch_size: int = 512,
        seed: int = 0,
        data_on_device: bool = True,
    ):
        super().__init__(batch_size, eval_batch_size, seed, data_on_device)
        self.lookback, self.horizon = int(lookback), int(horizon)
        if self.lookback < 1 or self.horizon < 1:
            raise UserError(
                f"data.lookback and data.horizon must be positive whole numbers, got {lookback} and "
                f"{horizon}; try data.lookback=96 data.horizon=96."
            )
        self.channel_names: list[str] = []
        self.n_targets = 0
        self.mean = self.std = np.zeros(0)  # the training split's scaler, once set up

    def load(self) -> tuple[np.ndarray, list[str], int, list[tuple[int, int]]]:
        """(values (T, C) float64, channel names, number of target channels (the last ones),
        [(start, end) rows of train, val, test] where val and test start ``lookback`` rows early)."""
        raise NotImplementedError

    def fractional_borders(self, n: int, train: float, val: float) -> list[tuple[int, int]]:
        """Autoformer's custom-dataset split: the first ``train`` fraction, the next ``val``, the rest."""
        n_train, n_test = int(n * train), int(n * (1 - train - val))
        n_val = n - n_train - n_test
        return [(0, n_train), (n_train - self.lookback, n_train + n_val), (n - n_test - self.lookback, n)]

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            name=self.name,
            kind="series",
            shape=(self.lookback, len(self.channel_names)),
            task="forecast",
            horizon=self.horizon,
            target_channels=self.n_targets,
            channel_names=tuple(self.channel_names),
            channel_mean=tuple(float(v) for v in self.mean),
            channel_std=tuple(float(v) for v in self.std),
        )

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        values, names, n_targets, borders = self.load()
        window = self.lookback + self.horizon
        for split, (start, end) in zip(("train", "val", "test"), borders):
            if start < 0 or end - start < window:
                raise UserError(
                    f"the {self.name} series has {len(values):,} rows, too few for one {split} window of data.lookback="
                    f"{self.lookback} + data.horizon={self.horizon} steps ({split} has {max(0, end - max(start, 0)):,} rows); "
                    f"use a shorter lookback or horizon, or a longer series."
                )
        train = values[borders[0][0] : borders[0][1]]
        mean, std = train.mean(axis=0), train.std(axis=0)  # StandardScaler: population std, train rows only
        std = np.where(std > 1e-12, std, 1.0)  # a constant channel is only centred
        series = torch.from_numpy((values - mean) / std).float()
        self.channel_names, self.n_targets, self.mean, self.std = names, n_targets, mean, std
        self.cut({split: series[start:end] for split, (start, end) in zip(("train", "val", "test"), borders)})

    def windows(self, split: str, base: torch.Tensor):
        return forecast_windows(base, self.lookback, self.horizon, self.n_targets)


class SineData(SeriesData):
    """Synthetic: ``channels`` noisy sums of two sines each (periods between 8 and 40 steps, their own
    amplitudes and phases), ``length`` steps, split 70/10/20. Generated, so forecasting runs offline in
    seconds; the series is the same for every ``seed`` (only the shuffle order changes)."""

    name = "sine"

    def __init__(
        self, channels: int = 3, length: int = 3000, noise: float = 0.1, lookback: int = 64, horizon: int = 16, **kwargs
    ):
        super().__init__(lookback=lookback, horizon=horizon, **kwargs)
        self.channels, self.length, self.noise = int(channels), int(length), float(noise)
        if self.channels < 1 or self.length < 1 or self.noise < 0:
            raise UserError(
                f"data.channels and data.length must be positive and data.noise not negative, got "
                f"{channels}, {length} and {noise}."
            )

    def load(self):
        rng = np.random.default_rng(0)
        t = np.arange(self.length)[:, None]
        periods = rng.uniform(8, 40, (2, self.channels))
        amplitudes = rng.uniform(0.5, 1.5, (2, self.channels))
        phases = rng.uniform(0, 2 * math.pi, (2, self.channels))
        values = sum(a * np.sin(2 * math.pi * t / p + f) for a, p, f in zip(amplitudes, periods, phases))
        values = values + self.noise * rng.standard_normal(values.shape)
        names = [f"sine{i}" for i in range(self.channels)]
        return values, names, self.channels, self.fractional_borders(self.length, 0.7, 0.1)


# The largest magnitude a float32 holds: the series is trained as float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_text(path: str) -> None:
    """Refuse a CSV file holding NUL bytes (a binary or damaged file), naming the line and column."""
    with open(path, "rb") as f:
        raw = f.read()
    at = raw.find(b"\x00")
    if at < 0:
        return
    start = raw.rfind(b"\n", 0, at) + 1
    line = raw.count(b"\n", 0, at) + 1
    field = raw[start:at].count(b",")
    header = raw[: raw.find(b"\n")].decode("utf-8", "replace").lstrip("\ufeff").split(",")
    column = f"column '{header[field].strip()}'" if field < len(header) else f"field {field + 1}"
    raise UserError(
        f"{path} has a NUL byte at line {line}, {column}: it is binary or damaged, not CSV text; export it again as "
        f"text or fix that line."
    )


FILLS = ("ffill", "interpolate", "zero", "drop")  # data.fill: what to do with missing values (null: refuse)


def _line(row: int) -> int:
    """The file line of a data row (0-based): the header is line 1."""
    return row + 2


class CSVSeries(SeriesData):
    """Any CSV file with a header row, read by pandas: an optional date column, numeric feature columns
    and target column(s). Dates in any format pandas recognises (ISO, ``1990/1/1 0:00``, ``01.02.2020``;
    ``date_format`` for any other, in strftime codes); rows are put in date order. The date column,
    and with ``date_column=null`` any column holding dates, is never a feature. Missing values are an
    error naming their line and column, unless ``fill`` says what to do with them. Split 70/10/20
    chronologically by default."""

    name = "csv"

    def __init__(
        self,
        path: str = "",
        date_column: str | None = "date",
        date_format: str | None = None,
        columns: list[str] | None = None,
        target: str | list[str] = "OT",
        features: str = "M",
        fill: str | None = None,
        train_fraction: float = 0.7,
        val_fraction: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.path = os.path.expanduser(str(path))
        self.date_column = date_column or None
        self.date_format = date_format or None
        self.columns = list(columns) if columns else None
        self.target = [target] if isinstance(target, str) else list(target or [])
        self.features = str(features).upper()
        self.fill = fill or None
        self.train_fraction, self.val_fraction = float(train_fraction), float(val_fraction)
        if self.features not in FEATURES:
            raise UserError(
                f"data.features must be M (all channels in and out), S (the target alone) or MS "
                f"(all in, the target out), got {features!r}."
            )
        if self.fill is not None and self.fill not in FILLS:
            raise UserError(
                f"data.fill must be null (missing values are an error) or one of {', '.join(FILLS)}, got {fill!r}."
            )
        if not self.target:
            raise UserError("data.target must name at least one column to forecast, e.g. data.target=OT.")
        if not (
            0 < self.train_fraction < 1 and 0 < self.val_fraction < 1 and self.train_fraction + self.val_fraction < 1
        ):
            raise UserError(
                f"data.train_fraction and data.val_fraction must be fractions that leave a test split, "
                f"got {train_fraction} and {val_fraction}; try 0.7 and 0.1."
            )

    def csv_path(self) -> str:
        return self.path

    def read_table(self):
        """The file as a DataFrame of text (missing values as NaN), indexed by data row (0 = line 2),
        blank lines left out."""
        import pandas as pd

        path = self.csv_path()
        if not os.path.isfile(path):
            raise UserError(f"data.path={path} is not a file; give the path of a CSV file with a header row.")
        check_text(path)
        try:
            # dtype=str: values are checked (and their lines named) column by column below; blank lines
            # are kept while reading so that a row's index is its line in the file.
            table = pd.read_csv(path, dtype=str, encoding="utf-8-sig", skip_blank_lines=False)
        except pd.errors.EmptyDataError:
            table = None
        except UnicodeDecodeError as e:
            raise UserError(f"{path} cannot be read as a UTF-8 CSV file ({e}); check that it is one.") from None
        except pd.errors.ParserError as e:
            m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
            if m:
                raise UserError(
                    f"line {m.group(2)} of {path} has {m.group(3)} fields but the header has {m.group(1)}; "
                    f"every row needs a value in every column."
                ) from None
            raise UserError(
                f"{path} cannot be read as a CSV file ({' '.join(str(e).split())}); check that it is one."
            ) from None
        if table is None or table.columns.empty:
            raise UserError(f"{path} has no header row; give a CSV file with a header row and one row per time step.")
        header = [
            str(c).strip() for c in pd.read_csv(path, nrows=1, header=None, dtype=str, encoding="utf-8-sig").iloc[0]
        ]
        for i, name in enumerate(header):
            if header.index(name) != i:
                raise UserError(
                    f"{path} names two columns '{name}' (columns {header.index(name) + 1} and {i + 1} of its header); "
                    f"rename one, so that data.target and data.columns each name one column."
                )
        table.columns = [str(c).strip() for c in table.columns]
        table = table[table.notna().any(axis=1)]  # blank lines
        if table.empty:
            raise UserError(
                f"{path} has a header but no data rows; give a CSV file with a header row and one row per time step."
            )
        return table

    def select(
        self, header: list[str], date_like: Callable[[str], bool] = lambda c: False
    ) -> tuple[list[str], list[str]]:
        """(the input columns in channel order, the target columns): targets last. A column of dates
        (``date_like``) is not taken as a feature unless named in data.columns."""
        path = self.csv_path()

        def need(column: str, key: str) -> None:
            if column not in header:
                raise UserError(f"{path} has no column '{column}' ({key}); its columns are: {', '.join(header)}.")

        if self.date_column:
            need(self.date_column, "data.date_column")
        for c in self.target:
            need(c, "data.target")
        for c in self.columns or []:
            need(c, "data.columns")
        columns = self.columns or [
            h for h in header if h != self.date_column and (h in self.target or not date_like(h))
        ]
        if self.features == "S":
            return list(self.target), list(self.target)
        if self.features == "M":
            return columns, columns  # every channel is forecast, in the file's order
        return [c for c in columns if c not in self.target] + list(self.target), list(self.target)

    def parse_dates(self, text, column: str):
        """A column of date text -> datetime64 values in their true order, or a sentence. With
        ``data.date_format`` exactly that format. Otherwise pandas' own parsing, with two guards:
        dates written day and month first (``31/12/2016``, ``31.12.2016``, ``01-02-2016``) are read
        both ways, and the way that reads every value is taken (neither alone: data.date_format is
        asked for, never a guess); dates with time-zone offsets are compared as instants (UTC), and
        a column mixing dates with and without an offset is refused. A value it cannot read is named."""
        import pandas as pd

        values = text.dropna().astype(str).str.strip()
        zoned = values.str.contains(r"(?:[+-]\d{2}:?\d{2}|Z|UTC|GMT)$", regex=True)
        if zoned.any() and not zoned.all():
            with_zone, without = values[zoned], values[~zoned]
            raise UserError(
                f"column '{column}' of {self.csv_path()} mixes dates with a time zone ('{with_zone.iloc[0]}', line "
                f"{_line(with_zone.index[0])}) and without one ('{without.iloc[0]}', line {_line(without.index[0])}), "
                f"whose order cannot be told; give every date its offset (e.g. +01:00), or none."
            )
        utc = bool(len(values)) and bool(zoned.all())

        def parse(**how):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "could not infer format", "dayfirst": decided here
                return pd.to_datetime(text, errors="coerce", utc=utc, **how)

        if self.date_format:
            parsed = parse(format=self.date_format)
        elif values.str.match(r"^\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}(?!\d)").any():
            month, day = parse(format="mixed", dayfirst=False), parse(format="mixed", dayfirst=True)
            read_month, read_day = month.notna().sum(), day.notna().sum()
            differ = (month != day) & month.notna() & day.notna()
            if read_month == read_day == len(values) and differ.any():
                row = differ.idxmax()
                raise UserError(
                    f"column '{column}' of {self.csv_path()} has dates that read day first and month first alike "
                    f"('{text[row]}' at line {_line(row)}: {day[row]:%d %B %Y} or {month[row]:%d %B %Y}); say which "
                    f"with data.date_format, e.g. data.date_format='%d/%m/%Y %H:%M' (day first) or "
                    f"'%m/%d/%Y %H:%M' (month first)."
                )
            parsed = day if read_day > read_month else month
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    parsed = pd.to_datetime(text, utc=utc)
            except (ValueError, TypeError, OverflowError):
                parsed = parse(format="mixed")
        bad = text[parsed.isna() & text.notna()]
        if bad.empty:
            if utc:
                parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)  # instants, in their true order
            return parsed
        how = (
            f"is not a date in data.date_format={self.date_format}"
            if self.date_format
            else "which is not a date pandas recognises"
        )
        raise UserError(
            f"column '{column}' of {self.csv_path()} has '{bad.iloc[0]}' (line {_line(bad.index[0])}), {how}; "
            f"give the format with data.date_format (e.g. %d/%m/%Y %H:%M), fix the file, or set "
            f"data.date_column=null to take the rows in file order."
        )

    def is_dates(self, text) -> bool:
        """Whether a text column holds dates (and not numbers): such a column is never a feature."""
        import pandas as pd

        values = text.dropna()
        if values.empty or pd.to_numeric(values, errors="coerce").notna().all():
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(pd.to_datetime(values, format="mixed", errors="coerce").notna().all())

    def load(self):
        table = self.read_table()
        inputs, targets = self.select(list(table.columns), lambda c: self.is_dates(table[c]))
        if self.date_column:
            dates = self.parse_dates(table[self.date_column], self.date_column)
            missing = dates.isna()
            if missing.any():
                raise UserError(
                    f"column '{self.date_column}' of {self.csv_path()} has no date at line {_line(missing.idxmax())}; "
                    f"fix the file, or set data.date_column=null to take the rows in file order."
                )
            table = table.iloc[np.argsort(dates.to_numpy(), kind="stable")]
        values = self.numeric(table, inputs)
        return values, inputs, len(targets), self.borders(len(values))

    def numeric(self, table, names: list[str]) -> np.ndarray:
        """The columns ``names`` as numbers (T, C), rows in the table's order; text that is not a number
        is named, and so are missing values unless ``fill`` says what to do with them."""
        import pandas as pd

        frame = pd.DataFrame(index=table.index)
        for name in names:
            text = table[name]
            numbers = pd.to_numeric(text.str.strip(), errors="coerce")
            bad = text.notna() & ~np.isfinite(numbers.fillna(0.0).to_numpy())
            bad |= text.notna() & numbers.isna()
            huge = text.notna() & (numbers.abs().fillna(0.0) > FLOAT32_MAX) & ~bad
            if huge.any():
                row = huge.idxmax()
                raise UserError(
                    f"column '{name}' of {self.csv_path()} has {text[row].strip()!r} at line {_line(row)}, beyond what a "
                    f"float32 holds (about ±3.4e38); rescale the column in the file or leave it out with data.columns=[...]."
                )
            if bad.any():
                row = bad.idxmax()
                raise UserError(
                    f"column '{name}' of {self.csv_path()} is not numeric (line {_line(row)} has {text[row]!r}); fix the "
                    f"file or leave the column out with data.columns=[...]."
                )
            frame[name] = numbers
        missing = frame.isna()
        if missing.to_numpy().any():
            if self.fill is None:
                rows = missing.any(axis=1)
                row = rows.idxmax()
                column = next(c for c in names if missing.at[row, c])
                more = int(missing.to_numpy().sum()) - 1
                raise UserError(
                    f"column '{column}' of {self.csv_path()} has no value at line {_line(row)}"
                    + (f" and {more:,} more missing value{'s' if more != 1 else ''}" if more else "")
                    + "; fill the gaps with data.fill=ffill (the last value before), interpolate, zero or drop "
                    "(leave those rows out), or fix the file."
                )
            frame = fill_missing(frame, self.fill)
        return frame.to_numpy(dtype=np.float64)

    def borders(self, n: int) -> list[tuple[int, int]]:
        return self.fractional_borders(n, self.train_fraction, self.val_fraction)


def fill_missing(frame, policy: str):
    """data.fill: ``ffill`` carries the last value forward (a gap at the start takes the first value
    after it), ``interpolate`` draws a straight line between the values around a gap (the ends: the
    nearest value), ``zero`` writes 0, ``drop`` leaves out every row with a missing value."""
    if policy == "ffill":
        return frame.ffill().bfill()
    if policy == "interpolate":
        return frame.interpolate(method="linear", limit_direction="both")
    if policy == "zero":
        return frame.fillna(0.0)
    return frame.dropna()


ETT_COLUMNS = ["date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
ETT_MD5 = {
    "ETTh1": "8381763947c85f4be6ac456c508460d6",
    "ETTh2": "51a229a3fc13579dd939364fefe9c7ab",
    "ETTm1": "82d6bd89109c63d075d99c1077b33f38",
    "ETTm2": "7687e47825335860bf58bccb31be0c56",
}


class ETTData(CSVSeries):
    """Electricity Transformer Temperature (Zhou et al., Informer): ETTh1/ETTh2 hourly, ETTm1/ETTm2 every
    15 minutes, 7 channels, target OT (oil temperature). The published benchmarks' protocol: the first
    12 months train, the next 4 validate, the next 4 test (30-day months: 8,640/2,880/2,880 hours, x4 for
    the 15-minute sets), z-normalisation fit on the training months, every window with stride 1.
    ``checksum="known"`` is the MD5 of the published file of that name."""

    URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{name}.csv"

    def __init__(
        self,
        name: str = "ETTh1",
        data_dir: str = "data",
        url: str | None = None,
        checksum: str | None = "known",
        mirror: str | None = None,
        download: bool = True,
        lookback: int = 96,
        horizon: int = 96,
        features: str = "M",
        target: str = "OT",
        **kwargs,
    ):
        if name not in ETT_MD5:
            raise UserError(f"data.name must be one of {', '.join(ETT_MD5)}, got {name!r}.")
        super().__init__(
            path="", date_column="date", features=features, target=target, lookback=lookback, horizon=horizon, **kwargs
        )
        self.name, self.file = name.lower(), name
        self.data_dir, self.url = os.path.expanduser(str(data_dir)), url or self.URL.format(name=name)
        self.checksum = f"md5:{ETT_MD5[name]}" if checksum == "known" else checksum
        self.mirror, self.download = mirror, download
        steps_per_month = 30 * 24 * (4 if name.startswith("ETTm") else 1)
        self.months = (12 * steps_per_month, 4 * steps_per_month, 4 * steps_per_month)

    def csv_path(self) -> str:
        return os.path.join(self.data_dir, "ETT", f"{self.file}.csv")

    def prepare_data(self) -> None:
        fetch(
            source_url(self.mirror, self.url, f"{self.file}.csv"),
            self.csv_path(),
            self.checksum,
            name=f"{self.file}.csv",
            key="data.checksum",
            offline="use data=sine, which is generated offline",
            download=self.download,
        )

    def read_table(self):
        self.prepare_data()
        table = super().read_table()
        if list(table.columns) != ETT_COLUMNS:
            raise UserError(
                f"{self.csv_path()} is not an ETT file (its columns are {', '.join(table.columns)}, expected "
                f"{', '.join(ETT_COLUMNS)}); delete it to download it afresh."
            )
        return table

    def borders(self, n: int) -> list[tuple[int, int]]:
        train, val, test = self.months
        if n < train + val + test:
            raise UserError(
                f"{self.csv_path()} has {n:,} rows; the ETT protocol needs {train + val + test:,} "
                f"(12 + 4 + 4 months); delete it to download it afresh."
            )
        return [(0, train), (train - self.lookback, train + val), (train + val - self.lookback, train + val + test)]
