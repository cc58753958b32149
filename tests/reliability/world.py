"""A hostile world for one case: a runs folder with a finished run, and what must not change.

Layout of a world (its own folder under a session folder in ``/tmp``)::

    runs/       the runs root: one good run (the small built-in universe), its store and ledger
    outside/    stands for everything outside the runs folder: links point here; must not change
    inputs/     files a case hands to qpipe (CSV, FIFO, a config, a folder posing as a ledger)
    cwd/        the child's working directory; must stay empty

The good run is made in-process (``runner_main``, ~0.5 s once numba is warm). A case then
prepares its hostile change, the world is snapshotted, and the command runs in a subprocess.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from qpipe.cli import main, runner_main
from qpipe.ledger import records, runs
from tests.conftest import FAST_SETS, REPO, SMALL_BUILTIN_SETS, random_walk_prices

PYTHON = sys.executable
RUNNER = str(REPO / "runner.py")
CHILD_ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO),
    "POLARS_MAX_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}
# root ignores permission bits; without these two capabilities it honours them like anyone
NO_DAC = (
    ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--") if os.geteuid() == 0 else ()
)
PERMISSIONS_TESTABLE = not NO_DAC or shutil.which("setpriv") is not None

__all__ = [
    "FAST_SETS",
    "NO_DAC",
    "PERMISSIONS_TESTABLE",
    "PYTHON",
    "RUNNER",
    "SMALL_BUILTIN_SETS",
    "Command",
    "Outcome",
    "World",
    "ledger_verifies",
    "make_world",
]


@dataclass(frozen=True)
class Command:
    """What a case runs: argv after the wrapper, in ``cwd/`` with ``CHILD_ENV`` (+ ``env``)."""

    argv: tuple[str, ...]
    wrap: tuple[str, ...] = ()  # e.g. NO_DAC, or ("prlimit", "--as=...")
    env: dict[str, str] = field(default_factory=dict)
    # (signal, records): sent as soon as the child's run has written that many ledger records,
    # so the signal lands in a known phase however fast the machine is
    signal: tuple[int, int] | None = None


@dataclass
class Outcome:
    """How the child ended, and the world as it was just before it started."""

    returncode: int | None  # None: killed at the case's timeout
    stdout: str
    stderr: str
    seconds: float
    before: dict[str, str]
    run_dirs_before: set[str]
    ledger_before: bytes
    signalled: bool = False  # the planned signal was sent while the child still ran


@dataclass
class World:
    root: Path
    good_run: str = ""

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def ledger(self) -> Path:
        return self.runs / "audit.jsonl"

    @property
    def store(self) -> Path:
        return self.runs / "store"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    def ledger_bytes(self) -> bytes:
        path = self.ledger
        return path.read_bytes() if path.is_file() and not path.is_symlink() else b""

    def run_dirs(self) -> set[str]:
        return {p.name for p in self.runs.iterdir() if p.is_dir() and p.name[:1].isdigit()}

    def prices_csv(self) -> Path:
        path = self.inputs / "prices.csv"
        if not path.exists():
            random_walk_prices().write_csv(path)
        return path

    def entry(self, which: str) -> Path:
        """The good run's store entry: ``prices``, ``equity`` (hard-linked by the run folder)
        or ``features`` (an intermediate nothing links to)."""
        recs = [r for r in records(self.ledger) if r["run_id"] == self.good_run]
        if which == "prices":
            digest = next(r["data"]["digest"] for r in recs if r["kind"] == "dataset")
        elif which == "equity":
            digest = next(
                r["data"]["digest"]
                for r in recs
                if r["kind"] == "artifact" and r["data"]["name"] == "equity.arrow"
            )
        else:
            stage = next(
                r["data"] for r in recs if r["kind"] == "stage" and which in r["data"]["outputs"]
            )
            digest = stage["outputs"][which]["digest"]
        return self.store / digest[:2] / f"{digest}.arrow"

    def snapshot(self) -> dict[str, str]:
        """Every path under the world (bar ``cwd/``): file digest, ``dir``, ``link:<target>``
        or the kind of special file."""
        found: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                rel = str(path.relative_to(self.root))
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    found[rel] = f"link:{os.readlink(path)}"
                elif stat.S_ISDIR(st.st_mode):
                    found[rel] = "dir"
                elif stat.S_ISREG(st.st_mode):
                    found[rel] = _digest(path)
                else:
                    found[rel] = f"special:{stat.S_IFMT(st.st_mode):o}"
            dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
        return found


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except PermissionError:
        return "unreadable"


def make_world(base: Path, name: str, seed_store: Path | None = None) -> World:
    """A world with one finished run of the small built-in universe.

    ``seed_store``: a store already holding that universe (copied in, so the good run reads it
    instead of generating and validating it again).
    """
    world = World(base / name)
    for sub in ("outside", "inputs", "cwd"):
        (world.root / sub).mkdir(parents=True)
    if seed_store is not None:
        world.runs.mkdir()
        shutil.copytree(seed_store, world.store, symlinks=True)
    (world.outside / "precious.txt").write_text("must never change\n")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = runner_main(["--out", str(world.runs), "--quiet", *SMALL_BUILTIN_SETS])
    assert code == 0, f"the good run of world {name} failed"
    world.good_run = runs(world.ledger)[-1].run_id
    return world


def ledger_verifies(ledger: Path) -> tuple[bool, str]:
    """``qpipe ledger verify`` as a user runs it: (exit 0, its output)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(["ledger", "verify", "--ledger", str(ledger)])
    return code == 0, out.getvalue().strip()


def start(world: World, command: Command, logs: Path) -> subprocess.Popen[bytes]:
    """Start the case's child; its output goes to ``logs/<world>.out|err`` (never a pipe that
    could fill and block it)."""
    logs.mkdir(exist_ok=True)
    name = world.root.name
    with (logs / f"{name}.out").open("wb") as out, (logs / f"{name}.err").open("wb") as err:
        return subprocess.Popen(
            [*command.wrap, *command.argv],
            cwd=world.cwd,
            env={**CHILD_ENV, **command.env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # a hung child is killed with its whole group
        )


def matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(path, p) for p in patterns)


def remove_world(root: Path) -> None:
    """Delete a session folder even where a case made things read-only."""
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            path = Path(dirpath) / d
            if not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.chmod(0o755)
    shutil.rmtree(root, ignore_errors=True)
