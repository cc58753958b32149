"""``python -m qpipe``: ledger verify/show, replay, mlflow export, store gc, run."""

import sys

from qpipe.cli import main

if __name__ == "__main__":
    sys.exit(main())
