"""``python -m qpipe.cli.versions``: the install check ``make`` runs after pip.

Prints the installed versions; exits 1 (with the reasons on stderr) if a pin did not hold, e.g.
pip silently fell back to mlflow 1.x because pyarrow was too new.
"""

from __future__ import annotations

import sys

from qpipe._versions import check, package_versions

__all__ = ["main"]


def main() -> int:
    found = check()
    for problem in found:
        print(f"qpipe: {problem}", file=sys.stderr)
    listed = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    print(f"qpipe: installed versions: {listed}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
