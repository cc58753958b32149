"""Where a command reads: the same resolution as a run (flag > config > default)."""

from __future__ import annotations

import argparse

from qpipe.config import ThreadSafeConfig

__all__ = ["command_paths"]


def command_paths(args: argparse.Namespace):  # -> RunPaths
    """The runs root, ledger and store a command works on, honouring ``--config``."""
    from qpipe.runs import resolve_paths

    cfg = ThreadSafeConfig.from_toml(args.config) if args.config else ThreadSafeConfig.default()
    return resolve_paths(cfg, args.out, args.ledger)
