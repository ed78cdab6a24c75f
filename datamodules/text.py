"""Text data as token-id tensors in memory.

Character-level language modelling (``task="language_model"``): Tiny Shakespeare (downloaded),
any local UTF-8 file, and Python's own help texts (``pydoc_data``, offline). The vocabulary is the
set of characters of the whole text; the text is split contiguously into train/val/test (90/5/5 by
default) and each split is cut into windows of ``seq_len + 1`` characters: a window's first
``seq_len`` characters are the input and its last ``seq_len`` the next-character targets.

Topic classification (``task="classify"``): AG News, a word vocabulary built from the training
split (minimum frequency, maximum size), ids padded to ``max_length`` with ``<pad>`` = 0 and
unknown words mapped to ``<unk>`` = 1; networks read each sequence's true length from the padding.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter

import numpy as np
import torch

from datamodules.base import TensorDataModule, count, seeded_split
from datamodules.files import fetch, read_text, source_url
from datamodules.spec import DataSpec
from datamodules.windows import WindowedSplits, next_token_windows
from zoo.errors import UserError

OFFLINE_TEXT = "use data=pydoc, which ships with Python"


def encode_characters(text: str) -> tuple[list[str], torch.Tensor]:
    """(the sorted characters of ``text``, the text as a 1-d tensor of their ids), without a Python loop."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    alphabet, ids = np.unique(codes, return_inverse=True)
    return [chr(c) for c in alphabet.tolist()], torch.from_numpy(ids.reshape(-1).astype(np.int64))


class CharCorpus(WindowedSplits, TensorDataModule):
    kind = "tokens"  # the DataSpec kind it publishes, known before any download
    """A character-level language-modelling corpus; subclasses say where the text comes from."""

    name = "text"

    def __init__(
        self,
        seq_len: int = 128,
        stride: int | None = None,
        eval_seq_len: int | None = None,
        split: tuple[float, float, float] = (0.9, 0.05, 0.05),
        batch_size: int = 64,
        eval_batch_size: int = 256,
        seed: int = 0,
        data_on_device: bool = True,
    ):
        super().__init__(batch_size, eval_batch_size, seed, data_on_device)
        self.seq_len = int(seq_len)
        self.stride = int(stride) if stride else self.seq_len
        self.eval_seq_len = int(eval_seq_len) if eval_seq_len else self.seq_len
        self.fractions = tuple(float(s) for s in split)
        if self.seq_len < 1 or self.stride < 1 or self.eval_seq_len < 1:
            raise UserError(
                f"data.seq_len, data.stride and data.eval_seq_len must be positive, "
                f"got {seq_len}, {stride} and {eval_seq_len}."
            )
        if len(self.fractions) != 3 or min(self.fractions) <= 0 or abs(sum(self.fractions) - 1) > 1e-6:
            raise UserError(
                f"data.split must be three positive fractions (train, val, test) that add up to 1, "
                f"got {list(split)}; try data.split=[0.9,0.05,0.05]."
            )
        self.vocabulary: list[str] = []

    def read(self) -> str:
        """The whole text."""
        raise NotImplementedError

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            name=self.name,
            kind="tokens",
            shape=(self.seq_len,),
            task="language_model",
            vocab_size=len(self.vocabulary),
            vocabulary=tuple(self.vocabulary),
        )

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        text = self.read()
        self.vocabulary, ids = encode_characters(text)
        n = len(ids)
        n_train, n_val = int(n * self.fractions[0]), int(n * self.fractions[1])
        parts = {"train": ids[:n_train], "val": ids[n_train : n_train + n_val], "test": ids[n_train + n_val :]}
        for split, part in parts.items():
            length, key = (self.seq_len, "seq_len") if split == "train" else (self.eval_seq_len, "eval_seq_len")
            if len(part) < length + 1:
                need = math.ceil((length + 1) / min(self.fractions))
                raise UserError(
                    f"the {self.name} text has {n:,} characters, so its {split} split ({len(part):,}) is shorter than "
                    f"one window of data.{key}+1={length + 1}; use a shorter data.{key} or a text of at "
                    f"least {need:,} characters."
                )
        self.cut(parts)

    def windows(self, split: str, base: torch.Tensor):
        if split == "train":
            return next_token_windows(base, self.seq_len, self.stride)
        return next_token_windows(base, self.eval_seq_len, self.eval_seq_len)


