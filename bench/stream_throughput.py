"""Streaming throughput and memory of the runtime loop, next to a raw asyncio chunked writer.

    .venv/bin/python bench/stream_throughput.py              # ~35 s
    .venv/bin/python bench/stream_throughput.py --quick      # ~10 s
    .venv/bin/python bench/stream_throughput.py --syscalls   # + syscalls per chunk, ~5 s (needs strace)

A sink process plays the Lambda Runtime API on loopback: it serves one event from ``/next`` (a later
``/next`` is held, as Lambda holds it while the sandbox is frozen), reads and discards the chunked
``POST .../response`` (parsing the chunk framing, counting body bytes and chunks) and answers 202.
``GET /arm`` (sent before each run) arms ``/next`` for one event; ``GET /stats`` returns what the last
POST carried, which is checked against what was sent.

Every measured run is in a fresh worker process (so memory peaks do not mix), after a warm-up run of the
same variant in that process (``--cold``: none); runs alternate between variants:

* ``ours``  ``LambdaRuntime(app, Config.from_env({...}))`` with padding ``idle`` (the default) and
  ``none``: ``next``, the app's response streamed by the runtime loop (h11 framing, one ``sendmsg`` per
  chunk), the 202 read back; the loop is then stopped by cancelling ``serve()`` while it waits on the
  held ``/next``. Timed from the start to the end of ``handle()``. The ASGI app sends one preallocated
  block (``application/octet-stream``) in a loop.
* ``raw``   ``asyncio.open_connection``; the same request head, prelude chunk and chunk sizes, each
  chunk as ``write(size line)``, ``write(data)``, ``write(CRLF)``, ``await drain()``; then the last chunk
  and the 202 read back. Timed from the first write to the reply.

Reported: MiB/s and the ratio ours/raw (goal >= 0.8); peak RSS (``VmHWM`` at process start and end) for
10 MiB and 100 MiB bodies (goal: flat); µs per chunk for 50,000 chunks of 20 bytes written without a pause
(ours holds such a burst for the end of the event-loop pass, 16 KiB at most, so it makes few system
calls), and for 25,000 paced ones, 20-byte SSE events with a loop pass after each (the app awaits
``asyncio.sleep(0)``, as between an LLM stream's tokens: one ``sendmsg`` each); the per-chunk cost of
each layer with the I/O taken out; with ``--syscalls``, system calls per chunk counted by
``strace -f -c`` over 5,000 small chunks, unpaced and paced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import anyio
import h11

from lambda_asgi_stream import runtime_api
from lambda_asgi_stream.config import Config
from lambda_asgi_stream.cycle import HTTPCycle, PaddedStreamingResponder, PlainWriter, StreamingResponder
from lambda_asgi_stream.encoder import build_prelude
from lambda_asgi_stream.events import parse_event
from lambda_asgi_stream.events.build import build_event
from lambda_asgi_stream.padding import PaddingPolicy
from lambda_asgi_stream.runtime import LambdaRuntime, RuntimeClient, StreamingPost, _Connection
from lambda_asgi_stream.runtime_api import Invocation

HERE = os.path.abspath(__file__)
MiB = 1024 * 1024
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:bench"
API = "/2018-06-01/runtime"


# --- the sink: a minimal Runtime API ------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.armed = False
        self.last: dict[str, Any] = {}

    def event(self) -> bytes:
        event = build_event("function-url", method="GET", path="/bytes", headers=[("user-agent", "bench")])
        return json.dumps(event).encode()


class SinkProtocol(asyncio.Protocol):
    """HTTP/1.1 server side, just enough for the runtime loop: heads, chunked and fixed bodies."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.rest = b""
        self.mode = "head"
        self.skip = 0  # body bytes (and a chunk's CRLF) still to discard
        self.fixed = 0
        self.request: tuple[str, str] = ("", "")
        self.body_bytes = 0
        self.chunks = 0
        self.recvs = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.recvs += 1
        if self.rest:
            data, self.rest = self.rest + data, b""
        pos, end = 0, len(data)
        while pos < end:
            if self.skip:
                take = min(self.skip, end - pos)
                self.skip -= take
                pos += take
                if not self.skip and self.mode == "fixed":
                    self.done()
                continue
            sep = b"\r\n\r\n" if self.mode == "head" else b"\r\n"
            found = data.find(sep, pos)
            if found < 0:
                self.rest = data[pos:]
                return
            line, pos = data[pos:found], found + len(sep)
            if self.mode == "head":
                self.head(line)
            elif self.mode == "size":
                size = int(line.split(b";", 1)[0], 16)
                if size:
                    self.skip = size + 2
                    self.body_bytes += size
                    self.chunks += 1
                else:
                    self.mode = "trailers"
            elif self.mode == "trailers" and not line:
                self.done()

    def head(self, raw: bytes) -> None:
        lines = raw.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        self.request = (method, path)
        self.body_bytes = self.chunks = self.recvs = 0
        if headers.get("transfer-encoding", "").lower() == "chunked":
            self.mode = "size"
        elif int(headers.get("content-length", "0") or 0):
            self.mode, self.skip = "fixed", int(headers["content-length"])
        else:
            self.done()

    def done(self) -> None:
        method, path = self.request
        self.mode = "head"
        if method == "GET" and path == f"{API}/invocation/next":
            if self.sink.armed:
                self.sink.armed = False
                deadline = int(time.time() * 1000) + 900_000
                extra = [
                    ("Lambda-Runtime-Aws-Request-Id", str(uuid.uuid4())),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                    ("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN),
                    ("Lambda-Runtime-Trace-Id", "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=1"),
                ]
                self.reply(200, self.sink.event(), extra)
            return  # held: Lambda answers the next "next" only when there is an invocation
        if method == "GET" and path == "/arm":  # the worker is about to ask for one event
            self.sink.armed = True
            self.reply(200, b"{}")
            return
        if method == "GET" and path == "/stats":
            self.reply(200, json.dumps(self.sink.last).encode())
            return
        self.sink.last = {"path": path, "bytes": self.body_bytes, "chunks": self.chunks, "recvs": self.recvs}
        self.reply(202, b'{"status":"OK"}')

    def reply(self, status: int, body: bytes, extra: list[tuple[str, str]] | None = None) -> None:
        head = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Accepted'}"]
        head += [f"{k}: {v}" for k, v in extra or []]
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}", "", ""]
        self.transport.write("\r\n".join(head).encode("latin-1") + body)


