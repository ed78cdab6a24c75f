"""Tables: rows of named columns (a CSV or Parquet file, or one of scikit-learn's bundled sets) and a
target column to predict, as tensors.

Every column but the target (and ``drop``) is an input. A column whose values are all numbers is
numeric; any other (or one named in ``categorical``) is categorical. Values written as empty, NaN,
``?`` or NA (and pandas' other missing markers) are missing.

- Numeric columns are standardised with the mean and standard deviation of the training split only;
  a missing value becomes the training mean (0 after standardising), and a column with missing
  values anywhere in the file gets an indicator feature (1.0 where the value was missing).
- Categorical columns become indices into an embedding: 1..k for the k values seen in the training
  split (sorted), 0 for "unknown" (a value never seen in training, in validation, test or at
  prediction time). A missing categorical value is a category of its own (``<missing>``).
- The task comes from the target: text, or whole numbers with at most ``MAX_CLASSES`` distinct
  values, is classification (the classes sorted); any other numbers are regression. ``task=``
  overrides. Classification splits are stratified. A regression target is standardised on the
  training split (the spec holds the scaler; metrics are reported on the target's own scale).

The spec publishes all of it as plain data (datamodules/spec.py, "Tables"), and ``encode_rows``
turns any DataFrame with the trained columns into the network's input from the spec alone: what
predict and export use on a checkpoint.
"""

from __future__ import annotations

import math
import os
import tarfile

import numpy as np
import torch

from datamodules.base import TensorDataModule
from datamodules.files import fetch, source_url
from datamodules.spec import DataSpec
from zoo.errors import UserError

TASKS = ("classify", "regress")
MAX_CLASSES = 20  # whole-number targets with at most this many values are classes
MISSING = "<missing>"  # the category of a missing categorical value
# What pandas reads as missing by default (empty, NA, NaN, nan, N/A, null, ...) and these.
NA_VALUES = ["?", "NA", "na", "n/a"]


