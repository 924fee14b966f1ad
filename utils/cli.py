"""Command-line wrapper for the scripts: errors a user can fix are one line, not a traceback."""
from __future__ import annotations

import sys
from collections.abc import Callable


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None,
            extra_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run `main(argv)`; a ValueError/FileNotFoundError (or `extra_errors`) prints `error: ...`, exit status 1."""
    try:
        status = main(argv)
    except (ValueError, FileNotFoundError, *extra_errors) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0
