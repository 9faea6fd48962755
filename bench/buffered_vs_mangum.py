"""Buffered invocation: ``lambda_asgi_stream.Adapter`` next to ``mangum.Mangum`` on the same events.

    .venv/bin/python bench/buffered_vs_mangum.py            # ~35 s
    .venv/bin/python bench/buffered_vs_mangum.py --quick    # ~8 s
    .venv/bin/python bench/buffered_vs_mangum.py --profile  # + cProfile of ours, grouped by module

Each handler is called in-process as the managed Python runtime calls it, ``handler(event, context)``,
for a pure ASGI app (no framework), a hello-world Starlette app and a FastAPI app, on a Function URL
(payload 2.0) event and a REST (payload 1.0) event. Before timing, the responses are checked to carry
the same status and body. Of ours the script uses only ``Adapter(app)(event, context)`` (and
``parse_event`` for the floor's scope), so it keeps working while the Adapter's insides change.

Variants, timed in interleaved rounds (the order rotates every round), one ``perf_counter_ns`` sample per
call, median over all samples:

* ``ours``         ``Adapter(app)`` (lifespan ``auto``: run once, on the first call)
* ``mangum-off``   ``Mangum(app, lifespan="off")``
* ``mangum-auto``  ``Mangum(app, lifespan="auto")`` (Mangum's default: a lifespan cycle per call)
* ``floor``        ``loop.run_until_complete(app(scope, receive, send))`` with trivial receive/send and a
                   pre-parsed scope: the cost of the app plus one asyncio task, which no adapter that runs
                   the app on an asyncio loop per call can beat.

Reported per scenario: the adapter *overhead*, median call minus the floor, for ours and for
``mangum-off``, and their ratio (goal <= 0.5); for the pure app also the whole-call ratio ours/mangum-off
(goal <= 0.8), since there the adapter is nearly all of the call.

Then, best effort, a breakdown of ours measured without a profiler (each part in a fresh task on one loop
run, as ``Adapter.__call__`` runs a call); it reads the Adapter's private attributes and the cycle's
classes, and is skipped with a message when those are not there. With ``--profile``, a cProfile of ours
grouped by module (the profiler inflates code that makes many small calls; read it for the shape).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import gc
import pstats
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from event_parse import HEADERS  # this script's folder, bench/, is first on sys.path
from fastapi import FastAPI
from mangum import Mangum
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from lambda_asgi_stream import Adapter, parse_event
from lambda_asgi_stream.events.build import build_event

GOAL = 0.5  # ours / mangum, per call
OVERHEAD_GOAL = 0.5  # (ours - floor) / (mangum-off - floor)
PURE_GOAL = 0.8  # ours / mangum-off, whole call, for the pure ASGI app


# --- apps and events -----------------------------------------------------------------------------


def pure_app() -> Any:
    """A raw ASGI app (``apps/bench_app.py``, shared with invocation_cost.py): no framework, so nearly all
    of a call is the adapter's. It answers 100 bytes of text."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))
    import bench_app

    return bench_app.app


def starlette_app() -> Starlette:
    async def hello(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse("Hello, world!")

    return Starlette(routes=[Route("/hello", hello)])


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"message": "Hello, world!"}

    return app


def events() -> dict[str, dict[str, Any]]:
    return {
        "function-url v2": build_event("function-url", method="GET", path="/hello", headers=HEADERS),
        "rest v1": build_event("rest", method="GET", path="/prod/hello", headers=HEADERS, stage="prod"),
    }


class FakeContext:
    """What the managed runtime passes: both adapters get it; ours reads the deadline from it."""

    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


# --- helpers -------------------------------------------------------------------------------------


def body_of(response: dict[str, Any]) -> bytes:
    raw = response.get("body") or ""
    return base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode("utf-8")


def make_floor(app: Any, event: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[], None]]:
    """The app alone, one task per call, on its own loop: the lower bound for any per-call-loop adapter."""
    loop = asyncio.new_event_loop()
    scope = parse_event(event).scope
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def call() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return request

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(dict(scope, state={}), receive, send)
        return sent

    def run() -> list[dict[str, Any]]:
        return loop.run_until_complete(call())

    return run, loop.close