def _number_of(values) -> np.ndarray | None:
    """The values as float64 when every one that is not missing is a finite number, else None."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(values):
        return None
    numbers = pd.to_numeric(values, errors="coerce")
    present = values.notna()
    if (numbers[present].isna()).any():
        return None
    out = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(out[present.to_numpy()]).all():
        return None
    return out


def text_of(values) -> np.ndarray:
    """A column as text categories (numbers written without a trailing .0), missing as MISSING."""
    out = []
    for v in values.tolist():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(MISSING)
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v).strip())
    return np.array(out, dtype=object)


def _class_label(v) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip()


def encode_rows(frame, spec: DataSpec, where: str = "the table") -> np.ndarray:
    """The network's input (rows, features) float32 for the rows of ``frame`` (a pandas DataFrame
    holding at least the columns the spec names; the target may be absent), from the spec alone:
    numeric values standardised (missing: 0, with its indicator), categories looked up (unseen: 0)."""
    missing = [c for c in dict.fromkeys(spec.columns) if c not in frame.columns]
    if missing:
        raise UserError(
            f"{where} has no column {', '.join(repr(c) for c in missing)}, which the model was trained on; "
            f"give every column of the training file but the target."
        )
    out = np.zeros((len(frame), len(spec.columns)), dtype=np.float32)
    offset = 0
    for i, (column, kind) in enumerate(zip(spec.columns, spec.column_kinds)):
        values = frame[column]
        if kind == "numeric":
            numbers = _number_of(values)
            if numbers is None:
                bad = values[values.notna() & pd_to_numeric(values).isna()]
                raise UserError(
                    f"column {column!r} of {where} must hold numbers, as in training, but has "
                    f"{bad.iloc[0]!r}; fix the value or leave it empty (missing)."
                )
            z = (numbers - spec.column_mean[i]) / spec.column_std[i]
            out[:, i] = np.where(np.isnan(z), 0.0, z)
        elif kind == "missing":
            out[:, i] = values.isna().to_numpy(dtype=np.float32)
        elif kind == "categorical":
            k = spec.cardinalities[i] - 1
            index = {c: j + 1 for j, c in enumerate(spec.categories[offset : offset + k])}
            offset += k
            out[:, i] = [index.get(v, 0) for v in text_of(values)]
        else:
            raise UserError(f"the data spec names a feature kind {kind!r} that tables do not have.")
    return out


def pd_to_numeric(values):
    import pandas as pd

    return pd.to_numeric(values, errors="coerce")


class TableData(TensorDataModule):
    """A table as tensors: x (rows, features) float32 as the spec describes, y the class index (int64)
    or the standardised target (float32). Subclasses return the table from ``frame`` and name it in
    ``where`` (for the sentences)."""

    name = "tabular"

    def __init__(
        self,
        target: str | None = None,
        task: str | None = None,
        categorical: list[str] | None = None,
        drop: list[str] | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 1024,
        seed: int = 0,
        data_on_device: bool = True,
    ):
        super().__init__(batch_size, eval_batch_size, seed, data_on_device)
        self.target = None if target is None else str(target)
        self.task = None if task in (None, "", "auto") else str(task)
        self.categorical = [str(c) for c in (categorical or [])]
        self.drop = [str(c) for c in (drop or [])]
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.split_seed = int(split_seed)
        if self.task is not None and self.task not in TASKS:
            raise UserError(f"data.task must be classify, regress or null (decided from the target), got {task!r}.")
        if not (
            0 < self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1
        ):
            raise UserError(
                f"data.val_fraction and data.test_fraction must be fractions that leave rows to train on, "
                f"got {val_fraction} and {test_fraction}; try 0.2 and 0.2."
            )
        self._spec: DataSpec | None = None
        self.rows: dict[str, np.ndarray] = {}  # the file's row positions of each split (for baselines)

    # ---- what a subclass gives ------------------------------------------------------------------

    def frame(self):
        """The whole table as a pandas DataFrame, missing values as NaN."""
        raise NotImplementedError

    @property
    def where(self) -> str:
        return f"data={self.name}"

    # ---- the spec and the splits ----------------------------------------------------------------

    @property
    def spec(self) -> DataSpec:
        if self._spec is None:
            raise RuntimeError("the table's spec is known after setup()")
        return self._spec

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        frame = self.checked(self.frame())
        target = frame[self.target]
        keep = target.notna().to_numpy()
        if not keep.any():
            raise UserError(
                f"the target column {self.target!r} of {self.where} has no values; name another with data.target=."
            )
        frame, target = frame[keep].reset_index(drop=True), target[keep].reset_index(drop=True)
        task = self.task or self.decide_task(target)
        if task == "classify":
            labels, class_names = self.classes(target)
        else:
            numbers = _number_of(target)
            if numbers is None:
                raise UserError(
                    f"data.task=regress needs a numeric target, but column {self.target!r} of {self.where} holds "
                    f"text such as {target[pd_to_numeric(target).isna()].iloc[0]!r}; use data.task=classify."
                )
            labels, class_names = numbers, ()
        train, val, test = self.split_rows(len(frame), labels if task == "classify" else None)
        inputs = [c for c in frame.columns if c != self.target and c not in self.drop]
        fitted = self.fit(frame, inputs, train)
        mean = std = 0.0
        if task == "regress":
            mean, std = float(labels[train].mean()), float(labels[train].std())
            std = std if std > 1e-12 else 1.0
        self._spec = DataSpec(
            name=self.name,
            kind="table",
            shape=(len(fitted["columns"]),),
            num_classes=len(class_names),
            class_names=tuple(class_names),
            task=task,
            columns=tuple(fitted["columns"]),
            column_kinds=tuple(fitted["kinds"]),
            cardinalities=tuple(fitted["cardinalities"]),
            categories=tuple(fitted["categories"]),
            column_mean=tuple(fitted["mean"]),
            column_std=tuple(fitted["std"]),
            target=self.target,
            target_mean=mean,
            target_std=std,
        )
        x = torch.from_numpy(encode_rows(frame, self._spec, self.where))
        if task == "classify":
            y = torch.from_numpy(labels.astype(np.int64))
        else:
            y = torch.from_numpy(((labels - mean) / std).astype(np.float32))
        self.rows = {"train": train, "val": val, "test": test}
        self.splits = {k: (x[rows], y[rows]) for k, rows in self.rows.items()}

    def checked(self, frame):
        """The table with its column names as text, refused in one sentence when it cannot be learned from."""
        frame = frame.copy()
        frame.columns = [str(c).strip() for c in frame.columns]
        dup = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
        if dup:
            raise UserError(
                f"{self.where} has more than one column named {', '.join(repr(c) for c in dup)}; "
                f"give every column its own name."
            )
        if len(frame) == 0:
            raise UserError(f"{self.where} has a header but no rows; give a table with one row per example.")
        if not self.target:
            raise UserError(
                f"data.target must name the column to predict; {self.where} has: {', '.join(frame.columns)}."
            )
        for key, names in (
            ("data.target", [self.target]),
            ("data.drop", self.drop),
            ("data.categorical", self.categorical),
        ):
            for c in names:
                if c not in frame.columns:
                    raise UserError(
                        f"{self.where} has no column {c!r} ({key}); its columns are: {', '.join(frame.columns)}."
                    )
        if self.target in self.drop:
            raise UserError(f"data.drop names the target {self.target!r}; leave it out of data.drop.")
        for c in frame.columns:
            if c not in self.drop and c != self.target and frame[c].isna().all():
                raise UserError(
                    f"column {c!r} of {self.where} is empty in every row; leave it out with data.drop=[{c}] or fill it in."
                )
        if len([c for c in frame.columns if c != self.target and c not in self.drop]) == 0:
            raise UserError(
                f"{self.where} has no input column besides the target {self.target!r}; give a table with some."
            )
        return frame

    def decide_task(self, target) -> str:
        numbers = _number_of(target)
        if numbers is None:
            return "classify"
        whole = bool(np.all(numbers == np.round(numbers)))
        return "classify" if whole and len(np.unique(numbers)) <= MAX_CLASSES else "regress"

    def classes(self, target) -> tuple[np.ndarray, list[str]]:
        numbers = _number_of(target)
        if numbers is not None:  # numeric classes in numeric order
            values, labels = np.unique(numbers, return_inverse=True)
            names = [_class_label(float(v)) for v in values]
        else:
            values, labels = np.unique(text_of(target).astype(str), return_inverse=True)
            names = [str(v) for v in values]
        if len(names) < 2:
            raise UserError(
                f"the target column {self.target!r} of {self.where} has one class ({names[0]!r}) in every row; "
                f"a classifier needs at least two (or set data.task=regress for a numeric target)."
            )
        return labels, names

    def split_rows(self, n: int, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Train, validation and test row positions drawn by ``split_seed``: stratified by class for
        classification (each split keeps the classes' shares), unless a class has too few rows."""
        from sklearn.model_selection import train_test_split

        rows = np.arange(n)
        n_test = max(1, round(n * self.test_fraction))
        n_val = max(1, round(n * self.val_fraction))
        if n - n_test - n_val < 1:
            raise UserError(
                f"{self.where} has {n} rows with a target, too few for a training, validation and test split."
            )
        stratify = labels
        if labels is not None and np.bincount(labels).min() < 3:
            stratify = None  # a class of one or two rows cannot be in every split
        rest, test = train_test_split(rows, test_size=n_test, random_state=self.split_seed, stratify=stratify)
        train, val = train_test_split(
            rest,
            test_size=n_val,
            random_state=self.split_seed + 1,
            stratify=None if stratify is None else stratify[rest],
        )
        return np.sort(train), np.sort(val), np.sort(test)

    def fit(self, frame, inputs: list[str], train: np.ndarray) -> dict:
        """The preprocessing, fitted on the training rows: each feature's source column and kind, the
        numeric scalers and the categories."""
        out = {k: [] for k in ("columns", "kinds", "cardinalities", "categories", "mean", "std")}

        def add(column: str, kind: str, cardinality: int = 0, mean: float = 0.0, std: float = 1.0) -> None:
            for k, v in zip(
                ("columns", "kinds", "cardinalities", "mean", "std"), (column, kind, cardinality, mean, std)
            ):
                out[k].append(v)

        indicators = []
        for column in inputs:
            values = frame[column]
            numbers = None if column in self.categorical else _number_of(values)
            if numbers is not None:
                seen = numbers[train][~np.isnan(numbers[train])]
                mean = float(seen.mean()) if len(seen) else 0.0
                std = float(seen.std()) if len(seen) else 1.0  # StandardScaler: population std
                add(column, "numeric", mean=mean, std=std if std > 1e-12 else 1.0)
                if np.isnan(numbers).any():
                    indicators.append(column)
            else:
                categories = sorted(set(text_of(values.iloc[train]).tolist()))
                add(column, "categorical", cardinality=len(categories) + 1)
                out["categories"] += categories
        for column in indicators:  # after the values: numeric, indicators and categories read in blocks
            add(column, "missing")
        return out

    def frame_of(self, split: str):
        """The table's rows of a split (what scikit-learn baselines are fitted and scored on)."""
        frame = self.checked(self.frame())
        frame = frame[frame[self.target].notna()].reset_index(drop=True)
        return frame.iloc[self.rows[split]]