async def run_sink() -> None:
    loop = asyncio.get_running_loop()
    sink = Sink()
    server = await loop.create_server(lambda: SinkProtocol(sink), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    server.close()


# --- workers: one run each, in a fresh process --------------------------------------------------


def memory() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def bytes_app(total: int, chunk: int, content_type: bytes, *, pace: bool = False) -> Any:
    """``total`` bytes in ``chunk``-byte body messages; ``pace``: an event-loop pass after each one (the app
    awaits ``asyncio.sleep(0)``), as between an LLM stream's tokens, so that no two leave together."""
    sse = content_type == b"text/event-stream"
    block = b"data: " + b"x" * (chunk - 8) + b"\n\n" if sse and chunk >= 8 else b"x" * chunk
    count, tail = divmod(total, chunk)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", content_type)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for _ in range(count):
            await send({"type": "http.response.body", "body": block, "more_body": True})
            if pace:
                await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": block[:tail], "more_body": False})

    return app


def sink_get(port: int, path: str) -> dict[str, Any]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    stats: dict[str, Any] = json.loads(conn.getresponse().read())
    conn.close()
    return stats


class OneShot(LambdaRuntime):
    """The runtime loop, timing ``handle()``; ``done`` is set once one invocation has been served."""

    elapsed = 0.0
    done: anyio.Event

    async def handle(
        self, client: RuntimeClient, invocation: Invocation, timer: Any = None, wake: Any = None
    ) -> None:
        started = time.perf_counter()
        await super().handle(client, invocation, timer, wake)
        self.elapsed = time.perf_counter() - started
        self.done.set()


def worker_ours(port: int, total: int, chunk: int, padding: str, pace: bool) -> dict[str, Any]:
    config = Config.from_env(
        {
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
            "LAMBDA_ASGI_STREAM_LIFESPAN": "off",
            "LAMBDA_ASGI_STREAM_PADDING": padding,
            "LAMBDA_ASGI_STREAM_LOG_LEVEL": "WARNING",
        }
    )

    content_type = b"text/event-stream" if pace else b"application/octet-stream"
    runtime = OneShot(bytes_app(total, chunk, content_type, pace=pace), config, handle_signals=False)

    async def main() -> None:
        runtime.done = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(runtime.serve)
            await runtime.done.wait()
            group.cancel_scope.cancel()  # serve() is parked on the held /next

    anyio.run(main)
    return {"elapsed": runtime.elapsed, "after": memory()}


def worker_raw(port: int, total: int, chunk: int, pace: bool) -> dict[str, Any]:
    request = runtime_api.streaming_response(str(uuid.uuid4()))
    head = [f"{request.method} {request.path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    head += [f"{k}: {v}" for k, v in request.headers]
    head_bytes = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
    prelude = build_prelude(200, [(b"content-type", b"application/octet-stream")], "function-url")
    block = b"x" * chunk
    count, tail = divmod(total, chunk)

    async def main() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.perf_counter()
        writer.write(head_bytes)
        writer.write(b"%x\r\n%s\r\n" % (len(prelude), prelude))
        await writer.drain()
        for _ in range(count):
            writer.write(b"%x\r\n" % len(block))
            writer.write(block)
            writer.write(b"\r\n")
            await writer.drain()
            if pace:
                await asyncio.sleep(0)
        if tail:
            writer.write(b"%x\r\n%s\r\n" % (tail, block[:tail]))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        reply = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", reply).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        elapsed = time.perf_counter() - started
        if not reply.startswith(b"HTTP/1.1 202"):
            raise SystemExit(f"sink answered {reply!r}")
        writer.close()
        await writer.wait_closed()
        return elapsed

    elapsed = asyncio.run(main())
    return {"elapsed": elapsed, "after": memory()}


def worker(args: argparse.Namespace) -> None:
    """One measured run in this fresh process, after a small warm-up run of the same variant (unless
    ``--cold``), so first-call costs (imports, code paths, allocator) stay out of the figure."""
    total, chunk = args.total, args.chunk
    before = memory()
    if not args.cold:
        warm = min(total, 4 * MiB if chunk >= 1024 else 2000 * chunk)
        run_once(args.worker, args.port, warm - warm % chunk, chunk, args.padding, args.pace)
    result = run_once(args.worker, args.port, total, chunk, args.padding, args.pace)
    result["before"] = before
    print(json.dumps(result))


def run_once(variant: str, port: int, total: int, chunk: int, padding: str, pace: bool) -> dict[str, Any]:
    sink_get(port, "/arm")
    ours = variant == "ours"
    result = worker_ours(port, total, chunk, padding, pace) if ours else worker_raw(port, total, chunk, pace)
    stats = sink_get(port, "/stats")
    if stats.get("bytes", 0) < total or stats.get("chunks", 0) < total // chunk:
        raise SystemExit(f"sink saw {stats}, expected >= {total} body bytes in >= {total // chunk} chunks")
    result.update(stats=stats, total=total, chunk=chunk)
    return result


# --- per-chunk cost of each layer, without I/O ----------------------------------------------------


class NullWriter(PlainWriter):
    async def write(self, data: bytes) -> None:
        pass

    async def close(self, trailers: Any) -> None:
        pass


class NullConnection(_Connection):
    """The runtime's connection with the socket taken out: what is left is chunk framing and bookkeeping."""

    def take(self, *, check_peer: bool = True) -> bool:
        return True  # "a kept connection": never opened

    def queue(self, pieces: Any) -> None:
        pass

    def write(self, pieces: Any) -> bool:
        return True  # all of it "went"

    def send_now(self) -> bool:
        return True

    async def send(self, pieces: Any) -> None:
        pass


def layers(n: int) -> list[tuple[str, float]]:
    scope = dict(parse_event(build_event("function-url", method="GET", path="/bytes")).scope, state={})
    app = bytes_app(n * 20, 20, b"application/octet-stream")
    sse_app = bytes_app(n * 20, 20, b"text/event-stream")

    def post() -> StreamingPost:
        client = RuntimeClient("127.0.0.1:9")
        client.connection = NullConnection("127.0.0.1:9")
        return StreamingPost(client, runtime_api.streaming_response("id"), b"")

    cases: list[tuple[str, Any, Any]] = [
        (
            "cycle + StreamingResponder (padding none)",
            app,
            lambda: StreamingResponder(NullWriter(), "function-url"),
        ),
        (
            "cycle + PaddedStreamingResponder (idle), octet-stream",
            app,
            lambda: PaddedStreamingResponder(NullWriter(), "function-url", PaddingPolicy(mode="idle")),
        ),
        (
            "cycle + PaddedStreamingResponder (idle), event-stream",
            sse_app,
            lambda: PaddedStreamingResponder(NullWriter(), "function-url", PaddingPolicy(mode="idle")),
        ),
        (
            "cycle + StreamingResponder + StreamingPost (framing)",
            app,
            lambda: StreamingResponder(post(), "function-url"),
        ),
    ]

    async def cycle(app: Any, make: Any) -> float:
        responder = make()
        started = time.perf_counter()
        await HTTPCycle(dict(scope), b"", responder).run(app)
        return time.perf_counter() - started

    async def lock(fast: bool) -> float:
        guard = anyio.Lock(fast_acquire=fast)
        started = time.perf_counter()
        for _ in range(n):
            async with guard:
                pass
        return time.perf_counter() - started

    async def h11_framing() -> float:
        conn = h11.Connection(h11.CLIENT)
        conn.send(
            h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Transfer-Encoding", "chunked")])
        )
        data = b"x" * 20
        started = time.perf_counter()
        for _ in range(n):
            list(conn.send_with_data_passthrough(h11.Data(data=data)))
        return time.perf_counter() - started

    rows = []
    for label, app_, make in cases:
        rows.append((label, min(anyio.run(cycle, app_, make) for _ in range(2)) / n * 1e6))
    rows.append(
        (
            "  of which h11 send_with_data_passthrough(Data)",
            min(anyio.run(h11_framing) for _ in range(2)) / n * 1e6,
        )
    )
    rows.append(("anyio.Lock() acquire + release", min(anyio.run(lock, False) for _ in range(2)) / n * 1e6))
    rows.append(
        (
            "anyio.Lock(fast_acquire=True) acquire + release",
            min(anyio.run(lock, True) for _ in range(2)) / n * 1e6,
        )
    )
    return rows


# --- the orchestrator -----------------------------------------------------------------------------

THROUGHPUT = [
    ("ours (padding idle, default)", "ours", "idle"),
    ("ours (padding none)", "ours", "none"),
    ("raw asyncio 3x write + drain", "raw", "-"),
]
OURS, RAW = THROUGHPUT[0][0], THROUGHPUT[2][0]


def run_worker(
    port: int,
    variant: str,
    total: int,
    chunk: int,
    padding: str,
    *,
    cold: bool,
    strace_to: str = "",
    pace: bool = False,
) -> dict[str, Any]:
    cmd = [sys.executable, HERE, "--worker", variant, "--port", str(port)]
    cmd += ["--total", str(total), "--chunk", str(chunk), "--padding", padding]
    if pace:
        cmd.append("--pace")
    if cold or strace_to:
        cmd.append("--cold")
    if strace_to:
        cmd = ["strace", "-f", "-c", "-o", strace_to, *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {variant} failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def strace_counts(
    port: int, variant: str, total: int, chunk: int, padding: str, pace: bool = False
) -> dict[str, int]:
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        run_worker(port, variant, total, chunk, padding, cold=True, strace_to=out.name, pace=pace)
        counts = {}
        with open(out.name) as summary:
            for line in summary:
                parts = line.split()
                if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit():
                    counts[parts[-1]] = int(parts[3])
        return counts


def interleaved(
    port: int,
    variants: list[tuple[str, str, str]],
    runs: int,
    total: int,
    chunk: int,
    cold: bool,
    pace: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
    for r in range(runs):
        k = r % len(variants)
        for name, kind, padding in variants[k:] + variants[:k]:
            out[name].append(run_worker(port, kind, total, chunk, padding, cold=cold, pace=pace))
    return out


def print_per_chunk(results: dict[str, list[dict[str, Any]]], chunks: int) -> None:
    per = {}
    for name, runs in results.items():
        values = [x["elapsed"] / chunks * 1e6 for x in runs]
        per[name] = statistics.median(values)
        print(f"  {name:30s} {per[name]:6.1f} µs/chunk   (runs: {', '.join(f'{v:.1f}' for v in values)})")
    for name in (OURS, THROUGHPUT[1][0]):
        print(f"  ratio {name} / raw: {per[name] / per[RAW]:.2f}")


def report(port: int, args: argparse.Namespace) -> None:
    size = (args.size_mib or (30 if args.quick else 100)) * MiB
    chunk = args.chunk_kib * 1024
    runs = args.runs or (1 if args.quick else 3)
    small = args.small or (20_000 if args.quick else 50_000)
    warm = "cold processes" if args.cold else "each after a warm-up run in the same process"
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, loopback sink on :{port}")
    print(f"every run in a fresh process ({warm}), variants alternating\n")

    big = interleaved(port, THROUGHPUT, runs, size, chunk, args.cold)
    print(f"Throughput: {size // MiB} MiB in {chunk // 1024} KiB chunks, median of {runs} run(s)")
    med = {}
    for name, results in big.items():
        speeds = [float(x["total"]) / MiB / x["elapsed"] for x in results]
        med[name] = statistics.median(speeds)
        print(f"  {name:30s} {med[name]:7.0f} MiB/s   (runs: {', '.join(f'{v:.0f}' for v in speeds)})")
    for name in (OURS, THROUGHPUT[1][0]):
        ratio = med[name] / med[RAW]
        verdict = "met" if ratio >= 0.8 else "MISSED"
        print(f"  ratio {name} / raw: {ratio:.2f}  (goal >= 0.8: {verdict})")

    ten = 10 * MiB
    print(
        f"\nPeak RSS (VmHWM, MiB) per fresh process, at start -> after its runs ({chunk // 1024} KiB chunks):"
    )
    for name, kind, padding in THROUGHPUT:
        cells = []
        for run in (run_worker(port, kind, ten, chunk, padding, cold=args.cold), big[name][0]):
            before, after = run["before"]["VmHWM"], run["after"]["VmHWM"]
            growth = after - before
            cells.append(f"{run['total'] // MiB:3d} MiB body: {before:5.1f} -> {after:5.1f} (+{growth:4.1f})")
        print(f"  {name:30s} {'   '.join(cells)}")

    tiny = interleaved(port, THROUGHPUT, runs, small * 20, 20, args.cold)
    print(f"\nSmall chunks: {small} x 20 bytes, µs per chunk, median of {runs} run(s)")
    print("  written without a pause: ours holds them for the end of the pass (16 KiB at most), raw does not")
    print_per_chunk(tiny, small)
    paced = small // 2
    tiny = interleaved(port, THROUGHPUT, runs, paced * 20, 20, args.cold, pace=True)
    print(
        f"\nPaced small chunks: {paced} x 20-byte SSE events (text/event-stream), a loop pass after each"
        f"\n  (asyncio.sleep(0), as between an LLM stream's tokens), µs per chunk, median of {runs} run(s)"
    )
    print_per_chunk(tiny, paced)

    print("\nWhere a small chunk's time goes, layer by layer with the I/O taken out (µs per 20-byte chunk)")
    for label, value in layers(min(small, 10_000)):
        print(f"  {label:56s} {value:6.2f}")

    if args.syscalls:
        n = 5000
        print(f"\nSystem calls per 20-byte chunk (strace -f -c, whole cold run of {n} chunks / {n}):")
        if shutil.which("strace") is None:
            print("  strace not found: skipped")
            return
        keys = ("sendmsg", "sendto", "write", "epoll_wait", "epoll_ctl")
        for pace in (False, True):
            print("  paced (a loop pass after each chunk):" if pace else "  unpaced:")
            for name, kind, padding in THROUGHPUT:
                counts = strace_counts(port, kind, n * 20, 20, padding, pace)
                print(f"  {name:30s} " + "  ".join(f"{k} {counts.get(k, 0) / n:4.2f}" for k in keys))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 run per variant, 30 MiB, 20k small chunks")
    parser.add_argument("--size-mib", type=int, default=None, help="throughput body size (default 100)")
    parser.add_argument("--chunk-kib", type=int, default=64, help="throughput chunk size (default 64)")
    parser.add_argument("--runs", type=int, default=None, help="runs per variant (default 3)")
    parser.add_argument("--small", type=int, default=None, help="number of 20-byte chunks (default 50000)")
    parser.add_argument("--syscalls", action="store_true", help="count syscalls per small chunk with strace")
    parser.add_argument("--cold", action="store_true", help="no warm-up run in the worker processes")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["ours", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--padding", default="idle", help=argparse.SUPPRESS)
    parser.add_argument("--pace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        asyncio.run(run_sink())
        return
    if args.worker:
        worker(args)
        return
    sink = subprocess.Popen(
        [sys.executable, HERE, "--sink"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert sink.stdout is not None
        report(int(sink.stdout.readline()), args)
    finally:
        assert sink.stdin is not None
        sink.stdin.close()  # the sink exits at EOF on its stdin
        try:
            sink.wait(timeout=5)
        except subprocess.TimeoutExpired:
            sink.kill()


if __name__ == "__main__":
    main()