def timed_rounds(
    variants: dict[str, Callable[[], Any]], rounds: int, calls: int
) -> dict[str, tuple[float, list[float]]]:
    """Interleaved rounds; returns per variant (median µs over all calls, the per-round medians)."""
    samples: dict[str, list[int]] = defaultdict(list)
    per_round: dict[str, list[float]] = defaultdict(list)
    names = list(variants)
    clock = time.perf_counter_ns
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn = variants[name]
            gc.collect()
            batch = []
            for _ in range(calls):
                t0 = clock()
                fn()
                batch.append(clock() - t0)
            samples[name].extend(batch)
            per_round[name].append(statistics.median(batch) / 1000)
    return {n: (statistics.median(samples[n]) / 1000, per_round[n]) for n in names}


def median_us(fn: Callable[[], Any], n: int) -> float:
    for _ in range(min(n, 200)):
        fn()
    ts = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    return statistics.median(ts) / 1000


def in_a_task(loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[Any]]) -> Callable[[], None]:
    """``fn()`` in a fresh task and one run of ``loop``, as ``Adapter.__call__`` runs each call."""

    async def wrapper() -> None:
        try:
            await fn()
        finally:
            loop.stop()

    def run() -> None:
        task = loop.create_task(wrapper())
        loop.run_forever()
        task.result()

    return run


# --- the parts -----------------------------------------------------------------------------------


def scenario(
    app_name: str, app: Any, event_name: str, event: dict[str, Any], rounds: int, calls: int
) -> dict[str, Any]:
    context = FakeContext()
    ours = Adapter(app)
    mangum_off = Mangum(app, lifespan="off")
    mangum_auto = Mangum(app, lifespan="auto")
    floor, close_floor = make_floor(app, event)

    a, b, c = ours(event, context), mangum_off(event, context), mangum_auto(event, context)
    for other in (b, c):
        if (a["statusCode"], body_of(a)) != (other["statusCode"], body_of(other)):
            sys.exit(f"{app_name} / {event_name}: responses differ:\n  ours   {a}\n  mangum {other}")
    if a["statusCode"] != 200:
        sys.exit(f"{app_name} / {event_name}: status {a['statusCode']}, expected 200: {a}")
    header_diff = sorted(set(a.get("headers", {}).items()) ^ set(b.get("headers", {}).items()))

    variants = {
        "ours": lambda: ours(event, context),
        "mangum-off": lambda: mangum_off(event, context),
        "mangum-auto": lambda: mangum_auto(event, context),
        "floor": floor,
    }
    for fn in variants.values():  # warm up
        for _ in range(min(calls, 300)):
            fn()
    results = timed_rounds(variants, rounds, calls)
    _close(ours)
    close_floor()
    return {
        "name": f"{app_name:9s} {event_name}",
        "status": a["statusCode"],
        "body": body_of(a),
        "header_diff": header_diff,
        "results": results,
    }


def _close(adapter: Any) -> None:
    close = getattr(adapter, "close", None)  # not part of the handler contract: only if there is one
    if close is not None:
        close()


# The deadline as the Adapter enforces it: a timer kept across calls, or an anyio cancel scope once the
# app has put anyio's asyncio backend to use (Starlette and FastAPI apps do).
DEADLINE_PART = "the same, with the deadline (timer, or anyio scope)"


def breakdown(app: Any, event: dict[str, Any], n: int) -> list[tuple[str, float]]:
    """Where one call of ours goes, measured without a profiler (medians, µs).

    Each part runs the way ``Adapter.__call__`` runs it: in a fresh task, on one run of the adapter's
    loop (a task's first anyio cancel scope costs more than later ones, so in-task loops would mislead).
    Reads the Adapter's private ``_loop`` and ``_deadline`` and the cycle's classes (the deadline as the
    Adapter runs it: one ``DeadlineTimer`` kept across calls, each call in its own task): raises
    AttributeError, ImportError or TypeError when those have changed.
    """
    from lambda_asgi_stream.cycle import BufferedResponder, DeadlineTimer, HTTPCycle

    context = FakeContext()
    adapter = Adapter(app)
    adapter(event, context)
    loop = adapter._loop
    if not isinstance(loop, asyncio.AbstractEventLoop):
        raise AttributeError("Adapter._loop is not an event loop")
    scope = parse_event(event, context).scope
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def app_alone() -> None:
        async def receive() -> dict[str, Any]:
            return request

        async def send(message: dict[str, Any]) -> None:
            pass

        await app(dict(scope, state={}), receive, send)

    timers: list[DeadlineTimer] = []

    def cycle(deadline: bool) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def run() -> dict[str, Any]:
            responder = BufferedResponder("function-url", multi_value_headers=False)
            cycle = HTTPCycle(dict(scope, state={}), b"", responder)
            if not deadline:
                await cycle.run(app)
                return responder.result()
            task = asyncio.current_task()
            assert task is not None
            if not timers:
                timers.append(DeadlineTimer(loop, task))
            timer = timers[0]
            timer.retarget(task)
            await cycle.run(app, deadline=adapter._deadline(context, timer), timer=timer)
            return responder.result()

        return run

    async def nothing() -> None:
        pass

    rows = [
        ("a task + one loop run, no-op coroutine", median_us(in_a_task(loop, nothing), n)),
        ("parse_event(event)  [events/]", median_us(lambda: parse_event(event, context), n)),
        ("app alone, in a task", median_us(in_a_task(loop, app_alone), n)),
        (
            "app in HTTPCycle + BufferedResponder + encode, no deadline",
            median_us(in_a_task(loop, cycle(False)), n),
        ),
        (DEADLINE_PART, median_us(in_a_task(loop, cycle(True)), n)),
        ("Adapter.__call__", median_us(lambda: adapter(event, context), n)),
    ]
    _close(adapter)
    return rows


