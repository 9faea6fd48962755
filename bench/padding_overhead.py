"""Padding overhead of an LLM-like SSE stream, and what the padding buys under Lambda's hold-back.

    .venv/bin/python bench/padding_overhead.py            # realistic pacing, ~15 s
    .venv/bin/python bench/padding_overhead.py --quick    # pacing scaled down 5x (~5 ms/token), ~3 s

An ASGI app streams 500 OpenAI-style ``chat.completion.chunk`` events (then ``data: [DONE]``) as
``text/event-stream``, paced like a hosted model: bursty, most gaps 20-50 ms, some tokens 0.5-2 ms
apart (a seeded random schedule, the same for every policy). The same app runs, concurrently and on the
same schedule, through the runtime's cycle with each padding policy, configured exactly as the runtime
configures it (``Config.from_env`` with ``LAMBDA_ASGI_STREAM_PADDING``, ``_PADDING_IDLE_MS``,
``_PADDING_THRESHOLD``, ``_PADDING_BUDGET``, ``_PADDING_RATE``, ``_PADDING_LATENCY_MS``; ``none`` ->
``StreamingResponder``, otherwise
``PaddedStreamingResponder``, as ``LambdaRuntime._stream`` picks). A recording writer timestamps every
write.

Then the recorded writes (body and padding, not the prelude) are fed to ``buffering.HoldBack`` (the
100 KiB model of Lambda's hold-back of small writes that the emulator uses) to find when each event would
reach the client. Reported per policy: payload bytes, padding bytes, padding/payload, padding against
the reference ``ceil(D / T) * H`` (what a stream of D seconds must cost with a latency target T and a
hold-back of H bytes: a push per T), and how many token events arrive late (more than ``--late-ms`` after
they were written), with the delay percentiles.

    .venv/bin/python bench/padding_overhead.py --late-ms 200                     # 100 KiB model
    .venv/bin/python bench/padding_overhead.py --late-ms 200 --threshold 16384   # 16 KiB model
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from lambda_asgi_stream.buffering import Bandwidth, HoldBack
from lambda_asgi_stream.config import Config
from lambda_asgi_stream.cycle import HTTPCycle, PaddedStreamingResponder, PlainWriter, StreamingResponder
from lambda_asgi_stream.events import parse_event
from lambda_asgi_stream.events.build import build_event

TOKENS = 500
TEXT = (
    "Streaming lets the first words reach the reader while the rest is still being written so a long "
    "answer feels quick even when the whole of it takes several seconds to produce"
)
WORDS = TEXT.split(" ")


def schedule(tokens: int, scale: float, seed: int) -> list[float]:
    """Seconds to wait before each token: bursty, like a hosted model's output."""
    rng = random.Random(seed)
    gaps = [0.25 * scale]  # time to first token
    for _ in range(tokens - 1):
        if rng.random() < 0.3:
            gaps.append(rng.uniform(0.0005, 0.002) * scale)  # a burst: tokens decoded together
        else:
            gaps.append(rng.uniform(0.020, 0.050) * scale)
    return gaps