class TableFile(TableData):
    """``data=tabular``: a CSV file with a header row (any delimiter pandas' sniffer finds is not
    guessed: ``sep``, default comma) or a Parquet file (``.parquet``/``.pq``), read by pandas."""

    def __init__(self, path: str = "", sep: str = ",", **kwargs):
        super().__init__(**kwargs)
        self.path = os.path.expanduser(str(path or ""))
        self.sep = sep
        self._frame = None

    @property
    def where(self) -> str:
        return self.path

    def frame(self):
        if self._frame is None:
            self._frame = read_table(self.path, self.sep)
        return self._frame


def read_table(path: str, sep: str = ","):
    """A CSV or Parquet file as a DataFrame (values as text or numbers, missing as NaN); a file that
    cannot be one is refused in a sentence."""
    import pandas as pd

    if not path or not os.path.isfile(path):
        raise UserError(f"data.path={path or 'null'} is not a file; give a CSV or Parquet file with a header row.")
    if path.lower().endswith((".parquet", ".pq")):
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a file that is not Parquet
            raise UserError(
                f"{path} cannot be read as a Parquet file ({str(e).splitlines()[0]}); check that it is one."
            ) from None
        names = [str(c).strip() for c in frame.columns]
        if len(set(names)) < len(names):
            dup = sorted({c for c in names if names.count(c) > 1})
            raise UserError(
                f"{path} has more than one column named {', '.join(map(repr, dup))}; give every column its own name."
            )
        return frame
    try:
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, sep=sep, encoding="utf-8-sig")
        frame = pd.read_csv(
            path,
            dtype=str,
            sep=sep,
            encoding="utf-8-sig",
            na_values=NA_VALUES,
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty; give a CSV file with a header row and one row per example.") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} cannot be read as a UTF-8 CSV file ({e}); check that it is one.") from None
    except pd.errors.ParserError as e:
        raise UserError(
            f"{path} cannot be read as a CSV file ({' '.join(str(e).split())}); check that it is one."
        ) from None
    names = [str(c).strip() for c in header.iloc[0].tolist()]
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise UserError(
            f"{path} has more than one column named {', '.join(map(repr, dup))}; give every column its own name."
        )
    frame.columns = names
    return frame.dropna(how="all").reset_index(drop=True)  # blank lines


