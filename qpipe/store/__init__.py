"""Content-addressed Arrow IPC store: frames in, small immutable refs out, zero-copy views back."""

from qpipe.store.arrow import ArrowStore, DatasetRef, open_ipc, write_ipc_atomic

__all__ = ["ArrowStore", "DatasetRef", "open_ipc", "write_ipc_atomic"]
