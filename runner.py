#!/usr/bin/env python3
"""Run a backtest: ``python runner.py --help``. The work happens in :mod:`qpipe.cli`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from a checkout without installing

from qpipe.cli import runner_main

if __name__ == "__main__":
    sys.exit(runner_main())