SKLEARN_SETS = {"breast_cancer": "load_breast_cancer", "wine": "load_wine", "diabetes": "load_diabetes"}


class BundledTable(TableData):
    """scikit-learn's bundled tables, offline: ``breast_cancer`` (569 tumours, 30 measurements,
    malignant or benign), ``wine`` (178 wines, 13 measurements, 3 cultivars) and ``diabetes`` (442
    patients, 10 measurements, a disease progression score: regression)."""

    def __init__(self, name: str = "breast_cancer", target: str = "target", **kwargs):
        if name not in SKLEARN_SETS:
            raise UserError(f"data.name must be one of {', '.join(SKLEARN_SETS)}, got {name!r}.")
        super().__init__(target=target, **kwargs)
        self.name = name

    def frame(self):
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, SKLEARN_SETS[self.name])(as_frame=True)
        frame = bunch.frame.copy()
        if self.name != "diabetes":  # the classes by name, not 0/1/2
            frame["target"] = [str(bunch.target_names[i]) for i in bunch.target]
        return frame


CALIFORNIA_URL = "https://ndownloader.figshare.com/files/5976036"
CALIFORNIA_SHA256 = "aaa5c9a6afe2225cc2aed2723682ae403280c4a3695a2ddda4ffb5d8215ea681"
CALIFORNIA_MEMBER = "CaliforniaHousing/cal_housing.data"
# The archive's columns, and the features scikit-learn's fetch_california_housing derives from them.
CALIFORNIA_RAW = [
    "longitude",
    "latitude",
    "housingMedianAge",
    "totalRooms",
    "totalBedrooms",
    "population",
    "households",
    "medianIncome",
    "medianHouseValue",
]


