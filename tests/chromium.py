"""Open an HTML file in headless Chromium and report what happened (tests and benchmarks).

A tiny Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (file descriptors 3 and
4, NUL-separated JSON): no websocket library, no network, no browser download. It loads the page,
collects console errors and uncaught exceptions, waits for the load event plus two animation
frames (so the charts have drawn), then evaluates a probe expression in the page.

Chromium is Debian's package (``/usr/bin/chromium``); ``make test`` installs it when missing.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--window-size=1280,900",
    "--remote-debugging-pipe",
)

# After the load event: wait two frames so queued chart draws have painted, then report
# how long from navigation start until then.
_SETTLE = """
new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(
  {settled_ms: performance.now(),
   load_ms: performance.getEntriesByType('navigation')[0].loadEventEnd,
   dcl_ms: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd}))))
"""


def chromium_path() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLoad:
    """What loading one page produced."""

    errors: list[str] = field(default_factory=list)  # console errors + uncaught exceptions
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    timing: dict[str, float] = field(default_factory=dict)  # ms since navigation start
    probe: Any = None  # the value of the probe expression
    cpu: dict[str, float] = field(default_factory=dict)  # main-thread busy seconds by kind


class _Pipe:
    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int, read_fd: int) -> None:
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> int:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        return self.next_id

    def read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            if time.monotonic() > deadline:
                msg = "chromium did not answer in time"
                raise TimeoutError(msg)
            chunk = os.read(self.read_fd, 1 << 16)
            if not chunk:
                msg = "chromium closed the pipe"
                raise RuntimeError(msg)
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str = "",
             timeout: float = 30.0) -> dict[str, Any]:  # fmt: skip
        want = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self.read(deadline)
            if msg.get("id") == want:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for i, msg in enumerate(self.events):
            if msg.get("method") == method:
                return self.events.pop(i)
        while True:
            msg = self.read(deadline)
            if msg.get("method") == method:
                return msg
            self.events.append(msg)


def _errors_from(events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    errors, requests = [], []
    for msg in events:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in {"error", "assert"}:
            errors.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            errors.append(p["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            requests.append(p["request"]["url"])
    return errors, requests


def load_page(
    path: Path, probe: str = "null", timeout: float = 60.0, screenshot: Path | None = None
) -> PageLoad:
    """Load ``path`` in a fresh headless Chromium and return errors, requests, timing, probe.

    ``probe`` is a JavaScript expression evaluated after the page settled (it may return a
    promise); its JSON value is returned in :attr:`PageLoad.probe`.
    """
    binary = chromium_path()
    if binary is None:
        msg = "chromium is not installed (apt-get install -y chromium)"
        raise FileNotFoundError(msg)
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    with tempfile.TemporaryDirectory(prefix="qpipe-chromium-") as profile:
        # The child sees the pipes as fds 3 (commands in) and 4 (replies out).
        def setup() -> None:  # pragma: no cover - runs in the child
            # Move both ends out of the way first: either may itself be fd 3 or 4.
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4, to_child_r, from_child_w),  # 3, 4 survive close_fds
            preexec_fn=setup,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        pipe = _Pipe(proc, to_child_w, from_child_r)
        try:
            return _drive(pipe, path, probe, timeout, screenshot)
        finally:
            with contextlib.suppress(OSError):
                pipe.send("Browser.close")
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.close(to_child_w)
            os.close(from_child_r)


def _drive(
    pipe: _Pipe, path: Path, probe: str, timeout: float, screenshot: Path | None
) -> PageLoad:
    target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)
    attached = pipe.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
    s = attached["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network", "Performance"):
        pipe.call(f"{domain}.enable", session=s)
    pipe.call("Page.navigate", {"url": path.resolve().as_uri()}, session=s, timeout=timeout)
    pipe.wait_event("Page.loadEventFired", timeout=timeout)
    settle = pipe.call(
        "Runtime.evaluate",
        {"expression": _SETTLE, "awaitPromise": True, "returnByValue": True},
        session=s,
        timeout=timeout,
    )
    # Main-thread busy time until the charts settled: unlike wall time, it does not grow when
    # other processes take the CPU (the tests run on a shared machine).
    perf = pipe.call("Performance.getMetrics", session=s, timeout=timeout)
    wanted = {"TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration"}
    cpu = {m["name"]: m["value"] for m in perf.get("metrics", []) if m["name"] in wanted}
    result = pipe.call(
        "Runtime.evaluate",
        {"expression": probe, "awaitPromise": True, "returnByValue": True},
        session=s,
        timeout=timeout,
    )
    if "exceptionDetails" in result:
        raise RuntimeError(f"probe failed: {result['exceptionDetails']}")
    if screenshot is not None:  # the whole page, for a person to look at
        shot = pipe.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True},
            session=s,
            timeout=timeout,
        )
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    errors, requests = _errors_from(pipe.events)
    return PageLoad(
        errors=errors,
        requests=requests,
        timing=settle.get("result", {}).get("value", {}),
        probe=result.get("result", {}).get("value"),
        cpu=cpu,
    )
