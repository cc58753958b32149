"""Every record kind, and the table of kinds and fields that ``docs/ledger.md`` shows.

The table is generated from the payload types (:mod:`qpipe.ledger.payloads` and the kinds kept
in their own modules for size), so it cannot drift from them: a test compares it with the docs.
Regenerate it with
``python -c 'from qpipe.ledger.kinds import write_kinds_table as w; w("docs/ledger.md")'``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from qpipe._fs import write_bytes_atomic
from qpipe.ledger.imports import LATER_PAYLOADS
from qpipe.ledger.payloads import PAYLOADS, Payload

__all__ = ["ALL_PAYLOADS", "kinds_table", "write_kinds_table"]

ALL_PAYLOADS: tuple[type[Payload], ...] = (*PAYLOADS, *LATER_PAYLOADS)
_BEGIN, _END = "<!-- kinds:begin -->\n", "<!-- kinds:end -->"


def _fields_text(cls: type[Payload]) -> str:
    if cls.DATA_DOC:
        return cls.DATA_DOC
    parts = []
    for f in dataclasses.fields(cls):
        optional = " (optional)" if f.name in cls.OMIT_NONE else ""
        parts.append(f"`{f.name}`{optional}: {f.metadata.get('doc', '')}")
    return "; ".join(parts)


def kinds_table() -> str:
    """The markdown table of kinds and their ``data`` fields, for ``docs/ledger.md``."""
    rows = ["| kind | `data` fields | what it records |", "|---|---|---|"]
    for cls in ALL_PAYLOADS:
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        rows.append(f"| `{cls.KIND}` | {_fields_text(cls)} | {summary} |")
    return "\n".join(rows) + "\n"


def write_kinds_table(doc: str | Path) -> None:
    """Replace the table between the kinds markers of ``doc`` (``docs/ledger.md``)."""
    path = Path(doc)
    text = path.read_text(encoding="utf-8")
    start, stop = text.index(_BEGIN) + len(_BEGIN), text.index(_END)
    write_bytes_atomic(path, (text[:start] + kinds_table() + text[stop:]).encode("utf-8"))
