"""The ledger: an append-only, hash-chained record of every run (``audit.jsonl``).

One JSON object per line, UTF-8, in canonical form (:func:`qpipe._canonical.canonical_json`).
Each record carries ``seq`` (global, from 1), ``ts`` (UTC ISO-8601 ending in ``Z``), ``run_id``,
``kind``, ``data``, ``prev`` (the previous record's ``hash``; 64 zeros for the first) and ``hash``
(SHA-256 hex of the canonical JSON of the record without ``hash``).

Modules:

- :mod:`~qpipe.ledger.chain`: the record form (hash, parse);
- :mod:`~qpipe.ledger.lock`: the sidecar lock file and its head;
- :mod:`~qpipe.ledger.writer`: :class:`Ledger` (appends, torn-tail recovery);
- :mod:`~qpipe.ledger.payloads`: one typed payload per record kind;
- :mod:`~qpipe.ledger.recorder`: :class:`RunRecorder`, the only writer of records;
- :mod:`~qpipe.ledger.reader`: :func:`iter_records`, :func:`records`, :func:`runs`;
- :mod:`~qpipe.ledger.verify`: :func:`verify`;
- :mod:`~qpipe.ledger.keys`, :mod:`~qpipe.ledger.trust`, :mod:`~qpipe.ledger.signing`,
  :mod:`~qpipe.ledger.verify_signed`: the signing key, the key folder's journal and signed head,
  checkpoints, and their verification.
"""

from __future__ import annotations

from qpipe._canonical import canonical_json
from qpipe.ledger import payloads
from qpipe.ledger.chain import GENESIS, record_hash
from qpipe.ledger.reader import KEY_METRICS, RunSummary, iter_records, records, run_records, runs
from qpipe.ledger.recorder import RunRecorder
from qpipe.ledger.trust import LedgerHead
from qpipe.ledger.verify import BadArtifact, VerifyReport, artifact_path, verify
from qpipe.ledger.verify_signed import SigningReport, forget_head, read_anchor, signed_head
from qpipe.ledger.writer import Ledger, TornTail

__all__ = [
    "GENESIS",
    "KEY_METRICS",
    "BadArtifact",
    "Ledger",
    "LedgerHead",
    "RunRecorder",
    "RunSummary",
    "SigningReport",
    "TornTail",
    "VerifyReport",
    "artifact_path",
    "canonical_json",
    "forget_head",
    "iter_records",
    "payloads",
    "read_anchor",
    "record_hash",
    "records",
    "run_records",
    "runs",
    "signed_head",
    "verify",
]