class TinyShakespeare(CharCorpus):
    """Karpathy's Tiny Shakespeare (1.1 MB, 65 characters) at ``<data_dir>/shakespeare/input.txt``."""

    name = "shakespeare"

    URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
    SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

    def __init__(
        self,
        data_dir: str = "data",
        url: str = URL,
        checksum: str | None = f"sha256:{SHA256}",
        mirror: str | None = None,
        download: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.data_dir, self.url, self.checksum = os.path.expanduser(str(data_dir)), url, checksum
        self.mirror, self.download = mirror, download
        self.path = os.path.join(self.data_dir, "shakespeare", "input.txt")

    def prepare_data(self) -> None:
        fetch(
            source_url(self.mirror, self.url, "input.txt"),
            self.path,
            self.checksum,
            name="Tiny Shakespeare (input.txt)",
            key="data.checksum",
            offline=OFFLINE_TEXT,
            download=self.download,
        )

    def read(self) -> str:
        self.prepare_data()
        return read_text(self.path, "the file")


class TextFile(CharCorpus):
    """Any local UTF-8 text file, ``data.path``."""

    name = "text_file"

    def __init__(self, path: str, **kwargs):
        super().__init__(**kwargs)
        self.path = os.path.expanduser(str(path))

    def read(self) -> str:
        return read_text(self.path, "data.path")


class PydocCorpus(CharCorpus):
    """Python's own help texts (``pydoc_data.topics``, about 460 KB of English prose and code):
    ships with every Python, so character-level language modelling runs offline."""

    name = "pydoc"

    def read(self) -> str:
        from pydoc_data.topics import topics

        return "\n".join(topics[k] for k in sorted(topics))


# ---- AG News ------------------------------------------------------------------------------------

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words, numbers and single punctuation marks (AG News escapes line breaks as a backslash)."""
    return _WORD.findall(text.lower().replace("\\", " "))


def build_vocabulary(texts: list[list[str]], min_freq: int, max_size: int) -> list[str]:
    """``<pad>``, ``<unk>``, then the words seen at least ``min_freq`` times, most frequent first."""
    counts = Counter(w for words in texts for w in words)
    kept = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return [PAD, UNK] + kept[: max(0, max_size - 2)]


def encode_padded(texts: list[list[str]], stoi: dict[str, int], max_length: int) -> torch.Tensor:
    """(N, max_length) ids, padded with 0 on the right; an empty text becomes one ``<unk>``."""
    unk = stoi[UNK]
    out = np.zeros((len(texts), max_length), dtype=np.int64)
    for i, words in enumerate(texts):
        ids = [stoi.get(w, unk) for w in words[:max_length]] or [unk]
        out[i, : len(ids)] = ids
    return torch.from_numpy(out)


class AGNews(TensorDataModule):
    kind = "tokens"  # the DataSpec kind it publishes, known before any download
    """AG's news topic corpus: 120,000 training and 7,600 test articles (title and description),
    4 balanced classes. CSV files at ``<data_dir>/ag_news/{train,test}.csv``, downloaded when missing."""

    name = "ag_news"
    class_names = ("World", "Sports", "Business", "Sci/Tech")
    URL = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv"
    MD5 = {"train": "md5:b1a00f826fdfbd249f79597b59e1dc12", "test": "md5:d52ea96a97a2d943681189a97654912d"}

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        val_size: float = 5000,
        seed: int = 0,
        max_length: int = 64,
        min_freq: int = 2,
        max_vocab: int = 30000,
        url: str = URL,
        checksums: dict | None = None,
        mirror: str | None = None,
        download: bool = True,
        data_on_device: bool = True,
    ):
        """``checksums``: {"train": "md5:...", "test": "md5:..."}; None: the known ones (MD5)."""
        super().__init__(batch_size, eval_batch_size, seed, data_on_device)
        self.data_dir = os.path.expanduser(str(data_dir))
        self.val_size, self.max_length, self.min_freq, self.max_vocab = (
            val_size,
            int(max_length),
            int(min_freq),
            int(max_vocab),
        )
        self.url, self.mirror, self.download = url, mirror, download
        self.checksums = dict(self.MD5 if checksums is None else checksums)
        if self.max_length < 1 or self.max_vocab < 3:
            raise UserError(
                f"data.max_length must be positive and data.max_vocab at least 3, got {max_length} and {max_vocab}."
            )
        self.vocabulary: list[str] = []

    def path(self, split: str) -> str:
        return os.path.join(self.data_dir, "ag_news", f"{split}.csv")

    def prepare_data(self) -> None:
        for split in ("train", "test"):
            fetch(
                source_url(self.mirror, self.url.rstrip("/") + f"/{split}.csv", f"{split}.csv"),
                self.path(split),
                self.checksums.get(split),
                name=f"AG News ({split}.csv)",
                key=f"data.checksums.{split}",
                offline="use data=pydoc for an offline text run",
                download=self.download,
            )

    def read_csv(self, split: str) -> tuple[list[str], torch.Tensor]:
        path = self.path(split)
        texts, labels = [], []
        try:
            with open(path, newline="", encoding="utf-8") as f:
                for line, row in enumerate(csv.reader(f), 1):
                    if len(row) != 3 or row[0] not in ("1", "2", "3", "4"):
                        raise UserError(
                            f'{path} is not in the AG News format (line {line} should be "class 1-4","title",'
                            f'"description"); delete it to download it afresh.'
                        )
                    labels.append(int(row[0]) - 1)
                    texts.append(row[1] + " " + row[2])
        except (UnicodeDecodeError, csv.Error) as e:
            raise UserError(f"{path} cannot be read as a UTF-8 CSV ({e}); delete it to download it afresh.") from None
        if not texts:
            raise UserError(f"{path} has no rows; delete it to download it afresh.")
        return texts, torch.tensor(labels, dtype=torch.long)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            name=self.name,
            kind="tokens",
            shape=(self.max_length,),
            num_classes=len(self.class_names),
            class_names=self.class_names,
            task="classify",
            vocab_size=len(self.vocabulary),
            vocabulary=tuple(self.vocabulary),
            pad_index=0,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.prepare_data()
        texts, y = self.read_csv("train")
        test_texts, y_test = self.read_csv("test")
        words = [tokenize(t) for t in texts]
        n_val = count(self.val_size, len(words))
        if not 0 < n_val < len(words):
            raise UserError(
                f"data.val_size={self.val_size} leaves no training or no validation articles out of "
                f"{len(words)}; give a fraction below 1 or a smaller count."
            )
        train_idx, val_idx = seeded_split(len(words), [len(words) - n_val, n_val], self.seed)
        train_words = [words[i] for i in train_idx.tolist()]
        # The vocabulary comes from the training split only: validation and test words stay unseen.
        self.vocabulary = build_vocabulary(train_words, self.min_freq, self.max_vocab)
        stoi = {w: i for i, w in enumerate(self.vocabulary)}
        x = encode_padded(words, stoi, self.max_length)
        x_test = encode_padded([tokenize(t) for t in test_texts], stoi, self.max_length)
        self.splits = {"train": (x[train_idx], y[train_idx]), "val": (x[val_idx], y[val_idx]), "test": (x_test, y_test)}