GROUPS = [
    ("lambda_asgi_stream/events/", "ours: events/ (parse)"),
    ("lambda_asgi_stream/cycle.py", "ours: cycle.py"),
    ("lambda_asgi_stream/encoder.py", "ours: encoder.py"),
    ("lambda_asgi_stream/adapter.py", "ours: adapter.py"),
    ("lambda_asgi_stream/", "ours: other"),
    ("/asyncio/", "asyncio (loop, tasks)"),
    ("/anyio/", "anyio + sniffio"),
    ("/sniffio/", "anyio + sniffio"),
    ("/starlette/", "app framework"),
    ("/fastapi/", "app framework"),
    ("/pydantic", "app framework"),
    ("bench/", "the app's endpoint"),
    ("~", "C builtins (any caller)"),
]


def profile(app: Any, event: dict[str, Any], calls: int) -> None:
    context = FakeContext()
    adapter = Adapter(app)
    for _ in range(300):
        adapter(event, context)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        adapter(event, context)
    prof.disable()
    _close(adapter)
    stats = pstats.Stats(prof)
    by_group: dict[str, float] = defaultdict(float)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = 0.0
    for (filename, _line, _func), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        total += tottime
        group = next((label for key, label in GROUPS if key in filename), "other")
        by_group[group] += tottime
    print(f"\ncProfile of ours, {calls} calls, tottime grouped by module (profiler overhead included):")
    for group, seconds in sorted(by_group.items(), key=lambda kv: -kv[1]):
        print(f"  {group:28s} {seconds / calls * 1e6:7.1f} µs/call  {seconds / total:5.1%}")
    print("\nTop functions of ours by cumulative time:")
    stats.sort_stats("cumulative")
    width = 0
    rows = []
    for (filename, line, func), (_cc, nc, _tt, cumtime, _callers) in raw.items():
        if "lambda_asgi_stream" in filename:
            short = filename.split("lambda_asgi_stream/", 1)[1]
            rows.append((cumtime, f"{short}:{line} {func}", nc))
            width = max(width, len(rows[-1][1]))
    for cumtime, where, nc in sorted(rows, reverse=True)[:14]:
        print(f"  {where:{width}s} {cumtime / calls * 1e6:7.1f} µs/call  ({nc // calls} calls/call)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls (~8 s)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 12)")
    parser.add_argument("--calls", type=int, default=None, help="calls per variant per round (default 600)")
    parser.add_argument("--profile", action="store_true", help="cProfile ours, grouped by module")
    args = parser.parse_args()
    rounds = args.rounds or (4 if args.quick else 12)
    calls = args.calls or (250 if args.quick else 600)

    print(f"python {sys.version.split()[0]}, {rounds} interleaved rounds x {calls} calls per variant")
    apps = {"pure asgi": pure_app(), "starlette": starlette_app(), "fastapi": fastapi_app()}
    rows = []
    for app_name, app in apps.items():
        for event_name, event in events().items():
            rows.append(scenario(app_name, app, event_name, event, rounds, calls))

    print("\nSame status and body before timing:")
    for row in rows:
        diff = ", ".join(f"{k}={v}" for k, v in row["header_diff"]) or "none"
        print(f"  {row['name']:26s} {row['status']} {row['body']!r}; header differences vs mangum: {diff}")

    print("\nMedian µs per call (spread of per-round medians in brackets):")
    print(
        f"  {'scenario':26s} {'ours':>17s} {'mangum-off':>17s} {'mangum-auto':>17s} {'floor':>17s}"
        f" {'ours/off':>9s} {'ours/auto':>9s} {'floor/off':>9s}"
    )
    for row in rows:
        res = row["results"]
        cells = []
        for name in ("ours", "mangum-off", "mangum-auto", "floor"):
            med, per_round = res[name]
            cells.append(f"{med:6.1f} [{min(per_round):4.0f}-{max(per_round):4.0f}]")
        ours = res["ours"][0]
        print(
            f"  {row['name']:26s} {' '.join(cells)}"
            f" {ours / res['mangum-off'][0]:9.2f} {ours / res['mangum-auto'][0]:9.2f}"
            f" {res['floor'][0] / res['mangum-off'][0]:9.2f}"
        )
    print_overheads(rows)
    worst_off = max(r["results"]["ours"][0] / r["results"]["mangum-off"][0] for r in rows)
    worst_auto = max(r["results"]["ours"][0] / r["results"]["mangum-auto"][0] for r in rows)
    best_floor = min(r["results"]["floor"][0] / r["results"]["mangum-off"][0] for r in rows)
    print(
        f"\nGoal ours/mangum <= {GOAL}: vs lifespan=off worst {worst_off:.2f} "
        f"({'met' if worst_off <= GOAL else 'MISSED'}); vs lifespan=auto worst {worst_auto:.2f} "
        f"({'met' if worst_auto <= GOAL else 'MISSED'})."
    )
    print(
        f"The floor (app + one asyncio task, no adapter at all) is already {best_floor:.2f}x mangum-off "
        "at best: that is the lowest ratio any per-call-loop adapter can reach against it."
    )

    print("\nBreakdown of ours, starlette / function-url v2 (medians, µs, no profiler):")
    try:
        parts = breakdown(apps["starlette"], events()["function-url v2"], 2000 if args.quick else 5000)
    except (AttributeError, ImportError, TypeError) as exc:
        print(f"  skipped: it reads the Adapter's and the cycle's internals, which have changed ({exc!r})")
        parts = []
    else:
        print_breakdown(parts)

    if args.profile:
        profile(apps["starlette"], events()["function-url v2"], 3000 if args.quick else 10000)


