"""User-item ratings for recommenders: one (user, item) pair in, its rating out.

A ratings file is read by pandas: MovieLens' ``u.data`` (tab-separated, no header: user, item,
rating, timestamp), ``ratings.csv`` of the later MovieLens sets (``userId,movieId,rating,timestamp``),
or any CSV whose header names its columns (``data.columns=[user, item, rating]`` or with a
timestamp). Ids are kept as the file's text, of any kind (numbers, names, ISBNs).

Splits: ``random`` (a fraction of the ratings for test, a fraction of the rest for validation),
``leave_last`` (per user, the latest rating by timestamp for test and the one before for validation:
the protocol of NCF), or ``files`` (``train_path`` and ``test_path``, e.g. MovieLens' u1-u5
``.base``/``.test``; validation is carved at random from the training file, so nothing is tuned on
test). Users and items are indexed by the training split alone: one seen only in validation or test
gets the index ``num_users`` (``num_items``), which networks treat as unknown (no vector, no bias),
and the task counts such ratings (``test/unseen_users``, ``test/unseen_items``).

Validation and test batches carry, beside each held-out rating, its item and 99 items the user never
rated (anywhere in the data), sampled once with a fixed seed, so that every model and seed is ranked
against the same candidates: HR@10 and NDCG@10 by the NCF protocol (He et al. 2017).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile

import numpy as np
import torch

from datamodules.base import TensorDataModule
from datamodules.files import fetch, source_url
from datamodules.spec import DataSpec
from zoo.errors import UserError

SPLITS = ("random", "leave_last", "files")
ROLES = ("user", "item", "rating", "timestamp")
# Header names recognised without data.columns (compared in lower case).
KNOWN_NAMES = {
    "user": ("userid", "user_id", "user", "uid", "user-id", "users"),
    "item": ("itemid", "item_id", "item", "movieid", "movie_id", "movie", "iid", "bookid", "book_id", "isbn"),
    "rating": ("rating", "ratings", "score", "stars", "book-rating"),
    "timestamp": ("timestamp", "time", "date", "ts", "unix_timestamp"),
}
NEGATIVE_SEED = 20170403  # the candidates do not change with the run's seed: every run is ranked alike
MAX_SCALE_GAP = 3  # a rating more than this many steps of the scale away from the others is outside it


def _line(row: int) -> int:
    """The file line of a row read without a header (rows are numbered from 0 = line 1)."""
    return row + 1


def _is_number(text) -> bool:
    try:
        return np.isfinite(float(str(text).strip()))
    except ValueError:
        return False


def _separator(path: str, sep: str | None) -> str:
    """``sep`` if given, else guessed from the first line: tab, ``::`` (MovieLens 1M), comma,
    semicolon, ``|``, or runs of spaces."""
    if sep:
        return {"\\t": "\t", "tab": "\t"}.get(sep, sep)
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            first = next((line for line in f if line.strip()), "")
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e.strerror}); check its permissions.") from None
    for candidate in ("\t", "::", ",", ";", "|"):
        if candidate in first:
            return candidate
    return r"\s+"


def read_table(path: str, sep: str | None, what: str):
    """The file as text cells (no header taken), blank lines left out, indexed by row (line - 1)."""
    import pandas as pd

    if not os.path.isfile(path):
        raise UserError(f"{what}={path} is not a file; give a ratings file (user, item, rating[, timestamp] per line).")
    separator = _separator(path, sep)
    try:
        table = pd.read_csv(
            path,
            sep=separator,
            header=None,
            dtype=str,
            encoding="utf-8-sig",
            skip_blank_lines=False,
            engine="c" if len(separator) == 1 else "python",
        )
    except pd.errors.EmptyDataError:
        table = None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e}); convert it, e.g. with iconv -t utf-8.") from None
    except pd.errors.ParserError as e:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if m:
            raise UserError(
                f"line {m.group(2)} of {path} has {m.group(3)} fields where the lines before have {m.group(1)}; "
                f"every line needs the same columns."
            ) from None
        raise UserError(f"{path} cannot be read as a ratings file ({' '.join(str(e).split())}).") from None
    if table is None or table.empty:
        raise UserError(f"{path} is empty; give a ratings file with one user, item and rating per line.")
    return table[table.notna().any(axis=1)]


def _pick_columns(header: list[str], columns: list[str] | None, path: str) -> dict[str, int]:
    """Which column of the header holds each role."""
    if columns:
        picked = {}
        for role, name in zip(ROLES, columns):
            if name not in header:
                raise UserError(
                    f"{path} has no column '{name}' (data.columns names the {role}); its columns are: "
                    f"{', '.join(header)}."
                )
            picked[role] = header.index(name)
        return picked
    lower = [h.strip().lower() for h in header]
    picked = {}
    for role, names in KNOWN_NAMES.items():
        found = next((i for i, h in enumerate(lower) if h in names and i not in picked.values()), None)
        if found is not None:
            picked[role] = found
    missing = [r for r in ("user", "item", "rating") if r not in picked]
    if missing:
        raise UserError(
            f"the header of {path} ({', '.join(header)}) names no {' or '.join(missing)} column; say which "
            f"columns hold them with data.columns=[user,item,rating] or [user,item,rating,timestamp], in "
            f"the header's names."
        )
    return picked


def read_ratings(path: str, columns: list[str] | None = None, sep: str | None = None, what: str = "data.path"):
    """A ratings file as a DataFrame of user, item (text), rating (float) and, when the file has
    one, timestamp (text), indexed by line - 1. A header is recognised by its rating column not
    being a number; ``columns`` names the user, item, rating (and timestamp) columns of the header."""
    table = read_table(path, sep, what)
    if table.shape[1] < 3:
        raise UserError(
            f"{path} has {table.shape[1]} column{'s' if table.shape[1] != 1 else ''}; a ratings file needs at "
            f"least three (user, item, rating, and optionally a timestamp), separated by tabs, commas or "
            f"data.sep."
        )
    first = [str(v).strip() if v == v else "" for v in table.iloc[0]]
    has_header = bool(columns) or not _is_number(first[2] if len(first) > 2 else "")
    if has_header:
        duplicated = sorted({h for h in first if first.count(h) > 1})
        if duplicated:
            raise UserError(
                f"the header of {path} names the column{'s' if len(duplicated) > 1 else ''} "
                f"{', '.join(repr(d) for d in duplicated)} more than once; give every column its own name."
            )
        picked = _pick_columns(first, list(columns) if columns else None, path)
        table = table.iloc[1:]
        if table.empty:
            raise UserError(f"{path} has a header but no ratings; give a file with one rating per line.")
    else:
        picked = {role: i for role, i in zip(ROLES, range(min(4, table.shape[1])))}
    import pandas as pd

    out = pd.DataFrame(index=table.index)
    for role in ("user", "item"):
        text = table.iloc[:, picked[role]].str.strip()
        missing = text.isna() | (text == "")
        if missing.any():
            raise UserError(f"line {_line(missing.idxmax())} of {path} has no {role} id; fix or remove the line.")
        out[role] = text
    text = table.iloc[:, picked["rating"]]
    ratings = pd.to_numeric(text.str.strip(), errors="coerce")
    bad = ratings.isna() | ~np.isfinite(ratings.fillna(0.0))
    if bad.any():
        row = bad.idxmax()
        raise UserError(
            f"line {_line(row)} of {path} has the rating {text[row]!r}, which is not a number; fix or remove the line."
        )
    out["rating"] = ratings.astype(float)
    if "timestamp" in picked:
        out["timestamp"] = table.iloc[:, picked["timestamp"]].str.strip()
    return out


def rating_scale(ratings, path: str, given: list[float] | None = None) -> tuple[float, float]:
    """The scale the file's ratings are on, and a sentence for a rating outside it. ``given``
    (data.scale=[lo, hi]) is the scale; without it, the scale is read from the file: its distinct
    values, spaced by the step most of them are apart (1 star, half a star), make runs with gaps of at
    most ``MAX_SCALE_GAP`` steps, and the run that holds most ratings is the scale (a file of 1-5 stars
    with one 55 in it is a file with a typo, not a scale of 1 to 55)."""
    values = ratings["rating"].to_numpy()
    if given is not None:
        lo, hi = float(given[0]), float(given[1])
    else:
        distinct, counts = np.unique(values, return_counts=True)
        lo = hi = float(distinct[0])
        if len(distinct) > 1:
            gaps = np.round(np.diff(distinct), 9)
            kinds, seen = np.unique(gaps, return_counts=True)
            step = float(kinds[np.argmax(seen)])
            breaks = np.flatnonzero(gaps > MAX_SCALE_GAP * step + 1e-9)
            starts, ends = np.r_[0, breaks + 1], np.r_[breaks, len(distinct) - 1]
            best = max(range(len(starts)), key=lambda k: counts[starts[k] : ends[k] + 1].sum())
            lo, hi = float(distinct[starts[best]]), float(distinct[ends[best]])
    outside = (values < lo) | (values > hi)
    if outside.any():
        row = ratings.index[int(np.argmax(outside))]
        how = "data.scale" if given is not None else "the scale of the file's other ratings"
        raise UserError(
            f"line {_line(row)} of {path} has the rating {values[outside][0]:g}, outside {how} ({lo:g} to {hi:g}); "
            f"fix the line, or give the scale with data.scale=[low,high]."
        )
    return lo, hi


def _ordered_ids(ids) -> list[str]:
    """The distinct ids, in numeric order when all are whole numbers, else in text order."""
    unique = [str(i) for i in ids.unique()]
    if all(i.lstrip("-").isdigit() for i in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def rated_lists(pairs: torch.Tensor, num_users: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The items each user rated among (N, 2) (user, item) index pairs, each pair once: offsets
    (num_users + 1,) and the items (n,), user u's being items[offsets[u] : offsets[u + 1]], sorted."""
    width = int(pairs[:, 1].max()) + 1 if len(pairs) else 1
    keys = torch.unique(pairs[:, 0] * width + pairs[:, 1])  # sorted: by user, then item
    users, items = keys // width, keys % width
    counts = torch.bincount(users, minlength=num_users)
    return torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]), items


