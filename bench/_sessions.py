"""Process plumbing of ``invocation_cost.py``: the fake Runtime API process, one runtime session, one
uvicorn session, one cold start. Every process is started here and ended here, by its own handle."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from _cpu import CPUSample, cpu_between, cpu_sample

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
PYTHON = sys.executable
REPORT_TIMEOUT_S = 300.0


class BenchError(RuntimeError):
    """A session did not complete as expected (the runtime died, a response was wrong, ...)."""


@dataclass
class Variant:
    """One way of serving the bench app; ``label`` names the checkout of ours it imports (or None)."""

    name: str  # e.g. "run-stream-1"
    label: str | None  # the --ours label, None for variants that do not import our package
    kind: str  # "runtime" (a Runtime API client) or "uvicorn"
    argv: list[str]
    env: dict[str, str]
    mode: str  # what the fake API expects: "buffered" or "stream"
    path: str  # the app route the event asks for
    expect: bytes  # the response body the app sends

    @property
    def key(self) -> str:
        return f"{self.label}:{self.name}" if self.label else self.name


class FakeAPI:
    """The ``_fake_api.py`` process and its line-based control channel."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, str(HERE / "_fake_api.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,  # unbuffered: select() in read() must see every line readline() has not taken
            cwd=str(HERE),
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in: IO[bytes] = self.proc.stdin
        self._out: IO[bytes] = self.proc.stdout
        self.port = int(self.read(10.0)["port"])
        self.address = f"127.0.0.1:{self.port}"

    def read(self, timeout: float, watch: subprocess.Popen[bytes] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self._out], [], [], 0.25)
            if ready:
                line = self._out.readline()
                if not line:
                    raise BenchError("the fake Runtime API exited")
                result: dict[str, Any] = json.loads(line)
                return result
            if watch is not None and watch.poll() is not None:
                raise BenchError(f"the process under test exited with {watch.returncode}")
            if time.monotonic() > deadline:
                raise BenchError("timed out waiting for the fake Runtime API")

    def send(self, message: dict[str, Any]) -> None:
        self._in.write(json.dumps(message).encode() + b"\n")
        self._in.flush()

    def command(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send(message)
        return self.read(10.0)

    def close(self) -> None:
        self._in.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def _stop(proc: subprocess.Popen[bytes], graceful: bool = False, grace_s: float = 15.0) -> None:
    if proc.poll() is None:
        if graceful:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
                return
            except subprocess.TimeoutExpired:
                pass
        proc.kill()
    proc.wait()


def runtime_session(
    api: FakeAPI,
    variant: Variant,
    event: bytes,
    *,
    warmup: int,
    count: int,
    workdir: Path,
    cold: bool = False,
    graceful: bool = False,
    grace_s: float = 15.0,
) -> dict[str, Any]:
    """Start a fresh runtime process for ``variant``, serve it warmup + count invocations, stop it.

    Returns CPU µs per invocation over the last ``count``. ``cold``: one invocation; the times from
    process start to the first ``next`` and to the first complete response, and the CPU the process had
    used at its first and second ``next`` (init, and init + the first invocation). ``graceful``: stop it with
    SIGTERM instead of SIGKILL, and wait up to ``grace_s`` for it to exit.
    """
    import base64

    api.command(
        {
            "op": "session",
            "mode": variant.mode,
            "event": event.decode(),
            "expect": base64.b64encode(variant.expect).decode(),
            "warmup": 0 if cold else warmup,
            "count": 1 if cold else count,
            "settle_ms": 0 if cold else 2,  # cold: no pause, it would add to the first response
        }
    )
    log = workdir / f"{variant.key.replace(':', '_')}.log"
    modules_out = workdir / "modules.json"
    modules_out.unlink(missing_ok=True)
    env = dict(variant.env, AWS_LAMBDA_RUNTIME_API=api.address)
    if variant.label:
        env["BENCH_MODULES_OUT"] = str(modules_out)
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(variant.argv, env=env, cwd=str(workdir), stdout=out, stderr=out)
    try:
        api.send({"op": "pid", "pid": proc.pid})
        try:
            report = api.read(REPORT_TIMEOUT_S, watch=proc)
        except BenchError as exc:
            raise BenchError(f"{variant.key}: {exc}\n{_log_tail(log)}") from None
    finally:
        _stop(proc, graceful, grace_s)
    end = api.command({"op": "end"})
    if end["failures"]:
        raise BenchError(f"{variant.key}: {end['failures']} failed invocations: {end['failure_texts']}")
    result: dict[str, Any] = {
        "first_next_ms": (report["first_next"] - started) * 1000,
        "first_response_ms": (report["first_response"] - started) * 1000,
        "log": str(log),
    }
    a, b = (CPUSample(**{**c, "threads": tuple(c["threads"])}) for c in report["cpu"])
    if cold:
        # Since the process started: schedstat leaves out threads that have ended, ticks round down.
        result["init_cpu_ms"] = max(a.sched_s, a.ticks_s) * 1000
        result["first_invocation_cpu_ms"] = max(b.sched_s, b.ticks_s) * 1000
    else:
        result.update(_per_call(a, b, count))
        result["wall_us"] = (report["wall"][1] - report["wall"][0]) / count * 1e6
    if variant.label and modules_out.exists():
        result["modules"] = json.loads(modules_out.read_text())
    return result


# --- uvicorn ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _connect(port: int, proc: subprocess.Popen[bytes], log: Path) -> socket.socket:
    deadline = time.monotonic() + 30
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"uvicorn did not start\n{_log_tail(log)}") from None
            time.sleep(0.02)


