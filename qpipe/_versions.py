"""Versions of qpipe and the packages it stands on, for the ledger and for install checks.

``make`` runs ``python -m qpipe.cli.versions`` after installing; it fails when pip resolved an
extra to something other than what qpipe pins (pip silently falls back to mlflow 1.x when
pyarrow is too new).
"""

from __future__ import annotations

import sys
from importlib import metadata

__all__ = ["EXPECTED_MAJOR", "check", "package_versions", "qpipe_version"]

PACKAGES = ("qpipe", "polars", "pyarrow", "pandera", "numpy", "numba", "ray", "mlflow", "prefect")
# package -> required major version, checked only when the package is installed
EXPECTED_MAJOR = {"polars": 2, "mlflow": 3, "ray": 2, "prefect": 3, "numpy": 2}


def qpipe_version() -> str:
    try:
        return metadata.version("qpipe")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a run's numbers (absent ones omitted)."""
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def check() -> list[str]:
    problems = []
    for name, major in EXPECTED_MAJOR.items():
        try:
            v = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if int(v.split(".")[0]) != major:
            problems.append(f"{name} {v} is installed but qpipe needs {name} {major}.x")
    return problems