def read_titles(folder: str) -> dict[str, str]:
    """Item titles from a file beside the ratings: MovieLens 100k's ``u.item`` (``id|title|...``,
    Latin-1) or the later sets' ``movies.csv`` (``movieId,title,genres``); {} when neither is there."""
    import pandas as pd

    u_item, movies = os.path.join(folder, "u.item"), os.path.join(folder, "movies.csv")
    try:
        if os.path.isfile(u_item):
            t = pd.read_csv(u_item, sep="|", header=None, dtype=str, encoding="latin-1", usecols=[0, 1])
        elif os.path.isfile(movies):
            t = pd.read_csv(movies, dtype=str, encoding="utf-8-sig", usecols=[0, 1])
        else:
            return {}
    except (ValueError, OSError, pd.errors.ParserError):
        return {}  # titles are labels: a file that does not read as titles leaves the ids alone
    t = t.dropna()
    return dict(zip(t.iloc[:, 0].str.strip(), t.iloc[:, 1].str.strip()))


class RatingsData(TensorDataModule):
    """Ratings from ``path`` (or ``train_path`` and ``test_path``), split by ``split``; batches of
    (pairs (B, 2) of user and item indices, ratings (B,)), and for validation and test also the
    candidates (B, 1 + negatives): the held-out item first, then items the user never rated."""

    name = "ratings"

    def __init__(
        self,
        path: str | None = None,
        train_path: str | None = None,
        test_path: str | None = None,
        columns: list[str] | None = None,
        sep: str | None = None,
        split: str | None = None,
        val_fraction: float = 0.05,
        test_fraction: float = 0.2,
        negatives: int = 99,
        scale: list[float] | None = None,
        batch_size: int = 1024,
        eval_batch_size: int = 8192,
        seed: int = 0,
        data_on_device: bool = True,
    ):
        super().__init__(batch_size, eval_batch_size, seed, data_on_device)
        expand = lambda p: os.path.expanduser(str(p)) if p else None  # noqa: E731
        self.path, self.train_path, self.test_path = expand(path), expand(train_path), expand(test_path)
        self.columns = [str(c) for c in columns] if columns else None
        self.sep = sep or None
        self.split_name = split or ("files" if self.train_path or self.test_path else "random")
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.negatives = int(negatives)
        self.scale = [float(v) for v in scale] if scale else None
        self.user_ids: list[str] = []
        self.item_ids: list[str] = []
        self.titles: list[str] = []
        self.lo = self.hi = self.mean = 0.0
        self.unseen: dict[str, dict[str, int]] = {}
        # N(u), the items each user rated in the training split (implicit feedback, SVD++): user u's
        # are rated_items[rated_offsets[u] : rated_offsets[u + 1]], in index order
        self.rated_offsets = torch.zeros(1, dtype=torch.int64)
        self.rated_items = torch.zeros(0, dtype=torch.int64)
        self.check_options()

    def check_options(self) -> None:
        if self.split_name not in SPLITS:
            raise UserError(f"data.split must be one of {', '.join(SPLITS)}, got {self.split_name!r}.")
        if self.columns is not None and not 3 <= len(self.columns) <= 4:
            raise UserError(
                f"data.columns must name three or four columns (user, item, rating[, timestamp]), got {self.columns}."
            )
        if self.split_name == "files" and not (self.train_path and self.test_path):
            raise UserError(
                "data.split=files needs both data.train_path and data.test_path (e.g. MovieLens' u1.base and u1.test)."
            )
        if self.split_name != "files" and not self.path:
            raise UserError("data.path is not set; give a ratings file, e.g. data.path=~/data/ml-100k/u.data.")
        if not (
            0 <= self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1
        ):
            raise UserError(
                f"data.val_fraction and data.test_fraction must be fractions that leave ratings to train on, got "
                f"{self.val_fraction} and {self.test_fraction}; try 0.05 and 0.2."
            )
        if self.negatives < 1:
            raise UserError(f"data.negatives must be 1 or more (the NCF protocol: 99), got {self.negatives}.")
        if self.scale is not None and (len(self.scale) != 2 or not self.scale[0] < self.scale[1]):
            raise UserError(f"data.scale must be [low, high] with low < high, got {self.scale}.")

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            name=self.name,
            kind="ratings",
            shape=(2,),
            task="recommend",
            num_users=len(self.user_ids),
            num_items=len(self.item_ids),
            user_ids=tuple(self.user_ids),
            item_ids=tuple(self.item_ids),
            item_titles=tuple(self.titles),
            rating_min=self.lo,
            rating_max=self.hi,
            rating_mean=self.mean,
            num_rated=len(self.rated_items),
        )

    # ---- reading and splitting ----

    def ratings_files(self) -> list[str]:
        """The files read (for the titles beside them, and for predict.py's rated sets)."""
        return [self.train_path, self.test_path] if self.split_name == "files" else [self.path]

    def load(self):
        """(train, val, test) DataFrames of user, item, rating[, timestamp]."""
        import pandas as pd

        g = np.random.default_rng(self.seed)
        if self.split_name == "files":
            train = read_ratings(self.train_path, self.columns, self.sep, "data.train_path")
            test = read_ratings(self.test_path, self.columns, self.sep, "data.test_path")
            self.lo, self.hi = rating_scale(train, self.train_path, self.scale)
            rating_scale(test, self.test_path, [self.lo, self.hi])
            n_val = round(self.val_fraction * len(train))
            order = g.permutation(len(train))
            return train.iloc[np.sort(order[n_val:])], train.iloc[np.sort(order[:n_val])], test
        data = read_ratings(self.path, self.columns, self.sep)
        self.lo, self.hi = rating_scale(data, self.path, self.scale)
        if self.split_name == "random":
            order = g.permutation(len(data))
            n_test = round(self.test_fraction * len(data))
            n_val = round(self.val_fraction * (len(data) - n_test))
            parts = np.split(order, [n_test, n_test + n_val])
            return data.iloc[np.sort(parts[2])], data.iloc[np.sort(parts[1])], data.iloc[np.sort(parts[0])]
        if "timestamp" not in data:
            raise UserError(
                f"data.split=leave_last takes each user's latest rating by its timestamp, and {self.path} has no "
                f"timestamp column; add one, name it in data.columns, or use data.split=random."
            )
        stamps = pd.to_numeric(data["timestamp"], errors="coerce")
        if stamps.isna().any():
            with_dates = pd.to_datetime(data["timestamp"], format="mixed", errors="coerce")
            if with_dates.isna().any():
                row = with_dates.isna().idxmax()
                raise UserError(
                    f"line {_line(row)} of {self.path} has the timestamp {data['timestamp'][row]!r}, neither a number "
                    f"nor a date; fix the line or use data.split=random."
                )
            stamps = with_dates.astype("int64")
        # Per user, newest first (ties: the later line is the newer); a user with fewer than three
        # ratings keeps them all for training.
        frame = pd.DataFrame({"user": data["user"], "t": stamps.to_numpy(), "line": np.arange(len(data))})
        frame = frame.sort_values(["user", "t", "line"], ascending=[True, False, False])
        rank = frame.groupby("user", sort=False).cumcount()
        size = frame.groupby("user", sort=False)["user"].transform("size")
        where = pd.Series("train", index=frame.index)
        where[(rank == 0) & (size >= 3)] = "test"
        where[(rank == 1) & (size >= 3)] = "val"
        where = where.reindex(data.index)
        return data[where == "train"], data[where == "val"], data[where == "test"]

    def titles_for(self, ids: list[str]) -> list[str]:
        for file in self.ratings_files():
            titles = read_titles(os.path.dirname(os.path.abspath(file)))
            if titles:
                return [titles.get(i, "") for i in ids]
        return []

    def setup(self, stage: str | None = None) -> None:
        import pandas as pd

        if self.splits:
            return
        train, val, test = self.load()
        if train.empty:
            raise UserError("the training split of the ratings is empty; give more ratings or smaller fractions.")
        self.user_ids, self.item_ids = _ordered_ids(train["user"]), _ordered_ids(train["item"])
        self.titles = self.titles_for(self.item_ids)
        self.mean = float(train["rating"].mean())
        users = {u: k for k, u in enumerate(self.user_ids)}
        items = {i: k for k, i in enumerate(self.item_ids)}
        # Every (user, item) rated anywhere: no candidate negative is an item its user rated.
        every = [train, val, test]
        all_users = {u: k for k, u in enumerate(pd.concat([t["user"] for t in every]).unique())}
        rated = np.unique(
            np.concatenate(
                [
                    t["user"].map(all_users).to_numpy(np.int64) * (len(items) + 1)
                    + t["item"].map(items).fillna(len(items)).to_numpy(np.int64)
                    for t in every
                ]
            )
        )

        def tensors(t, candidates: bool) -> tuple[torch.Tensor, ...]:
            u = t["user"].map(users).fillna(len(users)).to_numpy(np.int64)
            i = t["item"].map(items).fillna(len(items)).to_numpy(np.int64)
            pairs = torch.from_numpy(np.stack([u, i], axis=1))
            out = (pairs, torch.from_numpy(t["rating"].to_numpy(np.float32)))
            if not candidates:
                return out
            codes = t["user"].map(all_users).to_numpy(np.int64)
            return (*out, torch.from_numpy(self.candidates(codes, i, rated, len(items))))

        self.splits = {"train": tensors(train, False), "val": tensors(val, True), "test": tensors(test, True)}
        self.rated_offsets, self.rated_items = rated_lists(self.splits["train"][0], len(users))
        for name, t in (("val", val), ("test", test)):
            self.unseen[name] = {
                "users": int((~t["user"].isin(users)).sum()),
                "items": int((~t["item"].isin(items)).sum()),
            }

    def candidates(self, user_codes: np.ndarray, positives: np.ndarray, rated: np.ndarray, n_items: int) -> np.ndarray:
        """(N, 1 + negatives): each held-out item, then ``negatives`` items drawn uniformly from the
        training items its user never rated (with replacement only when the user left fewer unrated)."""
        n, k = len(user_codes), self.negatives
        g = np.random.default_rng(NEGATIVE_SEED)
        if n_items == 0 or n == 0:
            return np.concatenate([positives[:, None], np.zeros((n, k), dtype=np.int64)], axis=1)

        def taken(users: np.ndarray, items: np.ndarray) -> np.ndarray:
            keys = users * (n_items + 1) + items
            return rated[np.minimum(np.searchsorted(rated, keys), len(rated) - 1)] == keys  # rated is sorted

        out = g.integers(0, n_items, (n, k))
        rows, cols = np.nonzero(taken(user_codes[:, None], out))
        for _ in range(30):  # rejection sampling: a draw its user rated is drawn again
            if not len(rows):
                break
            draw = g.integers(0, n_items, len(rows))
            again = taken(user_codes[rows], draw)
            out[rows[~again], cols[~again]] = draw[~again]
            rows, cols = rows[again], cols[again]
        for row in np.unique(rows):  # users who rated most items: drawn among the few they did not
            mine = rated[(rated >= user_codes[row] * (n_items + 1)) & (rated < (user_codes[row] + 1) * (n_items + 1))]
            unrated = np.setdiff1d(np.arange(n_items), mine % (n_items + 1))
            if not len(unrated):
                unrated = np.setdiff1d(np.arange(n_items), positives[row : row + 1]) if n_items > 1 else np.arange(1)
            gaps = cols[rows == row]
            out[row, gaps] = g.choice(unrated, len(gaps), replace=True)
        return np.concatenate([positives[:, None], out], axis=1)


