"""The catalogue of hostile inputs and environments: one row per case, grow it freely.

A case prepares its world (see :mod:`tests.reliability.world`) and returns the command to run.
Unless it says otherwise (``expect="ok"``), every case must end with:

- exit 1 (never 0, never 3 = a bug, never killed by a signal or the timeout);
- exactly one line on stderr, ``qpipe: error: ...`` matching ``message``, and no traceback;
- nothing written outside the runs folder (``outside/`` and ``cwd/`` unchanged), every file
  that existed before byte-identical (the ledger may only grow at its end) unless the case
  lists it in ``may_change``, and no run folder left behind;
- a ledger that verifies, with no run left ``running`` (``ledger="verifies"``); or, for
  tampering, ``ledger verify`` failing with the documented ``ledger`` message and the ledger
  not appended to.

``xfail`` names a fix that is not on main yet; the case is ``xfail(strict=True)`` so that it
turns red (XPASS) the day the fix lands, and the marker is then removed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.reliability.world import (
    FAST_SETS,
    NO_DAC,
    PYTHON,
    RUNNER,
    SMALL_BUILTIN_SETS,
    Command,
    World,
)


@dataclass(frozen=True)
class Services:
    """Things a case may point qpipe at, alive for the whole catalogue run."""

    closed_port: int  # nothing listens there: connection refused at once
    silent_url: str  # accepts connections, never answers
    huge_arrow: Path  # a 512 MiB sparse file shaped like Arrow IPC (magic at both ends)


@dataclass(frozen=True)
class Case:
    id: str
    group: str
    prepare: Callable[[World, Services], Command]
    message: str = ""  # regex the stderr line must match (after `qpipe: error: `)
    expect: str = "error"  # "error" | "ok" (a case qpipe must survive and complete)
    exit: int = 1
    ledger: str = "verifies"  # "verifies" | "not qpipe's" | a regex `ledger verify` must print
    may_change: tuple[str, ...] = ()  # globs (relative to the world) a case may rewrite
    new_runs: bool = False  # the case may leave new run folders (a sweep's trials)
    timeout: float = 60.0
    xfail: str | None = None
    check: Callable[[World], None] | None = None  # extra assertions after the common ones


def runner(*args: str) -> tuple[str, ...]:
    return (PYTHON, RUNNER, "--quiet", *args)


def qpipe_cli(*args: str) -> tuple[str, ...]:
    return (PYTHON, "-m", "qpipe", *args)


def small_run(world: World, *extra: str) -> Command:
    """The good run again: same universe, same runs folder."""
    return Command(runner("--out", str(world.runs), *SMALL_BUILTIN_SETS, *extra))


def csv_run(world: World, data: Path | str, *extra: str) -> Command:
    return Command(runner("--out", str(world.runs), "--data", str(data), *FAST_SETS, *extra))


# --- links -----------------------------------------------------------------------------------


def _link_store(world: World, _: Services) -> Command:
    (world.store).rename(world.outside / "moved-store")
    world.store.symlink_to(world.outside / "moved-store", target_is_directory=True)
    return small_run(world)


def _link_store_tmp(world: World, _: Services) -> Command:
    (world.outside / "tmp-target").mkdir()
    tmp = world.store / "tmp"
    if tmp.exists():
        tmp.rmdir()
    tmp.symlink_to(world.outside / "tmp-target", target_is_directory=True)
    return csv_run(world, world.prices_csv())


def _link_sweeps(world: World, _: Services) -> Command:
    (world.outside / "sweeps-target").mkdir()
    (world.runs / "sweeps").symlink_to(world.outside / "sweeps-target", target_is_directory=True)
    return Command(
        runner("--out", str(world.runs), *SMALL_BUILTIN_SETS, "--sweep", "strategy.lookback=40,60")
    )


def _link_ledger(world: World, _: Services) -> Command:
    world.ledger.rename(world.runs / "audit.jsonl.real")
    world.ledger.symlink_to(world.outside / "precious.txt")
    return small_run(world)


def _link_lock(world: World, _: Services) -> Command:
    lock = world.runs / "audit.jsonl.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(world.outside / "precious.txt")
    return small_run(world)


def _link_data_to_fifo(world: World, _: Services) -> Command:
    os.mkfifo(world.inputs / "pipe")
    (world.inputs / "prices.csv").symlink_to(world.inputs / "pipe")
    return csv_run(world, world.inputs / "prices.csv")


# --- FIFOs, devices, folders -----------------------------------------------------------------


def _fifo(world: World, name: str) -> Path:
    path = world.inputs / name
    os.mkfifo(path)
    return path


def _data_fifo(world: World, _: Services) -> Command:
    return csv_run(world, _fifo(world, "prices.csv"))


def _benchmark_fifo(world: World, _: Services) -> Command:
    return csv_run(world, world.prices_csv(), "--benchmark", str(_fifo(world, "bench.csv")))


def _config_fifo(world: World, _: Services) -> Command:
    return csv_run(world, world.prices_csv(), "--config", str(_fifo(world, "qpipe.toml")))


def _data_dev_zero(world: World, _: Services) -> Command:
    return csv_run(world, "/dev/zero")


def _config_dev_null(world: World, _: Services) -> Command:
    return csv_run(world, world.prices_csv(), "--config", "/dev/null")


def _data_folder(world: World, _: Services) -> Command:
    (world.inputs / "prices.csv").mkdir()
    return csv_run(world, world.inputs / "prices.csv")


# --- permissions (root runs these without the capabilities that ignore mode bits) ------------


def _ledger_read_only(world: World, _: Services) -> Command:
    world.ledger.chmod(0o444)
    return Command(small_run(world).argv, wrap=NO_DAC)


def _ledger_is_a_folder(world: World, _: Services) -> Command:
    folder = world.runs / "ledger-folder"
    folder.mkdir()
    return small_run(world, "--ledger", str(folder))


def _runs_read_only(world: World, _: Services) -> Command:
    world.runs.chmod(0o555)
    return Command(small_run(world).argv, wrap=NO_DAC)


def _store_read_only(world: World, _: Services) -> Command:
    for path in [world.store, *world.store.iterdir()]:
        if path.is_dir():
            path.chmod(0o555)
    return Command(csv_run(world, world.prices_csv()).argv, wrap=NO_DAC)


def _data_unreadable(world: World, _: Services) -> Command:
    world.prices_csv().chmod(0o000)
    return Command(csv_run(world, world.prices_csv()).argv, wrap=NO_DAC)


# --- tampered ledgers and stores -------------------------------------------------------------


def _edit_ledger_line(world: World, pick: Callable[[list[dict]], int], field: str) -> None:
    lines = world.ledger.read_bytes().split(b"\n")
    recs = [json.loads(x) for x in lines if x]
    i = pick(recs)
    recs[i]["data"][field] = 5.0 if field == "sharpe" else "forged"
    lines[i] = json.dumps(recs[i], separators=(",", ":"), sort_keys=True).encode()
    world.ledger.write_bytes(b"\n".join(lines))


def _ledger_middle_edited(world: World, _: Services) -> Command:
    _edit_ledger_line(
        world, lambda recs: next(i for i, r in enumerate(recs) if r["kind"] == "metrics"), "sharpe"
    )
    return small_run(world)


def _ledger_last_edited(world: World, _: Services) -> Command:
    _edit_ledger_line(world, lambda recs: len(recs) - 1, "out_dir")
    return small_run(world)


def _ledger_forged_run(world: World, _: Services) -> Command:
    """A whole fake run with a valid hash chain (and lock head), appended by someone without the
    key: written straight into the file, as an attacker would, not through qpipe's writer."""
    from qpipe._canonical import canonical_json
    from qpipe.ledger import records
    from qpipe.ledger.chain import make_record
    from qpipe.ledger.lock import head_bytes

    last = records(world.ledger)[-1]
    forged = "20990101T000000Z-forged"
    with world.ledger.open("a", encoding="utf-8") as f:
        for kind, data in (
            ("run_started", {"config": None}),
            ("metrics", {"sharpe": 5.0}),
            ("run_finished", {"seconds": 1.0}),
        ):
            last = make_record(last, forged, kind, data)
            f.write(canonical_json(last) + "\n")
    (world.runs / "audit.jsonl.lock").write_bytes(head_bytes(last["seq"], last["hash"]))
    return Command(qpipe_cli("ledger", "verify", "--ledger", str(world.ledger)))


