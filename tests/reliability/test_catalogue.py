"""Every case of the catalogue (``catalogue.py``) against the guarantees in docs/errors.md."""

from __future__ import annotations

import re

import pytest

from qpipe.ledger import runs
from tests.reliability.catalogue import CASES, Case
from tests.reliability.world import (
    PERMISSIONS_TESTABLE,
    Outcome,
    World,
    ledger_verifies,
    matches,
)


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    if case.group == "permissions" and not PERMISSIONS_TESTABLE:
        marks.append(pytest.mark.skip(reason="running as root without `setpriv`"))
    return pytest.param(case, id=case.id, marks=marks)


def _check_exit_and_message(case: Case, out: Outcome) -> None:
    assert out.returncode is not None, (
        f"still running after {case.timeout:g} s: {out.stderr[-500:]}"
    )
    assert out.returncode >= 0, f"killed by signal {-out.returncode}: {out.stderr[-500:]}"
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    if case.expect == "ok":
        assert out.returncode == 0, out.stderr[-1000:]
        return
    if case.expect == "interrupted":
        assert out.signalled, f"the run ended before the signal (exit {out.returncode})"
    assert out.returncode not in (0, 3), out.stderr[-1000:]
    assert out.returncode == case.exit, out.stderr[-1000:]
    if case.expect == "report":  # a checking command's report (verify), not an error line
        assert re.search(case.message, out.stdout + out.stderr), out.stdout + out.stderr
        return
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{out.stderr}"
    assert lines[0].startswith("qpipe: error: "), lines[0]
    assert re.search(case.message, lines[0]), lines[0]


def _check_nothing_else_changed(case: Case, world: World, out: Outcome) -> None:
    after = world.snapshot()
    assert list(world.cwd.iterdir()) == [], "the child wrote into its working directory"
    for path, before in out.before.items():
        if path.startswith("runs/audit.jsonl") or matches(path, case.may_change):
            continue  # the ledger is checked below; the lock's head moves with it
        assert after.get(path) == before, f"`{path}` changed or vanished"
    new = sorted(set(after) - set(out.before))
    outside = [p for p in new if not p.startswith("runs/")]
    assert outside == [], f"written outside the runs folder: {outside}"
    if not case.new_runs:
        assert world.run_dirs() == out.run_dirs_before, "a run folder was left behind"


def _check_ledger(case: Case, world: World, out: Outcome, before: bytes) -> None:
    if case.ledger == "not qpipe's":
        return
    ok, said = ledger_verifies(world.ledger)
    now = world.ledger.read_bytes()
    if case.ledger == "verifies":
        assert ok, said
        assert now.startswith(before), "the ledger was rewritten, not appended to"
        assert [r.run_id for r in runs(world.ledger) if r.status == "running"] == []
    else:  # tampered: verify fails exactly as documented, and nothing was appended
        assert not ok and re.search(case.ledger, said), said
        if case.expect != "ok":
            assert now == before, "a run appended to a tampered ledger"


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_catalogue_case(case: Case, catalogue):
    world, out = catalogue[case.id]
    _check_exit_and_message(case, out)
    _check_nothing_else_changed(case, world, out)
    _check_ledger(case, world, out, out.ledger_before)
    if case.check is not None:
        case.check(world)
