"""Files a run writes and reads back as plain data: JSON written atomically (a crash leaves the old
file whole), read back tolerantly (a missing or broken file is None)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def read_json(path: str) -> dict | None:
    """A JSON object from a file, or None if the file is missing, unreadable or not an object."""
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def write_json_atomic(path: str, data: Any) -> None:
    """Write to a temporary file beside ``path`` and rename it: a crash leaves the old file whole.
    Values JSON has no type for are written as their str()."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
