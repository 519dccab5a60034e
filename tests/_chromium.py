"""Open a page in headless Chromium and report what a person would see: console errors, images, a screenshot.

Chromium is driven through its DevTools protocol over a pipe (``--remote-debugging-pipe``: commands on file
descriptor 3, answers and events on 4, each message JSON ended by a NUL byte), so no port, websocket library or
browser-automation package is needed. Debian's ``chromium`` package provides the browser (``make chromium``).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str | None:
    return next((c for c in CANDIDATES if os.access(c, os.X_OK)), None) or shutil.which("chromium")


@dataclass
class PageReport:
    console_errors: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    screenshot: bytes = b""
    title: str = ""
    text_length: int = 0
    probe: Any = None


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.write_fd = write_fd
        self.messages: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True)
        self._reader.start()
        self._next_id = 0

    def _read(self, fd: int) -> None:
        buffer = b""
        with os.fdopen(fd, "rb", buffering=0) as handle:
            while True:
                chunk = handle.read(1 << 16)
                if not chunk:
                    self.messages.put(None)
                    return
                buffer += chunk
                while b"\0" in buffer:
                    message, buffer = buffer.split(b"\0", 1)
                    self.messages.put(json.loads(message))

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        return self._next_id


def inspect_page(url: str, *, width: int = 1200, height: int = 900, timeout: float = 60.0,
                 probe: str | None = None) -> PageReport:
    """Load ``url`` in headless Chromium; return its console errors (console.error, uncaught exceptions, and
    browser log entries of level error: failed loads, blocked content), every ``<img>`` with its natural size,
    and a full-page PNG screenshot; ``probe``: a JavaScript expression evaluated in the page after it loaded, its
    JSON value kept as ``PageReport.probe``."""
    binary = find_chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    import fcntl

    # The child's ends go to fds 3 and 4 after the fork; keep them above 4 here so that dup2 cannot clobber one.
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_chrome_r, from_chrome_w)]
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    to_chrome_r, from_chrome_w = high
    profile = tempfile.mkdtemp(prefix="tk-chromium-")

    def child_fds() -> None:
        os.dup2(to_chrome_r, 3)
        os.dup2(from_chrome_w, 4)

    args = [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "about:blank"]
    process = subprocess.Popen(args, preexec_fn=child_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    pipe = _Pipe(to_chrome_w, from_chrome_r)
    report = PageReport()
    deadline = time.monotonic() + timeout
    events: list[dict] = []

    def wait(predicate) -> dict:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium did not answer within {timeout} s")
            message = pipe.messages.get(timeout=left)
            if message is None:
                raise RuntimeError("chromium closed the DevTools pipe")
            if "method" in message:
                events.append(message)
            if predicate(message):
                return message

    def call(method: str, params: dict | None = None, session: str | None = None) -> dict:
        ident = pipe.send(method, params, session)
        answer = wait(lambda m: m.get("id") == ident)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    try:
        target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            call(f"{domain}.enable", session=session)
        call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                    "mobile": False}, session=session)
        call("Page.navigate", {"url": url}, session=session)
        if not any(e.get("method") == "Page.loadEventFired" for e in events):
            wait(lambda m: m.get("method") == "Page.loadEventFired")
        script = ("JSON.stringify({title: document.title, text: document.body ? document.body.innerText.length : 0,"
                  " images: Array.from(document.images).map(i => ({cls: i.className, alt: i.alt,"
                  " complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,"
                  " shown_width: i.getBoundingClientRect().width})), probe: (" + (probe or "null") + ")})")
        value = call("Runtime.evaluate", {"expression": script, "returnByValue": True, "awaitPromise": True},
                     session=session)["result"]["value"]
        facts = json.loads(value)
        report.title, report.text_length, report.images = facts["title"], facts["text"], facts["images"]
        report.probe = facts["probe"]
        shot = call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
        report.screenshot = base64.b64decode(shot["data"])
        time.sleep(0.2)  # late log entries
        while not pipe.messages.empty():
            message = pipe.messages.get_nowait()
            if message and "method" in message:
                events.append(message)
        try:
            call("Browser.close")
        except (RuntimeError, TimeoutError):
            pass
    finally:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        os.close(to_chrome_w)
        shutil.rmtree(profile, ignore_errors=True)

    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            report.console_errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                                  for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            report.console_errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            report.console_errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
    return report


def file_url(path: str | Path) -> str:
    return Path(path).resolve().as_uri()
