"""``runner.py`` under an address-space limit set just above what its imports take.

``python _limited.py HEADROOM_BYTES -- ARGS...`` imports what a run imports, reads its own
address-space size, sets ``RLIMIT_AS`` (what ``prlimit --as`` sets) to that plus
``HEADROOM_BYTES``, then runs ``runner.py ARGS``. A fixed ``prlimit`` would bite at a
different allocation on every machine; relative to the measured footprint, the allocation
that fails is the first one larger than the headroom.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path


def _address_space() -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmSize:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) * 1024


def main() -> int:
    headroom = int(sys.argv[1])
    args = sys.argv[sys.argv.index("--") + 1 :]
    import pandera.polars  # noqa: F401  (imported lazily by a run; import it before the limit)

    import qpipe.ingest  # noqa: F401
    from qpipe.cli import runner_main

    limit = _address_space() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return runner_main(args)


if __name__ == "__main__":
    sys.exit(main())
