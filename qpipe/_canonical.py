"""Canonical JSON: one text per value, so equal data always hashes equally.

The canonical form is ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=False, allow_nan=False)``: sorted keys, no spaces, UTF-8 text, finite numbers only.
The ledger hashes records in this form and the config digest is taken over it, so changing it
would change every digest: do not.

:func:`jsonable` turns Python values into plain JSON data first (NaN/inf become ``null``; dates,
paths and numpy values become strings, lists and numbers). This module imports nothing from qpipe.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from datetime import time as dtime
from pathlib import PurePath
from typing import Any

__all__ = ["canonical_digest", "canonical_json", "jsonable"]


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of ``obj`` (sorted keys, no spaces, UTF-8, finite numbers).

    Raises ``ValueError`` for NaN or infinities and ``TypeError`` for values JSON cannot hold
    (pass them through :func:`jsonable` first).

    >>> canonical_json({"b": 1, "a": [1.5, None, "é"]})
    '{"a":[1.5,null,"é"],"b":1}'
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical_digest(obj: Any) -> str:
    """SHA-256 hex of the UTF-8 bytes of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: finite numbers, strings, lists and string-keyed dicts.

    NaN and infinities become ``None``; dates and times ISO strings; paths and unknown objects
    strings; tuples lists; sets sorted lists; numpy scalars and arrays numbers and lists; bytes
    base64 text. Strings with lone surrogates are repaired (they cannot be UTF-8).
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return _utf8_safe(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=canonical_json)  # sets have no order; make one
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return jsonable(value.tolist())
    return str(value)


def _utf8_safe(value: str) -> str:
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: replace them rather than fail the caller
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _key(k: Any) -> str:
    if isinstance(k, str):
        return _utf8_safe(k)
    if isinstance(k, datetime | date | dtime):
        return k.isoformat()
    return str(k)