def chunk_event(i: int, word: str) -> bytes:
    payload = {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1732500000,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": {"content": (" " if i else "") + word}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def sse_app(gaps: list[float]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i, gap in enumerate(gaps):
            await anyio.sleep(gap)
            event = chunk_event(i, WORDS[i % len(WORDS)])
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    return app


@dataclass
class Recorder(PlainWriter):
    """A StreamWriter that keeps (time, bytes) of every write."""

    writes: list[tuple[float, bytes]] = field(default_factory=list)
    ended: float = 0.0

    async def write(self, data: bytes) -> None:
        self.writes.append((time.perf_counter(), data))

    async def close(self, trailers: Any) -> None:
        self.ended = time.perf_counter()


@dataclass
class Outcome:
    name: str
    env: dict[str, str]
    recorder: Recorder = field(default_factory=Recorder)
    stats_padding: int = 0


async def run_policy(outcome: Outcome, gaps: list[float], scope: dict[str, Any]) -> None:
    config = Config.from_env(outcome.env)
    recorder = outcome.recorder
    responder: StreamingResponder
    if config.padding.mode == "none":
        responder = StreamingResponder(recorder, "function-url")
    else:
        responder = PaddedStreamingResponder(recorder, "function-url", config.padding, config.sse)
    result = await HTTPCycle(dict(scope, state={}), b"", responder).run(sse_app(gaps))
    if result.end != "complete":
        raise SystemExit(f"{outcome.name}: the stream ended with {result}")
    outcome.stats_padding = responder.stats.padding


def analyse(outcome: Outcome, threshold: int, late_s: float, latency_s: float) -> dict[str, Any]:
    writes = outcome.recorder.writes[1:]  # the first write is the prelude, which the model does not hold
    hold = HoldBack(threshold)
    bandwidth = Bandwidth()
    lag = 0.0  # the most the bandwidth model (6 MiB burst, then 2 MiB/s) puts a write behind
    payload = padding = pads = 0
    written: list[float] = []  # per data event: when the app's write happened
    delivered: list[float] = []  # per data event: when the hold-back model released it
    for at, data in writes:
        if data.startswith(b"data:"):
            payload += len(data)
            written.append(at)
        else:  # SSE comment lines: padding (and heartbeats, none at this pacing)
            padding += len(data)
            pads += 1
        lag = max(lag, bandwidth.delay(len(data), at))
        if hold.feed(data):
            delivered.extend([at] * (len(written) - len(delivered)))
    delivered.extend([outcome.recorder.ended] * (len(written) - len(delivered)))
    delays = [(d - w) * 1000 for w, d in zip(written[:TOKENS], delivered[:TOKENS], strict=True)]
    late = [i for i, delay in enumerate(delays) if delay > late_s * 1000]
    if padding != outcome.stats_padding:
        raise SystemExit(
            f"{outcome.name}: counted {padding} padding bytes, responder says {outcome.stats_padding}"
        )
    ordered = sorted(delays)
    duration = outcome.recorder.ended - writes[0][0]  # D: first body write to the end of the response
    reference = math.ceil(duration / latency_s) * threshold
    return {
        "reference": reference,
        "duration": duration,
        "payload": payload,
        "padding": padding,
        "pads": pads,
        "events": len(written),
        "late": len(late),
        "first_late": late[0] if late else None,
        "p50": statistics.median(delays),
        "p95": ordered[int(0.95 * (len(ordered) - 1))],
        "max": ordered[-1],
        "lag": lag,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="pacing scaled by 0.2 (~5 ms/token)")
    parser.add_argument("--scale", type=float, default=None, help="pacing factor (default 1.0; --quick 0.2)")
    parser.add_argument(
        "--idle-ms", type=int, default=5, help="LAMBDA_ASGI_STREAM_PADDING_IDLE_MS (default 5)"
    )
    parser.add_argument("--threshold", type=int, default=100 * 1024, help="hold-back and padding threshold")
    parser.add_argument(
        "--latency-ms", type=int, default=200, help="LAMBDA_ASGI_STREAM_PADDING_LATENCY_MS (default 200)"
    )
    parser.add_argument("--late-ms", type=float, default=100.0, help="a token is late past this delay")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    scale = args.scale or (0.2 if args.quick else 1.0)
    gaps = schedule(TOKENS, scale, args.seed)
    scope = parse_event(build_event("function-url", method="POST", path="/v1/chat/completions")).scope
    base = {
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "LAMBDA_ASGI_STREAM_PADDING_IDLE_MS": str(args.idle_ms),
        "LAMBDA_ASGI_STREAM_PADDING_THRESHOLD": str(args.threshold),
        "LAMBDA_ASGI_STREAM_PADDING_LATENCY_MS": str(args.latency_ms),
    }
    idle = {**base, "LAMBDA_ASGI_STREAM_PADDING": "idle"}
    outcomes = [
        Outcome("none", {**base, "LAMBDA_ASGI_STREAM_PADDING": "none"}),
        Outcome(f"idle, latency {args.latency_ms} ms (default)", idle),
        Outcome(
            "idle, latency 0 (pad at every pause)", {**idle, "LAMBDA_ASGI_STREAM_PADDING_LATENCY_MS": "0"}
        ),
        Outcome("idle, hard 4 MiB budget (rate 0)", {**idle, "LAMBDA_ASGI_STREAM_PADDING_RATE": "0"}),
        Outcome(
            "idle, budget unlimited",
            {
                **idle,
                "LAMBDA_ASGI_STREAM_PADDING_BUDGET": str(10**12),
                "LAMBDA_ASGI_STREAM_PADDING_RATE": "0",
            },
        ),
    ]
    gap_ms = [g * 1000 for g in gaps[1:]]
    bursts = sum(g < 5 * scale for g in gap_ms)
    print(
        f"python {sys.version.split()[0]}; {TOKENS} tokens, pacing x{scale}: gaps median "
        f"{statistics.median(gap_ms):.1f} ms, mean {statistics.mean(gap_ms):.1f} ms, {bursts} burst gaps "
        f"(< {5 * scale:g} ms)\nidle_ms {args.idle_ms}, threshold {args.threshold} B, "
        f"latency target {args.latency_ms} ms, late = delivered > {args.late_ms:g} ms after written"
    )
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="  runtime log: %(message)s")

    async def run_all() -> None:
        async with anyio.create_task_group() as group:
            for outcome in outcomes:
                group.start_soon(run_policy, outcome, gaps, scope)

    started = time.perf_counter()
    anyio.run(run_all)
    print(f"all policies ran concurrently in {time.perf_counter() - started:.1f} s\n")

    header = (
        f"  {'policy':40s} {'payload B':>10s} {'padding B':>11s} {'pad/payload':>11s} {'pad/ref':>7s}"
        f" {'pads':>5s}"
        f" {'late tokens':>12s} {'1st late':>8s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}"
        f" {'bw lag s':>8s}"
    )
    print(header)
    reference = None
    for outcome in outcomes:
        r = analyse(outcome, args.threshold, args.late_ms / 1000, args.latency_ms / 1000)
        reference = reference or r
        first = "-" if r["first_late"] is None else f"#{r['first_late']}"
        print(
            f"  {outcome.name:40s} {r['payload']:10d} {r['padding']:11d} {r['padding'] / r['payload']:11.1f}"
            f" {r['padding'] / r['reference']:7.2f} {r['pads']:5d} {r['late']:8d}/{TOKENS:<3d} {first:>8s}"
            f" {r['p50']:8.1f} {r['p95']:8.1f}"
            f" {r['max']:8.1f} {r['lag']:8.2f}"
        )
    assert reference is not None
    print(
        f"\nreference: ceil(D / T) * H = ceil({reference['duration']:.2f} s / {args.latency_ms / 1000:g} s)"
        f" * {args.threshold} B = {reference['reference']} B; pad/ref: padding against it"
    )
    print(
        "late: released by the hold-back model more than --late-ms after the app wrote it; p50/p95/max:"
        f" that delay over the {TOKENS} token events;\nbw lag: how far behind the writes would fall under"
        " buffering.Bandwidth (6 MiB uncapped, then 2 MiB/s), not included in the delays."
    )


if __name__ == "__main__":
    main()