_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


def _exchange(sock: socket.socket, request: bytes, expect: bytes) -> None:
    sock.sendall(request)
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            match = _LENGTH.search(buf, 0, end + 2)
            if match is None:
                raise BenchError(f"uvicorn answered without content-length: {buf[:200]!r}")
            total = end + 4 + int(match.group(1))
            if len(buf) >= total:
                break
        data = sock.recv(65536)
        if not data:
            raise BenchError("uvicorn closed the connection")
        buf += data
    if not buf.startswith(b"HTTP/1.1 200 ") or buf[end + 4 :] != expect:
        raise BenchError(f"unexpected uvicorn response: {buf[:300]!r}")


def uvicorn_session(
    variant: Variant, request: bytes, *, warmup: int, count: int, workdir: Path
) -> dict[str, Any]:
    """CPU µs per request of a fresh uvicorn process, over one keep-alive connection."""
    port = _free_port()
    log = workdir / "uvicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*variant.argv, "--port", str(port)], env=variant.env, cwd=str(workdir), stdout=out, stderr=out
        )
    try:
        sock = _connect(port, proc, log)
        with sock:
            for _ in range(warmup):
                _exchange(sock, request, variant.expect)
            time.sleep(0.005)  # let it finish the request's bookkeeping and block in epoll
            a, t0 = cpu_sample(proc.pid), time.perf_counter()
            for _ in range(count):
                _exchange(sock, request, variant.expect)
            time.sleep(0.005)
            b, t1 = cpu_sample(proc.pid), time.perf_counter()
    finally:
        _stop(proc)
    return {**_per_call(a, b, count), "wall_us": (t1 - t0 - 0.005) / count * 1e6}


def _per_call(a: CPUSample, b: CPUSample, count: int) -> dict[str, Any]:
    cpu_s, from_ticks = cpu_between(a, b)
    return {
        "cpu_us": cpu_s / count * 1e6,
        "from_ticks": from_ticks,
        "ticks_us": (b.ticks_s - a.ticks_s) / count * 1e6,
        "system_us": (b.system_s - a.system_s) / count * 1e6,
    }


def floor_session(env: dict[str, str]) -> tuple[float, float]:
    """ms from process start to exit of ``python -c "import asyncio"`` (the interpreter's own floor), and
    the CPU ms it used (its rusage)."""
    started = time.perf_counter()
    proc = subprocess.Popen([PYTHON, "-c", "import asyncio"], cwd="/", env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise BenchError(f"python -c 'import asyncio' exited with {proc.returncode}")
    return elapsed * 1000, (usage.ru_utime + usage.ru_stime) * 1000
