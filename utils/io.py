"""Atomic file writes: a crash or a kill never leaves a half-written result or checkpoint behind.

Files get the permissions a plain `open()` would give them (0666 minus the user's umask), not the 0600 of
`tempfile`, so colleagues sharing a server can read results. A kill between the temporary file and the
rename leaves a `.<name>.<random>.tmp` beside the target; `remove_stale_temp_files` clears them.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"


def current_umask() -> int:
    """The process umask (reading it means setting it; it is restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_pattern(path: str | os.PathLike) -> str:
    """Glob pattern (in the target's folder) of the temporary files `_atomic_write` creates for `path`."""
    return f".{Path(path).name}.*{TEMP_SUFFIX}"


def _atomic_write(path: str | os.PathLike, write_fn, mode: str) -> Path:
    """Write through a temporary file in the same folder, then rename it over `path` (atomic on POSIX)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; expected a file path to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as handle:
            write_fn(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the device while writing {path}") from error
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return _atomic_write(path, lambda handle: handle.write(text), "w")


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> Path:
    return _atomic_write(path, lambda handle: json.dump(obj, handle, indent=indent), "w")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    return _atomic_write(path, lambda handle: torch.save(obj, handle), "wb")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic_write(path, lambda handle: handle.write(data), "wb")


def check_writable_location(path: str | os.PathLike, flag: str) -> None:
    """Fail early (before any output) when `path` cannot be created: its nearest existing folder is not
    writable, or something that is not a folder is in the way. `flag` names the option for the message."""
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "" if probe == path else f" to write {path} into"
        raise NotADirectoryError(f"{flag}: {probe} is a file, expected a folder{where}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag}: cannot write into {probe} (permission denied); choose another {flag} "
                              "or fix the folder's permissions")
