"""Small ratings files in the formats a user has: MovieLens' u.data (tab-separated, no header) with
its u.item titles, and CSVs with a header and text ids. The ratings follow a low-rank taste model,
so a recommender can learn them and a test can ask that it did."""

from __future__ import annotations

from pathlib import Path

import numpy as np

GENRES = ("Drama", "Comedy", "Horror")


def taste_ratings(
    users: int = 40, items: int = 30, per_user: int = 18, seed: int = 0
) -> list[tuple[int, int, int, int]]:
    """(user, item, rating 1-5, timestamp): each user likes one of three genres, each item is one."""
    g = np.random.default_rng(seed)
    likes, genre = g.integers(0, 3, users), np.arange(items) % 3
    quality = g.normal(0, 0.5, items)
    rows = []
    for u in range(users):
        for k, i in enumerate(g.choice(items, per_user, replace=False)):
            score = 3 + 1.6 * (1 if genre[i] == likes[u] else -0.6) + quality[i] + g.normal(0, 0.3)
            rows.append((u + 1, int(i) + 1, int(np.clip(round(score), 1, 5)), 880_000_000 + 1000 * u + 10 * k))
    return rows


def write_u_data(folder: Path, rows=None, titles: bool = True) -> Path:
    """``folder/u.data`` (and ``u.item`` with a title per item): MovieLens 100k's formats."""
    rows = rows if rows is not None else taste_ratings()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    if titles:
        items = sorted({i for _, i, _, _ in rows})
        (folder / "u.item").write_bytes(
            "".join(f"{i}|Film {i} ({GENRES[(i - 1) % 3]}) é|01-Jan-1995||\n" for i in items).encode("latin-1")
        )
    return folder / "u.data"


def write_named_csv(path: Path, rows=None, header: str = "userId,movieId,rating,timestamp") -> Path:
    """A CSV with a header and text ids: user ``u<k>``, item ``film-<k>``."""
    rows = rows if rows is not None else taste_ratings()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f"u{u},film-{i},{r},{t}\n" for u, i, r, t in rows))
    return path