def _ledger_cut(world: World, _: Services) -> Command:
    """The last run cut off the end and the lock's head emptied."""
    from qpipe.cli import runner_main

    runner_main(["--out", str(world.runs), "--quiet", *SMALL_BUILTIN_SETS])
    lines = world.ledger.read_bytes().split(b"\n")
    recs = [json.loads(x) for x in lines if x]
    last_run = recs[-1]["run_id"]
    keep = [x for x, r in zip(lines, recs, strict=False) if r["run_id"] != last_run]
    world.ledger.write_bytes(b"\n".join(keep) + b"\n")
    (world.runs / "audit.jsonl.lock").write_bytes(b"")
    return Command(qpipe_cli("ledger", "verify", "--ledger", str(world.ledger)))


def _damage(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    path.chmod(0o444)


def _damage_entry(which: str) -> Callable[[World, Services], Command]:
    def prepare(world: World, _: Services) -> Command:
        _damage(world.entry(which))
        return small_run(world)

    return prepare


def _outputs_are_right(world: World) -> None:
    """The run after the damage is identical to the good run, and its entries are whole."""
    from qpipe._fs import file_digest
    from qpipe.ledger import records, runs

    done = [r.run_id for r in runs(world.ledger)]
    assert len(done) == 2, done
    by_run = {
        rid: {
            r["data"]["name"]: r["data"]["digest"]
            for r in records(world.ledger)
            if r["run_id"] == rid
            and r["kind"] == "artifact"
            and r["data"]["name"].endswith(".arrow")
        }
        for rid in done
    }
    assert by_run[done[0]] == by_run[done[1]]
    for name, digest in by_run[done[1]].items():
        assert file_digest(world.runs / done[1] / name) == digest, name
    for entry in world.store.glob("??/*.arrow"):
        if entry.stem in by_run[done[1]].values():
            assert file_digest(entry) == entry.stem


def _gc_not_a_store(world: World, _: Services) -> Command:
    project = world.outside / "project"
    (project / "tmp").mkdir(parents=True)
    old = project / "tmp" / "draft.txt"
    old.write_text("mine")
    os.utime(old, (1, 1))
    (project / "ab").mkdir()
    return Command(qpipe_cli("store", "gc", "--store", str(project), "--ledger", str(world.ledger)))


def _verify_damaged_store(world: World, _: Services) -> Command:
    _damage(world.entry("features"))
    return Command(qpipe_cli("store", "verify", "--out", str(world.runs)))


# --- unreachable services --------------------------------------------------------------------


def _mlflow(world: World, uri: str, *extra: str) -> Command:
    return Command(
        qpipe_cli("mlflow", "export", "--ledger", str(world.ledger), "--tracking-uri", uri, *extra)
    )


def _mlflow_closed(world: World, s: Services) -> Command:
    return _mlflow(world, f"http://127.0.0.1:{s.closed_port}")


def _mlflow_silent(world: World, s: Services) -> Command:
    return _mlflow(world, s.silent_url, "--timeout", "1")


def _mlflow_db_linked(world: World, _: Services) -> Command:
    (world.runs / "mlflow.db").symlink_to(world.outside / "precious.txt")
    return Command(qpipe_cli("mlflow", "export", "--ledger", str(world.ledger)))


def _mlflow_into_ledger(world: World, _: Services) -> Command:
    return _mlflow(world, f"sqlite:///{world.ledger}")


def _ray_unreachable(world: World, s: Services) -> Command:
    address = f'"127.0.0.1:{s.closed_port}"'
    return small_run(
        world,
        "--engine",
        "ray",
        "--set",
        f"engine.address={address}",
        "--set",
        "engine.connect_timeout=3",
    )


# --- memory limits ---------------------------------------------------------------------------

# Ingesting an Arrow file maps all of it. The child (``_limited.py``) sets its address-space
# limit to what its imports take plus 256 MiB, so mapping a 512 MiB input is the allocation
# that fails, on any machine. A limit that bites inside Polars or LLVM instead aborts the
# process (Rust's allocation-failure handler, SIGABRT): a known gap (docs/errors.md), with no
# case here because where a fixed limit lands depends on the machine.
HEADROOM = 256 << 20
LIMITED = str(Path(__file__).with_name("_limited.py"))


def _memory_limited(world: World, s: Services) -> Command:
    args = ("--out", str(world.runs), "--quiet", "--data", str(s.huge_arrow), *FAST_SETS)
    return Command((PYTHON, LIMITED, str(HEADROOM), "--", *args))


# --- interrupts --------------------------------------------------------------------------------

# a universe the good run has not built: the child generates, validates and computes it
INTERRUPTED_SETS = ("--set", "data.symbols=60")
# where the signal lands, named by the ledger records the run has written by then: right after
# run_started (ingesting: generating and validating the universe, about 0.6 s) and right after
# the final allocation's audit and its validation record (the backtest, about 0.3 s)
MOMENTS = {"ingest": 1, "backtest": 8}


def _interrupt(signum: int, records: int) -> Callable[[World, Services], Command]:
    def prepare(world: World, _: Services) -> Command:
        return Command(small_run(world, *INTERRUPTED_SETS).argv, signal=(signum, records))

    return prepare


def _interrupt_cases() -> tuple[Case, ...]:
    cases = []
    for phase, records in MOMENTS.items():
        cases.append(
            Case(
                f"sigint-in-{phase}",
                "interrupts",
                _interrupt(signal.SIGINT, records),
                r"interrupted; the run is recorded as failed",
                expect="interrupted",
                exit=130,
                new_runs=True,
            )
        )
        cases.append(
            Case(
                f"sigterm-in-{phase}",
                "interrupts",
                _interrupt(signal.SIGTERM, records),
                r"terminated \(SIGTERM\); the run is recorded as failed",
                expect="interrupted",
                exit=143,
                new_runs=True,
            )
        )
    return tuple(cases)


CASES: tuple[Case, ...] = (
    # links
    Case("store-is-a-symlink", "links", _link_store, r"store `.*/runs/store` is a symlink"),
    Case(
        "store-tmp-is-a-symlink",
        "links",
        _link_store_tmp,
        r"store folder `.*/store/tmp` is a symlink",
    ),
    Case(
        "sweeps-is-a-symlink",
        "links",
        _link_sweeps,
        r"sweeps folder `.*/runs/sweeps` is a symlink",
    ),
    Case(
        "ledger-is-a-symlink",
        "links",
        _link_ledger,
        r"ledger `.*/runs/audit.jsonl` is a (symbolic link|symlink)",
        ledger="not qpipe's",
    ),
    Case(
        "ledger-lock-is-a-symlink",
        "links",
        _link_lock,
        r"`.*/runs/audit.jsonl.lock` is a (symbolic link|symlink)",
    ),
    Case("data-is-a-symlink-to-a-fifo", "links", _link_data_to_fifo, r"FIFO"),
    # FIFOs, devices, folders
    Case("data-is-a-fifo", "fifos", _data_fifo, r"`.*prices.csv` is a FIFO"),
    Case("benchmark-is-a-fifo", "fifos", _benchmark_fifo, r"`.*bench.csv` is a FIFO"),
    Case("config-is-a-fifo", "fifos", _config_fifo, r"`.*qpipe.toml` is a FIFO"),
    Case("data-is-dev-zero", "devices", _data_dev_zero, r"`/dev/zero` is a character device"),
    Case("config-is-dev-null", "devices", _config_dev_null, r"`/dev/null` is a character device"),
    Case("data-is-a-folder", "devices", _data_folder, r"`.*prices.csv` is a directory"),
    # permissions
    Case("ledger-is-read-only", "permissions", _ledger_read_only, r"ledger .*Permission denied"),
    Case(
        "ledger-is-a-folder",
        "permissions",
        _ledger_is_a_folder,
        r"ledger .*Is a directory",
        ledger="not qpipe's",
    ),
    Case("runs-folder-is-read-only", "permissions", _runs_read_only, r"Permission denied"),
    Case("store-is-read-only", "permissions", _store_read_only, r"store.*Permission denied"),
    Case("data-is-unreadable", "permissions", _data_unreadable, r"prices.csv.*Permission denied"),
    # tampered ledgers
    Case(
        "ledger-middle-record-edited",
        "tampering",
        _ledger_middle_edited,
        r"ledger",
        ledger=r"line \d+.*hash",
    ),
    Case(
        "ledger-last-record-edited",
        "tampering",
        _ledger_last_edited,
        r"ledger",
        ledger=r"line \d+.*hash",
    ),
    Case(
        "ledger-forged-run-appended",
        "tampering",
        _ledger_forged_run,
        r"unsigned",
        ledger=r"unsigned",
        expect="report",
    ),
    Case(
        "ledger-last-run-cut-and-lock-emptied",
        "tampering",
        _ledger_cut,
        r"head|cut|signed",
        ledger=r"head|cut|signed",
        expect="report",
    ),
    # tampered stores
    Case(
        "store-prices-entry-damaged",
        "tampering",
        _damage_entry("prices"),
        expect="ok",
        may_change=("runs/store/*",),
        new_runs=True,
        check=_outputs_are_right,
    ),
    Case(
        "store-intermediate-entry-damaged",
        "tampering",
        _damage_entry("features"),
        expect="ok",
        may_change=("runs/store/*",),
        new_runs=True,
        check=_outputs_are_right,
    ),
    Case(
        "store-linked-output-entry-damaged",
        "tampering",
        _damage_entry("equity"),
        expect="ok",
        may_change=("runs/store/*",),
        new_runs=True,
        check=_outputs_are_right,
        # the damage reached the good run's equity.arrow too (a hard link): verify names it
        ledger=r"artifact `equity.arrow` of run .*: digest [0-9a-f]+ != recorded",
    ),
    Case(
        "store-gc-on-a-folder-that-is-not-a-store",
        "tampering",
        _gc_not_a_store,
        r"is not a qpipe store .*`store gc` refuses",
    ),
    Case(
        "store-verify-finds-a-damaged-entry",
        "tampering",
        _verify_damaged_store,
        r"found 1 damaged entry",
        expect="report",
    ),
    # unreachable services
    Case("mlflow-port-closed", "services", _mlflow_closed, r"cannot reach .*Connection refused"),
    Case("mlflow-server-silent", "services", _mlflow_silent, r"no answer within 1 s"),
    Case(
        "mlflow-default-database-is-a-symlink",
        "links",
        _mlflow_db_linked,
        r"mlflow database `.*/runs/mlflow.db` is a symlink",
    ),
    Case(
        "mlflow-tracking-uri-is-the-ledger",
        "services",
        _mlflow_into_ledger,
        r"is not an SQLite database",
    ),
    Case(
        "ray-address-unreachable",
        "services",
        _ray_unreachable,
        r"cannot reach ray",
        timeout=45,
    ),
    # memory
    Case(
        "memory-limit-on-a-huge-input",
        "memory",
        _memory_limited,
        r"out of memory reading prices file `.*huge.arrow` \(it is 512.0 MiB",
    ),
    *_interrupt_cases(),
)


def silent_server() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def huge_arrow(folder: Path) -> Path:
    path = folder / "huge.arrow"
    with path.open("wb") as f:
        f.write(b"ARROW1\0\0")
        f.truncate((512 << 20) - 6)
        f.seek(0, 2)
        f.write(b"ARROW1")
    return path
