"""Command-line wrapper: errors a user can fix are one `error: ...` line (exit status 1), not a traceback.

The full traceback still goes somewhere: into the run's log file when the run has opened one, or onto the
console with `--debug` (which re-raises the error).
"""
from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from utils.logging import close_logger, get_logger, log_file_path

# What a user can cause and fix: bad values/files (ValueError, incl. ConfigError/CheckpointError-like
# subclasses), missing or unreadable files, full disks, read-only folders (OSError).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def one_line(error: BaseException) -> str:
    """The error's message on one line (multi-line explanations are joined with '; ')."""
    text = str(error.strerror if isinstance(error, OSError) and error.strerror else error).strip()
    text = text or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None and str(error.filename) not in text:
        text = f"{error.filename}: {text}"
    parts = [part.strip() for part in text.splitlines() if part.strip()]
    return "".join(part + ("" if k == len(parts) - 1 else " " if part.endswith(":") else "; ")
                   for k, part in enumerate(parts))


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None,
            extra_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run `main(argv)`; a user error (`USER_ERRORS` or `extra_errors`) prints one `error: ...` line and
    returns exit status 1. With `--debug` in argv the error is re-raised with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        status = main(argv)
    except (*USER_ERRORS, *extra_errors) as error:
        if "--debug" in argv:
            raise
        _traceback_to_log(error)
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0


def _traceback_to_log(error: BaseException) -> None:
    """Write the traceback into the run's log file, if the run opened one (nothing else is touched)."""
    if log_file_path() is None:
        return
    logger = get_logger()
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for handler in logger.handlers:
        if handler.__class__.__name__ == "_TqdmHandler":
            handler.setLevel(100)  # the console gets the one line only
    logger.error(f"error: {one_line(error)}\n{details}")
    close_logger()
