"""Start ``lambda-asgi-stream serve`` as a subprocess and watch its console."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUARD_S = 30.0  # hang guard for every wait; never an assertion about speed


class Emulator:
    """One ``serve`` process on ``--port 0``; its combined stdout/stderr is the console."""

    def __init__(self, app: str, *args: str, signals: Path, env: dict[str, str] | None = None) -> None:
        self.signals = signals
        command = [sys.executable, "-m", "lambda_asgi_stream", "serve", app, "--port", "0", *args]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "EMU_TEST_SIGNALS": str(signals), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        found = self.wait_for(r"lambda-asgi-stream: serving .* on (http://\S+)")
        self.url = found.group(1)
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.host: str = host
        self.port = int(port)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<console closed>")
            self._changed.notify_all()

    @property
    def console(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, *, start: int = 0) -> re.Match[str]:
        """The first console line from index ``start`` on that matches ``pattern`` (waits for it)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + GUARD_S
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    found = regex.search(line)
                    if found:
                        return found
                if self.lines and self.lines[-1] == "<console closed>":
                    raise AssertionError(f"serve exited; no line matched {pattern!r}:\n{self.console_now()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no console line matched {pattern!r}:\n{self.console_now()}")
                self._changed.wait(left)

    def since(self, mark: int) -> str:
        """The console from index ``mark`` on."""
        with self._changed:
            return "\n".join(self.lines[mark:])

    def console_now(self) -> str:
        return "\n".join(self.lines[-60:])

    def mark(self) -> int:
        """An index into the console: later ``wait_for(..., start=mark)`` only looks at newer lines."""
        with self._changed:
            return len(self.lines)

    def log_line(self, method_path: str, *, start: int = 0) -> str:
        """The front door's one line for a request (``GET /path?query``)."""
        found = self.wait_for(rf"emulator: {re.escape(method_path)} (\S+ .*end=\S+)$", start=start)
        return found.group(0)

    def child_pids(self) -> list[int]:
        with self._changed:
            found = (re.search(r"started \(pid (\d+)\)", line) for line in self.lines)
            return [int(m.group(1)) for m in found if m]

    def stop(self) -> list[int]:
        """SIGTERM the emulator; returns the sandbox processes it left running (killed here)."""
        pids = self.child_pids()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(GUARD_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(GUARD_S)
        left = [pid for pid in pids if _running(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        return left


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status  # a zombie has exited; only its parent has not reaped it yet


def wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + GUARD_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} never appeared")
        time.sleep(0.005)


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size of a process (``VmHWM`` in /proc/PID/status), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


def raw_get(emu: Emulator, target: str) -> socket.socket:
    """A raw HTTP/1.1 GET on a fresh connection; the caller reads the response."""
    sock = socket.create_connection((emu.host, emu.port), timeout=GUARD_S)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {emu.host}:{emu.port}\r\n\r\n".encode())
    return sock


class ChunkedReader:
    """Reads a chunked HTTP/1.1 response from a socket, one chunk at a time, as framed on the wire."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.eof = False

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                return None
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def head(self) -> tuple[int, list[tuple[str, str]]]:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise AssertionError(f"connection closed in the response head: {self.buffer!r}")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = [(k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in lines)]
        assert ("transfer-encoding", "chunked") in headers, headers
        return int(status_line.split()[1]), headers

    def chunk(self) -> bytes | None:
        """The next chunk's data; b"" for the last chunk; None when the connection closed first."""
        size_line = self._line()
        if size_line is None:
            return None
        size = int(size_line.split(b";")[0], 16)
        while len(self.buffer) < size + 2:
            if not self._fill():
                return None
        data, self.buffer = self.buffer[:size], self.buffer[size + 2 :]
        return data
