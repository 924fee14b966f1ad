"""Atomic file writes: a crash or a kill never leaves a half-written result or checkpoint behind."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _atomic_write(path: str | os.PathLike, write_fn, mode: str) -> Path:
    """Write through a temporary file in the same folder, then rename it over `path` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write_fn(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
