"""The one place where the operating system's errors become sentences.

``explain_os_error`` turns an ``OSError`` into what is wrong with which path and what to do, by its
errno (not by its text). ``check_writable_folder`` and ``check_writable_file`` decide before anything
is written whether a folder can be made or a file written there, so the common cases are refused
before a run starts rather than mapped after it failed.
"""

from __future__ import annotations

import errno
import os

from zoo.errors import UserError

# errno -> what is wrong, and what to do
_REASONS = {
    errno.EACCES: ("permission is denied", "choose a folder you can write to, or change its permissions"),
    errno.EPERM: ("permission is denied", "choose a folder you can write to, or change its permissions"),
    errno.EROFS: ("it is on a read-only file system", "choose a folder on a writable disk"),
    errno.ENOSPC: ("the disk is full", "free some space or choose a folder on another disk"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space or choose a folder on another disk"),
    errno.ENAMETOOLONG: ("a name in it is too long", "use shorter folder and file names"),
    errno.ENOTDIR: ("a part of it is a file, not a folder", "choose a path whose folders are folders"),
    errno.EISDIR: ("it is a folder, not a file", "give a file name inside it"),
    errno.ENOENT: ("it does not exist", "check the path"),
    errno.EEXIST: ("it already exists as a file", "choose another name"),
}


def explain_os_error(e: OSError, path: str | None = None, key: str | None = None) -> str:
    """One sentence for ``e``: the path (and the config key that named it), what is wrong, what to do."""
    what, advice = _REASONS.get(e.errno, (e.strerror or type(e).__name__, "check the path and its permissions"))
    return _sentence(str(path or e.filename or "a file"), key, what, advice)


def _sentence(path: str, key: str | None, what: str, advice: str) -> str:
    return f"cannot use {f'{key}={path}' if key else path}: {what}; {advice}."


def _name_max(folder: str) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_writable_folder(path: str, key: str, named: str | None = None) -> None:
    """``path`` is a folder that exists and can be written, or one that can be made: else a UserError
    naming ``key`` and its value ``named`` (default: ``path``).

    Walks up to the nearest part of the path that exists; it must be a writable folder, and the
    names still to be made must fit the file system. ``os.access`` answers for the real user, so
    root passes the permission check as the file system lets it.
    """
    full = os.path.abspath(os.path.expanduser(str(path)))
    named = named or full
    existing = full
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(
            _sentence(named, key, f"{existing} is a file, not a folder", "choose a path whose folders are folders")
        )
    limit = _name_max(existing)
    for name in full.split(os.sep):
        if len(name.encode()) > limit:
            raise UserError(
                _sentence(
                    named,
                    key,
                    f"the name {name[:24]}... is {len(name.encode())} bytes, longer than "
                    f"the {limit} the file system allows",
                    "use a shorter name",
                )
            )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            _sentence(
                named, key, f"{existing} is not writable", "choose a folder you can write to, or change its permissions"
            )
        )


def check_writable_file(path: str, key: str) -> None:
    """A file can be written at ``path``: it is not a folder, and its folder is writable or can be made."""
    full = os.path.abspath(os.path.expanduser(str(path)))
    if os.path.isdir(full):
        raise UserError(_sentence(str(path), key, "it is a folder, not a file", "give a file name inside it"))
    if os.path.exists(full) and not os.access(full, os.W_OK):
        raise UserError(_sentence(str(path), key, "the file is not writable", "choose another file name"))
    check_writable_folder(os.path.dirname(full), key, named=str(path))
