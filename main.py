"""Train GAP (the paper's training command lines work verbatim; add --device cpu without a GPU)."""
from __future__ import annotations

from utils.config import get_args_parser, parse_config


def main(argv=None) -> None:
    cfg = parse_config(argv, get_args_parser("Train GAP for zero-shot temporal action localization"))
    raise SystemExit(f"training is not wired yet (config resolved for {cfg.model_name})")


if __name__ == "__main__":
    main()
