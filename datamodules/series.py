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

import csv
import math
import os

import numpy as np
import torch

from datamodules.base import TensorDataModule
from datamodules.files import fetch, source_url
from datamodules.spec import DataSpec
from datamodules.windows import WindowedSplits, forecast_windows
from zoo.errors import UserError

FEATURES = ("M", "S", "MS")  # multivariate in and out; univariate (the target alone); multivariate in, target out


class SeriesData(WindowedSplits, TensorDataModule):
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


def _parse_dates(values: list[str], path: str, column: str) -> np.ndarray:
    try:
        return np.array(values, dtype="datetime64[s]")
    except ValueError:
        bad = next(v for v in values if not _is_date(v))
        raise UserError(
            f"column '{column}' of {path} has '{bad}', which is not an ISO date (YYYY-MM-DD[ HH:MM[:SS]]); "
            f"fix the file, or set data.date_column=null to take the rows in file order."
        ) from None


def _is_date(value: str) -> bool:
    try:
        np.datetime64(value, "s")
        return True
    except ValueError:
        return False


class CSVSeries(SeriesData):
    """Any CSV file with a header row: an optional date column, numeric feature columns and target
    column(s). Rows are put in date order; split 70/10/20 chronologically by default."""

    name = "csv"

    def __init__(
        self,
        path: str = "",
        date_column: str | None = "date",
        columns: list[str] | None = None,
        target: str | list[str] = "OT",
        features: str = "M",
        train_fraction: float = 0.7,
        val_fraction: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.path = os.path.expanduser(str(path))
        self.date_column = date_column or None
        self.columns = list(columns) if columns else None
        self.target = [target] if isinstance(target, str) else list(target or [])
        self.features = str(features).upper()
        self.train_fraction, self.val_fraction = float(train_fraction), float(val_fraction)
        if self.features not in FEATURES:
            raise UserError(
                f"data.features must be M (all channels in and out), S (the target alone) or MS "
                f"(all in, the target out), got {features!r}."
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

    def read_table(self) -> tuple[list[str], list[list[str]]]:
        path = self.csv_path()
        if not os.path.isfile(path):
            raise UserError(f"data.path={path} is not a file; give the path of a CSV file with a header row.")
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                rows = [r for r in csv.reader(f) if r]
        except (UnicodeDecodeError, csv.Error) as e:
            raise UserError(f"{path} cannot be read as a UTF-8 CSV file ({e}); check that it is one.") from None
        if len(rows) < 2:
            raise UserError(
                f"{path} has {'no header row' if not rows else 'a header but no data rows'}; "
                f"give a CSV file with a header row and one row per time step."
            )
        header = [h.strip() for h in rows[0]]
        short = next((i for i, r in enumerate(rows[1:], 2) if len(r) != len(header)), None)
        if short is not None:
            raise UserError(
                f"line {short} of {path} has {len(rows[short - 1])} fields but the header has "
                f"{len(header)}; every row needs a value in every column."
            )
        return header, rows[1:]

    def select(self, header: list[str]) -> tuple[list[str], list[str]]:
        """(the input columns in channel order, the target columns): targets last."""
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
        columns = self.columns or [h for h in header if h != self.date_column]
        if self.features == "S":
            return list(self.target), list(self.target)
        if self.features == "M":
            return columns, columns  # every channel is forecast, in the file's order
        return [c for c in columns if c not in self.target] + list(self.target), list(self.target)

    def load(self):
        header, rows = self.read_table()
        inputs, targets = self.select(header)
        if self.date_column:
            d = header.index(self.date_column)
            dates = _parse_dates([r[d].strip() for r in rows], self.csv_path(), self.date_column)
            order = np.argsort(dates, kind="stable")
            rows = [rows[i] for i in order.tolist()] if (order != np.arange(len(rows))).any() else rows
        index = [header.index(c) for c in inputs]
        values = self.numeric(rows, index, inputs)
        return values, inputs, len(targets), self.borders(len(values))

    def numeric(self, rows: list[list[str]], index: list[int], names: list[str]) -> np.ndarray:
        try:
            values = np.array([[r[i] for i in index] for r in rows], dtype=np.float64)
        except ValueError:
            values = None
        if values is None or not np.isfinite(values).all():
            for line, r in enumerate(rows, 2):
                for i, name in zip(index, names):
                    try:
                        ok = math.isfinite(float(r[i]))
                    except ValueError:
                        ok = False
                    if not ok:
                        raise UserError(
                            f"column '{name}' of {self.csv_path()} is not numeric (line {line} has {r[i]!r}); fix the "
                            f"file or leave the column out with data.columns=[...]."
                        )
        return values

    def borders(self, n: int) -> list[tuple[int, int]]:
        return self.fractional_borders(n, self.train_fraction, self.val_fraction)


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
        header, rows = super().read_table()
        if header != ETT_COLUMNS:
            raise UserError(
                f"{self.csv_path()} is not an ETT file (its columns are {', '.join(header)}, expected "
                f"{', '.join(ETT_COLUMNS)}); delete it to download it afresh."
            )
        return header, rows

    def borders(self, n: int) -> list[tuple[int, int]]:
        train, val, test = self.months
        if n < train + val + test:
            raise UserError(
                f"{self.csv_path()} has {n:,} rows; the ETT protocol needs {train + val + test:,} "
                f"(12 + 4 + 4 months); delete it to download it afresh."
            )
        return [(0, train), (train - self.lookback, train + val), (train + val - self.lookback, train + val + test)]
