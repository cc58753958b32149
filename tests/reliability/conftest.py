"""Runs the selected catalogue cases once per session, a few children at a time.

Each world's good run is made in this process (numba warm after the first), then its case's
child starts; up to ``PARALLEL`` children run at once, so the catalogue costs about the
slowest case plus the set-up, not the sum of all cases. Each test then only checks its outcome.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.catalogue import (
    CASES,
    Case,
    Services,
    closed_port,
    huge_arrow,
    silent_server,
)
from tests.reliability.world import (
    PERMISSIONS_TESTABLE,
    Command,
    Outcome,
    World,
    make_world,
    remove_world,
    start,
)

PARALLEL = 4


def _selected(session: pytest.Session) -> list[Case]:
    wanted = {
        item.callspec.params["case"].id
        for item in session.items
        if hasattr(item, "callspec") and isinstance(item.callspec.params.get("case"), Case)
    }
    testable = PERMISSIONS_TESTABLE
    return [c for c in CASES if c.id in wanted and (testable or c.group != "permissions")]


class _Child:
    """One case's running child: its timeout, and the signal a case plans to send it.

    The signal is timed by a thread of its own: the main loop is busy building the next
    worlds (a good run each) while children run, so timing it there landed the signal late,
    after a fast child had already finished.
    """

    def __init__(self, world: World, case: Case, command: Command, proc: Any, state: tuple):
        self.world, self.case, self.command, self.proc = world, case, command, proc
        self.state = state
        self.started = time.perf_counter()
        self.signalled = False
        self.code: int | None = None
        if command.signal is not None:
            threading.Thread(target=self._signal_on_time, args=command.signal, daemon=True).start()

    def _signal_on_time(self, signum: int, records: int) -> None:
        before = self.state[2].count(b"\n")
        while self.world.ledger_bytes().count(b"\n") - before < records:
            if self.proc.poll() is not None:
                return
            time.sleep(0.002)
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            self.signalled = True

    def finished(self) -> bool:
        self.code = self.proc.poll()
        if self.code is not None:
            return True
        if time.perf_counter() - self.started < self.case.timeout:
            return False
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return True

    def outcome(self, logs: Path) -> Outcome:
        name = self.world.root.name
        out = (logs / f"{name}.out").read_text(errors="replace")
        err = (logs / f"{name}.err").read_text(errors="replace")
        seconds = time.perf_counter() - self.started
        return Outcome(self.code, out, err, seconds, *self.state, signalled=self.signalled)


@pytest.fixture(scope="session")
def catalogue(request) -> dict[str, tuple[World, Outcome]]:
    base = Path(tempfile.mkdtemp(prefix="qpipe-reliability-"))
    logs = base / "_logs"
    server = silent_server()
    shared = base / "_shared"  # outside every world: never snapshotted (512 MiB of holes)
    shared.mkdir()
    services = Services(
        closed_port(), f"http://127.0.0.1:{server.getsockname()[1]}", huge_arrow(shared)
    )
    results: dict[str, tuple[World, Outcome]] = {}
    running: dict[str, _Child] = {}

    def reap(block: bool) -> None:
        while running:
            for cid, child in list(running.items()):
                if not child.finished():
                    continue
                results[cid] = (child.world, child.outcome(logs))
                del running[cid]
                if not block:
                    return
            if not block and len(running) < PARALLEL:
                return
            time.sleep(0.02)

    seed: Path | None = None
    try:
        for number, case in enumerate(_selected(request.session)):
            # a neutral folder name: a message must match on its own, not via the case id
            world = make_world(base, f"w{number:02d}", seed)
            if seed is None:  # a clean copy, before any case touches a store
                seed = shared / "seed-store"
                shutil.copytree(world.store, seed, symlinks=True)
            command = case.prepare(world, services)
            state = (world.snapshot(), world.run_dirs(), world.ledger_bytes())
            while len(running) >= PARALLEL:
                reap(block=False)
            running[case.id] = _Child(world, case, command, start(world, command, logs), state)
        reap(block=True)
        yield results
    finally:
        server.close()
        for child in running.values():
            child.proc.kill()
        remove_world(base)
