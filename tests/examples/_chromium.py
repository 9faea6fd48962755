"""Drive Debian's headless Chromium through the DevTools protocol over a pipe (no extra packages).

``--remote-debugging-pipe`` makes Chromium read NUL-terminated JSON commands on fd 3 and write replies
and events on fd 4 (the transport Puppeteer's ``pipe: true`` uses).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from typing import Any


def find() -> str | None:
    # Debian's /usr/bin/chromium is a shell launcher; the binary behind it keeps our descriptors.
    if os.access("/usr/lib/chromium/chromium", os.X_OK):
        return "/usr/lib/chromium/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _high_pipe() -> tuple[int, int]:
    """A pipe whose ends are above 4, so moving them to 3 and 4 in the child cannot clobber each other."""
    read, write = os.pipe()
    high = fcntl.fcntl(read, fcntl.F_DUPFD_CLOEXEC, 10), fcntl.fcntl(write, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(read)
    os.close(write)
    return high


class Browser:
    def __init__(self, binary: str, url: str) -> None:
        to_chrome_r, self._to_chrome = _high_pipe()
        self._from_chrome, from_chrome_w = _high_pipe()
        args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-pipe",
            "--user-data-dir=" + os.path.join(os.environ.get("TMPDIR", "/tmp"), f"chromium-{os.getpid()}"),
            url,
        ]

        def pipes_at_3_and_4() -> None:  # in the child, between fork and exec
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        # close_fds=False: Python's own descriptors are close-on-exec anyway; only 3 and 4 are inherited.
        self.process = subprocess.Popen(
            [binary, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=pipes_at_3_and_4,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.session = self._attach_to_page()

    def _attach_to_page(self) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            targets = self.call("Target.getTargets")["targetInfos"]
            pages = [t for t in targets if t["type"] == "page"]
            if pages:
                reply = self.call("Target.attachToTarget", targetId=pages[0]["targetId"], flatten=True)
                return str(reply["sessionId"])
            time.sleep(0.05)
        raise TimeoutError("Chromium opened no page")

    def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", self.session, expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"{expression!r} stayed false for {timeout} s")

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            data = os.read(self._from_chrome, 65536)
            if not data:
                raise ConnectionError("Chromium closed the DevTools pipe")
            self._buffer += data
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        os.close(self._to_chrome)
        os.close(self._from_chrome)
