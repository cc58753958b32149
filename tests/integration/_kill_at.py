"""Run ``runner.py`` in this process and SIGKILL it at a chosen point (a test helper, not a test).

Usage::

    python tests/integration/_kill_at.py SPEC -- RUNNER_ARGS...

``SPEC`` is JSON: ``{"kill": "module:attr", "nth": 1, "arm": "module:attr", "arm_nth": 1,
"mode": "before" | "half_write", "signal": "SIGKILL" | "SIGINT"}``. The function ``kill`` is
wrapped so that its ``nth`` call
(counted only after ``arm``'s ``arm_nth`` call, when ``arm`` is given) kills the process with
SIGKILL before doing anything; with ``"half_write"`` the wrapped function must be ``os:write``
and half of the bytes are written first, so a ledger line is torn exactly as a crash would.
With ``"signal": "SIGINT"`` the process interrupts itself as Ctrl-C would, instead of dying.
Nothing in qpipe knows about this: the patching happens here, in the child process only.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _resolve(target: str) -> tuple[object, str]:
    module_name, attr = target.split(":")
    owner: object = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def _die(sig: str = "SIGKILL") -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), getattr(signal, sig))


def install(spec: dict) -> None:
    armed = {"on": "arm" not in spec, "calls": 0, "arm_calls": 0}
    if "arm" in spec:
        owner, name = _resolve(spec["arm"])
        original_arm = getattr(owner, name)

        @functools.wraps(original_arm)
        def arm(*args, **kwargs):
            armed["arm_calls"] += 1
            if armed["arm_calls"] == spec.get("arm_nth", 1):
                armed["on"] = True
            return original_arm(*args, **kwargs)

        setattr(owner, name, arm)

    owner, name = _resolve(spec["kill"])
    original = getattr(owner, name)
    half = spec.get("mode") == "half_write"

    @functools.wraps(original)
    def kill(*args, **kwargs):
        if armed["on"]:
            armed["calls"] += 1
            if armed["calls"] == spec.get("nth", 1):
                if half:
                    fd, data = args[0], bytes(args[1])
                    original(fd, data[: max(1, len(data) // 2)])
                _die(spec.get("signal", "SIGKILL"))
        return original(*args, **kwargs)

    setattr(owner, name, kill)


if __name__ == "__main__":
    split = sys.argv.index("--")
    install(json.loads(sys.argv[1]))
    from qpipe.cli import runner_main

    sys.exit(runner_main(sys.argv[split + 1 :]))