# name -> (the archive's URL, its MD5 ("known" checksum; None: not checked), the ratings file in it)
MOVIELENS = {
    "ml-100k": (
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "md5:0e33842e24a9c977be4e0107933c0723",
        "u.data",
    ),
    # "latest" is republished by GroupLens now and then: no checksum to hold it to.
    "ml-latest-small": ("https://files.grouplens.org/datasets/movielens/ml-latest-small.zip", None, "ratings.csv"),
}


class MovieLens(RatingsData):
    """A MovieLens set from GroupLens, downloaded into ``data_dir`` when absent (the zip archive,
    checked against its MD5, extracted, and kept out of the way until whole): ``ml-100k`` (100,000
    ratings 1-5 of 1,682 movies by 943 users, 1997-98; ``fold=1..5`` takes its published 5-fold
    split u1-u5, else ``split`` as for any ratings file) or ``ml-latest-small`` (100,836 ratings 0.5-5
    of 9,742 movies by 610 users). Titles come from u.item / movies.csv."""

    def __init__(
        self,
        name: str = "ml-100k",
        data_dir: str = "data",
        fold: int | None = None,
        url: str | None = None,
        checksum: str | None = "known",
        mirror: str | None = None,
        download: bool = True,
        split: str | None = None,
        **kwargs,
    ):
        if name not in MOVIELENS:
            raise UserError(f"data.name must be one of {', '.join(MOVIELENS)}, got {name!r}.")
        self.data_dir = os.path.expanduser(str(data_dir))
        self.archive, self.fold = name, fold
        known_url, known_sum, ratings = MOVIELENS[name]
        folder = os.path.join(self.data_dir, name)
        if fold is not None:
            if name != "ml-100k" or fold not in (1, 2, 3, 4, 5):
                raise UserError(
                    f"data.fold must be 1 to 5 (MovieLens 100k's u1-u5 splits) or null, got {fold!r} for {name}."
                )
            kwargs.update(
                train_path=os.path.join(folder, f"u{fold}.base"), test_path=os.path.join(folder, f"u{fold}.test")
            )
            split = "files"
        super().__init__(path=os.path.join(folder, ratings), split=split, **kwargs)
        self.name = name.replace("-", "_")
        self.url = url or known_url
        self.checksum = known_sum if checksum == "known" else checksum
        self.mirror, self.download = mirror, download

    def prepare_data(self) -> None:
        wanted = [self.path] + ([self.train_path, self.test_path] if self.split_name == "files" else [])
        if all(os.path.isfile(p) for p in wanted):
            return
        zip_path = os.path.join(self.data_dir, f"{self.archive}.zip")
        fetch(
            source_url(self.mirror, self.url, f"{self.archive}.zip"),
            zip_path,
            self.checksum,
            name=f"{self.archive}.zip",
            key="data.checksum",
            offline="use data=ratings data.path=FILE with a ratings file of your own",
            download=self.download,
        )
        extract(zip_path, self.data_dir, self.archive)
        missing = [p for p in wanted if not os.path.isfile(p)]
        if missing:
            raise UserError(
                f"{zip_path} has no {os.path.relpath(missing[0], self.data_dir)}; it is not the {self.archive} "
                f"archive: delete it to download it afresh."
            )


def extract(zip_path: str, data_dir: str, folder: str) -> None:
    """The archive's ``folder/`` into ``data_dir``: extracted into a scratch folder beside it, then
    moved into place file by file, so an interrupted extraction never passes for the data.
    zipfile's ``extract`` keeps every member inside the folder it extracts into."""
    scratch = tempfile.mkdtemp(dir=data_dir, prefix=".extract-")
    try:
        try:
            with zipfile.ZipFile(zip_path) as z:
                members = [m for m in z.namelist() if m.startswith(f"{folder}/")]
                z.extractall(scratch, members)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise UserError(f"{zip_path} cannot be extracted ({e}); delete it to download it afresh.") from None
        source = os.path.join(scratch, folder)
        target = os.path.join(data_dir, folder)
        os.makedirs(target, exist_ok=True)
        for name in os.listdir(source) if os.path.isdir(source) else []:
            if os.path.isfile(os.path.join(source, name)):
                os.replace(os.path.join(source, name), os.path.join(target, name))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