def print_overheads(rows: list[dict[str, Any]]) -> None:
    """The adapter's own cost: median call minus the floor (the app alone in one asyncio task)."""
    print(f"\nAdapter overhead = median call - floor, µs (goal ours/mangum-off <= {OVERHEAD_GOAL}):")
    print(f"  {'scenario':26s} {'ours':>8s} {'mangum-off':>11s} {'ratio':>7s}  {'whole call ours/off':>20s}")
    for row in rows:
        res = row["results"]
        floor = res["floor"][0]
        ours, off = res["ours"][0] - floor, res["mangum-off"][0] - floor
        ratio = ours / off if off > 0 else float("nan")
        verdict = "met" if ratio <= OVERHEAD_GOAL else "MISSED"
        whole = res["ours"][0] / res["mangum-off"][0]
        whole_text = f"{whole:.2f}"
        if row["name"].startswith("pure"):
            whole_text += f" ({'met' if whole <= PURE_GOAL else 'MISSED'}: goal <= {PURE_GOAL})"
        print(f"  {row['name']:26s} {ours:8.1f} {off:11.1f} {ratio:7.2f}  {verdict:6s} {whole_text}")


def print_breakdown(parts: list[tuple[str, float]]) -> None:
    for label, value in parts:
        print(f"  {label:60s} {value:7.1f}")
    values = dict(parts)
    task_us = values["a task + one loop run, no-op coroutine"]
    parse_us = values["parse_event(event)  [events/]"]
    app_us = values["app alone, in a task"]
    cycle_us = values["app in HTTPCycle + BufferedResponder + encode, no deadline"]
    deadline_us = values[DEADLINE_PART]
    call_us = values["Adapter.__call__"]
    print(
        "  => per call: "
        + ", ".join(
            [
                f"task + loop run {task_us:.0f}",
                f"app {app_us - task_us:.0f}",
                f"cycle/responder/encoder {cycle_us - app_us:.0f}",
                f"deadline {deadline_us - cycle_us:.0f}",
                f"event parsing {parse_us:.0f}",
                f"rest of the adapter {call_us - deadline_us - parse_us:.0f} µs",
            ]
        )
    )


if __name__ == "__main__":
    main()
