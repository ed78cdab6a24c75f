"""Small text and time-series files in the real on-disk formats of the sequence datasets: Tiny
Shakespeare's plain text, AG News' quoted CSV (class 1-4, title, description; no header) and the ETT
CSVs (date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT; hourly or every 15 minutes)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from pathlib import Path

import numpy as np

SPEAKERS = ["ROMEO", "JULIET", "MERCUTIO", "NURSE", "FRIAR LAURENCE"]
WORDS = [
    "the",
    "and",
    "to",
    "of",
    "my",
    "a",
    "i",
    "you",
    "that",
    "in",
    "is",
    "not",
    "me",
    "it",
    "with",
    "his",
    "be",
    "your",
    "this",
    "but",
    "he",
    "have",
    "thou",
    "thy",
]


def shakespeare_text(n_lines: int = 1500, seed: int = 0) -> str:
    """Play-like text: speaker lines, verse, blank lines (the shape of Tiny Shakespeare)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_lines // 4):
        out.append(f"{SPEAKERS[i % len(SPEAKERS)]}:")
        for _ in range(2):
            words = rng.choice(WORDS, rng.integers(4, 9))
            out.append(" ".join(words).capitalize() + rng.choice([",", ".", ";", "!"]))
        out.append("")
    return "\n".join(out) + "\n"


TOPIC_WORDS = [
    ["war", "minister", "election", "iraq", "president"],
    ["game", "season", "coach", "win", "cup"],
    ["stocks", "profit", "oil", "shares", "bank"],
    ["software", "internet", "space", "microsoft", "nasa"],
]


def ag_news_csv(n: int, seed: int = 0) -> bytes:
    """AG News' format: every field quoted, class 1-4 first, no header; words that give the topic away."""
    rng = np.random.default_rng(seed)
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for _ in range(n):
        c = int(rng.integers(0, 4))
        topic = list(rng.choice(TOPIC_WORDS[c], 3)) + list(rng.choice(WORDS, 3))
        title = " ".join(rng.permutation(topic)[:4]).title()
        desc = " ".join(rng.permutation(topic + list(rng.choice(WORDS, 4)))) + " (Reuters) - #36;1 billion\\more."
        writer.writerow([str(c + 1), title, desc])
    return buf.getvalue().encode("utf-8")


ETT_HEADER = ["date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def series_values(n: int, channels: int, period: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    phase = rng.uniform(0, 6.28, channels)
    return 5 + 3 * np.sin(2 * np.pi * t / period + phase) + 0.3 * rng.standard_normal((n, channels))


def ett_csv(name: str, seed: int = 0) -> bytes:
    """An ETT file with exactly the 20 months (12/4/4) the protocol reads."""
    minutes = name.startswith("ETTm")
    n = 20 * 30 * 24 * (4 if minutes else 1)
    step = dt.timedelta(minutes=15 if minutes else 60)
    start = dt.datetime(2016, 7, 1)
    values = series_values(n, 7, 24 * (4 if minutes else 1), seed)
    lines = [",".join(ETT_HEADER)]
    for i in range(n):
        lines.append((start + i * step).strftime("%Y-%m-%d %H:%M:%S") + "," + ",".join(f"{v:.3f}" for v in values[i]))
    return ("\n".join(lines) + "\n").encode()


def plain_csv(n: int = 400, header=("date", "load", "temp", "OT"), seed: int = 0) -> str:
    values = series_values(n, len(header) - 1, 12, seed)
    start = dt.date(2020, 1, 1)
    rows = [",".join(header)]
    for i in range(n):
        rows.append(f"{start + dt.timedelta(days=i)}," + ",".join(f"{v:.4f}" for v in values[i]))
    return "\n".join(rows) + "\n"


def md5(blob: bytes) -> str:
    return "md5:" + hashlib.md5(blob).hexdigest()


def write_sequence_data(data_dir: Path) -> dict[str, Path]:
    """Every downloadable sequence dataset where it is expected under ``data_dir``, plus a text and
    a CSV file of one's own; returns the paths of the latter."""
    (data_dir / "shakespeare").mkdir(parents=True, exist_ok=True)
    (data_dir / "shakespeare" / "input.txt").write_text(shakespeare_text(), encoding="utf-8")
    (data_dir / "ag_news").mkdir(exist_ok=True)
    (data_dir / "ag_news" / "train.csv").write_bytes(ag_news_csv(400, seed=1))
    (data_dir / "ag_news" / "test.csv").write_bytes(ag_news_csv(80, seed=2))
    (data_dir / "ETT").mkdir(exist_ok=True)
    for i, name in enumerate(("ETTh1", "ETTh2", "ETTm1", "ETTm2")):
        (data_dir / "ETT" / f"{name}.csv").write_bytes(ett_csv(name, seed=i))
    own = {"text": data_dir / "mine.txt", "csv": data_dir / "mine.csv"}
    own["text"].write_text(shakespeare_text(800, seed=5), encoding="utf-8")
    own["csv"].write_text(plain_csv())
    return own


def series_spec(lookback: int, horizon: int, targets: int = 7):
    """The data spec of a 7-channel series (channels a-g; the last ``targets`` are forecast), for
    building forecasters directly."""
    from datamodules.spec import DataSpec

    return DataSpec(
        name="s",
        kind="series",
        shape=(lookback, 7),
        task="forecast",
        horizon=horizon,
        target_channels=targets,
        channel_names=tuple("abcdefg"),
    )
