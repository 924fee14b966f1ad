"""Zero-shot class splits: which classes a mode trains on (seen) or is tested on (unseen).

Layout (SPEC §2.5): ``<split_root>/train_{75_test_25|50_test_50}/<family.split_folder>/{train|test}/split_<id>.list``,
one class name a line; the class index is the line position in the file of the current mode.

Differences from the original reader (SPEC §12, MAY FIX #35): the original drops the last character of every
line, which breaks on a file without a final newline or with CRLF endings. Here trailing ``\\r\\n`` / ``\\n`` and
surrounding whitespace are stripped and blank lines skipped; on the shipped files the result is identical.
"""
from __future__ import annotations

from pathlib import Path

from .families import family_of

SPLIT_FOLDERS = {75: "train_75_test_25", 50: "train_50_test_50"}
MODE_LISTS = {"train": "train", "inference": "test"}


def split_list_path(split_root: str | Path, dataset_name: str, split: int, split_id: int, mode: str) -> Path:
    """Path of the class list a mode reads ("train" -> train list, "inference" -> test list)."""
    try:
        split_folder = SPLIT_FOLDERS[int(split)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"split must be 75 or 50 (train_75_test_25 / train_50_test_50), got {split!r}") from None
    family = family_of(dataset_name)
    if mode not in MODE_LISTS:
        raise ValueError(f"mode must be 'train' or 'inference', got {mode!r}")
    return (Path(split_root) / split_folder / family.split_folder / MODE_LISTS[mode]
            / f"split_{int(split_id)}.list")


def read_class_list(path: str | Path) -> list[str]:
    """Class names of a ``.list`` file, in file order (CRLF-safe, blank lines skipped, duplicates rejected)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"split list {path} not found: expected a text file with one class name per line "
            f"(check --split_root, --split and --split_id)"
        )
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [name for name in names if name]
    if not names:
        raise ValueError(f"split list {path} is empty: expected one class name per line")
    seen: set[str] = set()
    duplicates = [name for name in names if name in seen or seen.add(name)]
    if duplicates:
        raise ValueError(f"split list {path} names these classes more than once: {duplicates}")
    return names


def read_split_classes(split_root: str | Path, dataset_name: str, split: int, split_id: int, mode: str) -> list[str]:
    """Classes of a zero-shot mode: the ``train`` list for mode "train", the ``test`` list for "inference"."""
    return read_class_list(split_list_path(split_root, dataset_name, split, split_id, mode))


def mode_classes(cfg, mode: str, annotation_classes: list[str], anno_file_path: str | Path = "") -> list[str]:
    """Class list of a mode: the split list for ``task zero_shot``, the annotation ``classes`` for ``close_set``."""
    task = getattr(cfg, "task", "zero_shot")
    if task == "zero_shot":
        return read_split_classes(getattr(cfg, "split_root", "./splits"), cfg.dataset_name, cfg.split,
                                  getattr(cfg, "split_id", 0), mode)
    if task == "close_set":
        if not annotation_classes:
            raise ValueError(f"task close_set uses the 'classes' list of {anno_file_path}, which is empty or missing")
        return list(annotation_classes)
    raise ValueError(f"task must be 'zero_shot' or 'close_set', got {task!r}")
