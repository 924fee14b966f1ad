"""Human-readable run logs: one file per run plus the console, without breaking tqdm progress bars.

A run's log file is opened only once the run has been validated (so a failing command never touches an
earlier run's log) and is always appended to, never truncated. What is logged before that (notes, the
datasets' warnings) is kept in memory and written into the file when it opens.
"""
from __future__ import annotations

import logging
import sys
import warnings
from logging.handlers import MemoryHandler
from pathlib import Path

from tqdm import tqdm

LOGGER_NAME = "gap"
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")


class _TqdmHandler(logging.StreamHandler):
    """Console handler that writes through tqdm so progress bars stay intact."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stdout)
        except Exception:  # noqa: BLE001 - logging must never crash the run
            self.handleError(record)


class _EarlyRecords(MemoryHandler):
    """Holds the records logged before the run's file is opened (never flushes on its own)."""

    def __init__(self):
        super().__init__(capacity=10**6, flushLevel=logging.CRITICAL + 1, target=None)

    def shouldFlush(self, record):  # noqa: N802 - logging's API
        return False


def _log_warning(message, category, filename, lineno, file=None, line=None):
    """`warnings.showwarning` replacement: warnings (e.g. the datasets' DataWarning) go to the run log."""
    get_logger().warning(f"{category.__name__}: {message}")


def setup_logger(log_path: str | Path | None = None, append: bool = True) -> logging.Logger:
    """Log to the console and, when given, to `log_path` (appended to unless `append=False`).

    DEBUG records (per-iteration losses) go to the file only; the console gets INFO and above. Without
    `log_path`, records are held until `attach_log_file` opens the run's file. Python warnings are routed
    into the log.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    console = _TqdmHandler()
    console.setLevel(logging.INFO)
    console.setFormatter(_FORMAT)
    logger.addHandler(console)
    warnings.showwarning = _log_warning
    if log_path is None:
        logger.addHandler(_EarlyRecords())
    else:
        attach_log_file(log_path, append=append)
    return logger


def attach_log_file(log_path: str | Path, append: bool = True) -> Path:
    """Open the run's log file (appending) and write into it what was logged so far."""
    logger = get_logger()
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_path, mode="a" if append else "w")
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(_FORMAT)
    for handler in list(logger.handlers):
        if isinstance(handler, _EarlyRecords):
            for record in handler.buffer:
                file_handler.handle(record)
            logger.removeHandler(handler)
            handler.close()
    logger.addHandler(file_handler)
    return log_path


def log_file_path() -> Path | None:
    """The file the run logs to, once opened."""
    for handler in get_logger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


def close_logger() -> None:
    """Close the file handler (the log stays on disk) so a later run in the same process starts afresh."""
    logger = get_logger()
    for handler in list(logger.handlers):
        if isinstance(handler, (logging.FileHandler, _EarlyRecords)):
            logger.removeHandler(handler)
            handler.close()


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)