class CaliforniaHousing(TableData):
    """California housing (Pace and Barry 1997; scikit-learn's fetch_california_housing): 20,640
    block groups, 8 features, the median house value in $100,000 (regression). Downloaded once
    (``cal_housing.tgz``, from figshare or ``mirror``) into ``data_dir`` and checked against its
    SHA-256; the features are scikit-learn's (rooms, bedrooms and occupancy per household)."""

    name = "california_housing"

    def __init__(
        self,
        data_dir: str = "data",
        url: str = CALIFORNIA_URL,
        checksum: str | None = f"sha256:{CALIFORNIA_SHA256}",
        mirror: str | None = None,
        download: bool = True,
        target: str = "MedHouseVal",
        **kwargs,
    ):
        super().__init__(target=target, **kwargs)
        self.data_dir, self.url, self.checksum = os.path.expanduser(str(data_dir)), url, checksum
        self.mirror, self.download = mirror, download

    @property
    def archive(self) -> str:
        return os.path.join(self.data_dir, "california_housing", "cal_housing.tgz")

    def prepare_data(self) -> None:
        fetch(
            source_url(self.mirror, self.url, "cal_housing.tgz"),
            self.archive,
            self.checksum,
            name="cal_housing.tgz",
            key="data.checksum",
            offline="use data=diabetes, a regression table bundled with scikit-learn",
            download=self.download,
        )

    def frame(self):
        import pandas as pd

        self.prepare_data()
        try:
            with tarfile.open(self.archive, mode="r:gz") as tar:  # one member read as text: nothing extracted
                member = tar.extractfile(CALIFORNIA_MEMBER)
                if member is None:
                    raise KeyError(CALIFORNIA_MEMBER)
                raw = pd.read_csv(member, header=None, names=CALIFORNIA_RAW)
        except (tarfile.TarError, KeyError, OSError, ValueError, pd.errors.ParserError) as e:
            raise UserError(
                f"{self.archive} is not the California housing archive ({type(e).__name__}: {e}); "
                f"delete it to download it afresh."
            ) from None
        households = raw["households"]
        return pd.DataFrame(
            {
                "MedInc": raw["medianIncome"],
                "HouseAge": raw["housingMedianAge"],
                "AveRooms": raw["totalRooms"] / households,
                "AveBedrms": raw["totalBedrooms"] / households,
                "Population": raw["population"],
                "AveOccup": raw["population"] / households,
                "Latitude": raw["latitude"],
                "Longitude": raw["longitude"],
                "MedHouseVal": raw["medianHouseValue"] / 100_000,
            }
        )
