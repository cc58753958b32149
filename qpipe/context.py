"""The run context: names to references, never to data.

Between stages and across processes only references travel: a :class:`~qpipe.store.DatasetRef`
(a path and a digest) or, on Ray, an ``ObjectRef``. Putting a DataFrame, LazyFrame, Arrow table
or any other data object into the context raises, so a copy can never sneak in. Its pickled size
is a few KB whatever the data size.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from qpipe.errors import StageError
from qpipe.store import DatasetRef

__all__ = ["MissingDatasetError", "RunContext", "is_ref"]


def is_ref(value: Any) -> bool:
    """True for a qpipe ``DatasetRef`` or a Ray ``ObjectRef`` (checked by type, not import)."""
    if isinstance(value, DatasetRef):
        return True
    t = type(value)
    return t.__name__ == "ObjectRef" and t.__module__.split(".")[0] == "ray"


class MissingDatasetError(StageError, KeyError):
    """A name the run context does not hold.

    A :class:`~qpipe.errors.StageError` (a stage asking for a missing input gets a clear message)
    and a ``KeyError`` (so ``in``, ``get`` and ``Mapping`` semantics hold).
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RunContext(Mapping[str, Any]):
    """An immutable mapping of dataset names to refs: ``in``, ``get`` and ``KeyError`` behave as
    for any ``Mapping``; a missing name raises :class:`MissingDatasetError`, which is also a
    :class:`~qpipe.errors.StageError` naming what the context does hold."""

    __slots__ = ("_refs",)
    _refs: Mapping[str, Any]

    def __init__(self, refs: Mapping[str, Any] | None = None) -> None:
        refs = dict(refs or {})
        for name, value in refs.items():
            if not is_ref(value):
                msg = (
                    f"run context entry `{name}` is a {type(value).__name__}; only refs may travel "
                    f"(store the frame with `ArrowStore.put` and pass its DatasetRef)"
                )
                raise StageError(msg)
        object.__setattr__(self, "_refs", MappingProxyType(refs))  # no way to slip data in

    def __getitem__(self, name: str) -> Any:
        try:
            return self._refs[name]
        except KeyError:
            have = ", ".join(sorted(self._refs)) or "none"
            msg = f"run context has no dataset `{name}` (has: {have})"
            raise MissingDatasetError(msg) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __setattr__(self, name: str, value: Any) -> None:
        msg = "run context is immutable; use `with_refs(...)`"
        raise StageError(msg)

    def with_refs(self, **refs: Any) -> RunContext:
        """A new context with these entries added or replaced."""
        return RunContext({**self._refs, **refs})

    def __repr__(self) -> str:
        return f"RunContext({sorted(self._refs)})"

    def __reduce__(self):
        return (RunContext, (dict(self._refs),))
