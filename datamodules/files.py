"""Dataset files under ``paths.data_dir``: download (from the real source or ``data.mirror``) with a
checksum, written to a temporary name and renamed when whole, and read back as UTF-8 text.

Every failure is a ``UserError`` of one sentence that names the file expected where, and what to
do instead (the offline dataset of the same kind).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from urllib.error import URLError

from zoo.errors import UserError

TIMEOUT_S = 60


def file_digest(path: str, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_checksum(checksum: str | None, key: str) -> tuple[str, str] | None:
    """``"sha256:<hex>"`` or ``"md5:<hex>"`` -> (algorithm, hex); None or "" -> None (not checked)."""
    if not checksum:
        return None
    algorithm, _, digest = str(checksum).partition(":")
    if algorithm not in ("md5", "sha1", "sha256") or not digest:
        raise UserError(
            f"{key}={checksum!r} is not a checksum; write it as sha256:<hex> or md5:<hex>, or null to skip the check."
        )
    return algorithm, digest.lower()


def fetch(
    url: str, path: str, checksum: str | None, *, name: str, key: str, offline: str, download: bool = True
) -> str:
    """Make sure ``path`` exists, downloading it from ``url`` when missing; returns ``path``.

    ``checksum`` ("sha256:..."/"md5:...") is verified on the download, and ``key`` is the config
    key that sets it (named in the mismatch sentence). ``offline`` is the advice for a user without
    the file, e.g. "use data=sine, which is generated offline".
    """
    expected = parse_checksum(checksum, key)
    if os.path.isfile(path):
        return path
    if not download:
        raise UserError(f"{name} is not at {path} and data.download=false; put the file there or {offline}.")
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".download-", suffix=".part")
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
        except (URLError, OSError, ValueError) as e:
            reason = str(getattr(e, "reason", None) or e).strip().splitlines()
            raise UserError(
                f"{name} is not at {path} and downloading it from {url} failed ({reason[-1] if reason else type(e).__name__}); "
                f"copy the file there, point paths.data_dir at a folder that has it, or {offline}."
            ) from None
        if expected is not None:
            got = file_digest(tmp, expected[0])
            if got != expected[1]:
                raise UserError(
                    f"the {name} downloaded from {url} has {expected[0]} {got}, not the expected {expected[1]} "
                    f"({key}); the download is corrupt or the source changed: try again, or set {key} to the "
                    f"new checksum if you trust the source."
                )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def source_url(mirror: str | None, default: str, filename: str) -> str:
    """The file's URL: ``filename`` under ``mirror`` when one is given, else the real source."""
    return mirror.rstrip("/") + "/" + filename if mirror else default


def read_text(path: str, what: str = "data.path") -> str:
    """A whole file as UTF-8 text, with a sentence for a missing, unreadable, non-UTF-8 or empty file."""
    if not os.path.isfile(path):
        raise UserError(f"{what}={path} is not a file; give the path of a UTF-8 text file.")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e.strerror}); check its permissions.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(
            f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at line {line} cannot be decoded); "
            f"convert it, e.g. iconv -f latin1 -t utf-8 {os.path.basename(path)}."
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark is not part of the text
    if not text.strip():
        raise UserError(f"{path} is empty; give a text file with something to learn from.")
    return text
