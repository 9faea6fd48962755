"""Fuzz the event parsers, and the runtime loop behind them, with damaged corpus events.

    .venv/bin/python bench/fuzz_events.py                       # 60 s
    .venv/bin/python bench/fuzz_events.py --seconds 600 --out /tmp/fuzz
    .venv/bin/python bench/fuzz_events.py --iterations 200000 --loop-every 1
    .venv/bin/python bench/fuzz_events.py --quick               # 10 s
    .venv/bin/python bench/fuzz_events.py --replay /tmp/fuzz/fail-0001.json

A longer run than the test suite's property tests (``tests/events/test_properties.py``, ~500 damaged
events): each round takes every event of ``tests/events/corpus/*.json`` (read as data), damages a copy
(1 to 4 of: delete a key, set it to null, give it a value of another type, a huge string (64 KiB to
1 MiB), thousands of entries, a well-known key (``isBase64Encoded``, ``cookies``, ...) set to odd
values, an odd string (empty, ``%zz``, NUL, CR LF, lone surrogates, RTL marks, combining characters), a
random Unicode string, deep nesting (up to 400 levels), a new key, a list where an object was, or the
whole event replaced) and checks:

* ``parse_event`` gives a valid ASGI scope (the invariants an ASGI server promises an app: type, an
  upper-case method, a path starting with ``/`` and with ``root_path``, ASCII ``raw_path`` and
  ``query_string``, lower-case byte header names, no CR/LF/NUL in header values, client and server
  tuples, the event kept JSON-able) or the typed ``EventError``, never another exception;
* every ``--loop-every``'th damaged event (default: each one) also goes, as the JSON bytes Lambda would
  send, through the whole runtime loop in this process: a real ``LambdaRuntime`` (one worker) against a
  loopback Runtime API (the emulator's ``LocalRuntimeAPI``), so ``next``, the event parse, the ASGI cycle,
  the encoder and the streaming or buffered ``POST`` all run. The app checks the scope it gets and
  answers 200. Every invocation must be answered once: a response (streamed without error trailers, or
  buffered with status 200) when ``parse_event`` accepted the event, an ``.../error`` report of the same
  error type when it refused it. Some rounds also send raw bytes (cut JSON, invalid UTF-8, a BOM,
  100,000 nested brackets, a number too long to read): bytes that are not JSON must be answered on
  ``.../error`` as ``Function.MalformedEvent``, JSON that is no HTTP event as ``parse_event`` judges it.

Any other outcome is a failure: printed, and the damaged event written to ``--out`` as a reproducer
(``{"corpus": ..., "base_path": ..., "event": ... | "raw": base64, "outcome": ...}``), which
``--replay FILE`` runs again. Exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import base64
import copy
import dataclasses
import json
import logging
import math
import random
import re
import sys
import time
import traceback
from collections import Counter
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import anyio

from lambda_asgi_stream import EventError
from lambda_asgi_stream.config import Config
from lambda_asgi_stream.emulator.local_api import (
    BufferedResult,
    InvocationFailed,
    LocalRuntimeAPI,
    StreamData,
    StreamEnd,
)
from lambda_asgi_stream.events import parse_event
from lambda_asgi_stream.padding import PaddingPolicy
from lambda_asgi_stream.runtime import LambdaRuntime

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "tests" / "events" / "corpus").glob("*.json"))
LOOP_TIMEOUT_S = 30.0
MAX_FAILURES_SHOWN = 20

ODD = [
    "",
    " ",
    "/",
    "?",
    "%",
    "%zz",
    "%00",
    "%2F..%2F",
    "\x00",
    "a\r\nb: c",
    "\r\n\r\n",
    "//x",
    "../..",
    "\ud800",
    "\udfff\ud800",
    "\u2603",
    "\u202e\u202d",
    "e\u0301\u0301\u0301",
    "\ufeff",
    "\U0001f600" * 20,
    "é" * 40,
    "0",
    "-1",
    "1e309",
    "NaN",
    "null",
    "true",
    "[]",
    "{}",
    "GET",
    "get",
    "HTTP/1.1",
    "\t",
    "\x7f",
    "\x1b[31m",
]


def _random_text(rng: random.Random) -> str:
    size = rng.choice([1, 3, 12, 100])
    if rng.random() < 0.5:
        return "".join(chr(rng.randint(0, 0x7F)) for _ in range(size))
    # any code point, lone surrogates included (JSON can carry them as \\ud800 escapes)
    return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(size))


def _leaf(rng: random.Random) -> Any:
    pick = rng.randrange(9)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**70, 10**400 if rng.random() < 0.1 else 7])
    if pick == 3:
        return rng.choice([0.0, -0.0, 1.5, 1e308, -1e-308, math.inf, -math.inf])
    if pick in (4, 5):
        return rng.choice(ODD)
    if pick == 6:
        return _random_text(rng)
    if pick == 7:
        return rng.choice([[], {}])
    return [rng.choice(ODD), rng.randint(-5, 5)]


def _value(rng: random.Random, depth: int = 0) -> Any:
    if depth < 3 and rng.random() < 0.3:
        if rng.random() < 0.5:
            return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice([*ODD, "headers", "body", "path"]): _value(rng, depth + 1) for _ in range(3)}
    return _leaf(rng)


def _huge(rng: random.Random) -> str:
    size = rng.choice([64 * 1024, 256 * 1024, 1024 * 1024])
    unit = rng.choice(["a", "%", "/", "é", "\u2603", "a,b;", "%2F", "\x00"])
    return unit * (size // len(unit))


def _nested(rng: random.Random) -> Any:
    depth = rng.choice([10, 50, 100, 400])
    value: Any = rng.choice(ODD)
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


def _places(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        found.append((*at, key))
        if len(at) < 12:
            found.extend(_places(child, (*at, key)))
    return found


ACTIONS = [
    "delete",
    "null",
    "retype",
    "huge",
    "odd",
    "unicode",
    "nest",
    "insert",
    "listify",
    "empty",
    "many",
    "flag",
]
FLAGS = ("isBase64Encoded", "multiValueHeaders", "cookies", "queryStringParameters", "requestContext")


def mutate(event: Any, rng: random.Random) -> tuple[Any, list[str]]:
    """A damaged deep copy of ``event`` and what was done to it."""
    event = copy.deepcopy(event)
    done = []
    if rng.random() < 0.01:
        return _value(rng), ["replace the whole event"]
    for _ in range(rng.randint(1, 4)):
        places = _places(event)
        if not places:
            break
        place = rng.choice(places)
        parent: Any = event
        for key in place[:-1]:
            parent = parent[key]
        key = place[-1]
        action = rng.choice(ACTIONS)
        if action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "delete":
            parent.pop(key)
        elif action == "null":
            parent[key] = None
        elif action == "retype":
            parent[key] = _value(rng)
        elif action == "huge":
            parent[key] = _huge(rng)
        elif action == "odd":
            parent[key] = rng.choice(ODD)
        elif action == "unicode":
            parent[key] = _random_text(rng)
        elif action == "nest":
            parent[key] = _nested(rng)
        elif action == "insert" and isinstance(parent, dict):
            parent[rng.choice([*ODD, _random_text(rng)])] = _value(rng)
        elif action == "insert":
            parent.insert(key, _value(rng))
        elif action == "many":  # thousands of entries where a few are expected
            n = rng.choice([1000, 10_000])
            if rng.random() < 0.5:
                parent[key] = {f"k{i}": rng.choice(ODD) for i in range(n)}
            else:
                parent[key] = [rng.choice(ODD) for _ in range(n)]
        elif action == "flag" and isinstance(event, dict):  # a well-known key, toggled or given odd content
            name = rng.choice(FLAGS)
            event[name] = rng.choice([True, False, "true", 1, [], {}, None, rng.choice(ODD)])
        elif action == "listify":
            parent[key] = [parent[key]] if not isinstance(parent[key], dict) else list(parent[key].items())
        else:
            parent[key] = type(parent[key])() if isinstance(parent[key], (dict, list, str)) else 0
        done.append(f"{action} {'.'.join(map(str, place))[:80]}")
    return event, done


RAW = [
    b"",
    b"{",
    b'{"version": "2.0"',
    b"[" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"\xef\xbb\xbf{}",
    b"\xff\xfe{}",
    b'{"version": "2.0", "rawPath": "\xff\xff"}',
    b"nul\x00l",
    b"NaN",
    b"1" * 5000,
    b'"' + b"\\ud800" * 10 + b'"',
]


# --- the scope's invariants ------------------------------------------------------------------------------


def check_scope(scope: dict[str, Any], body: bytes) -> None:
    """What an ASGI server promises an app (ASGI 3, HTTP connection scope); AssertionError when not."""
    assert scope["type"] == "http", scope["type"]
    assert isinstance(scope["asgi"], dict) and scope["asgi"].get("version", "3.0").startswith("3")
    assert scope["http_version"] in ("1.0", "1.1", "2", "3"), scope["http_version"]
    method = scope["method"]
    assert isinstance(method, str) and method and method == method.upper(), method
    assert isinstance(scope["path"], str) and scope["path"].startswith("/"), scope["path"]
    assert isinstance(scope["raw_path"], bytes) and scope["raw_path"].isascii()
    assert isinstance(scope["query_string"], bytes) and scope["query_string"].isascii()
    assert isinstance(scope["root_path"], str) and scope["path"].startswith(scope["root_path"])
    assert scope["scheme"] in ("http", "https"), scope["scheme"]
    assert isinstance(scope["headers"], list)
    for pair in scope["headers"]:
        name, value = pair
        assert type(name) is bytes and type(value) is bytes and name == name.lower(), pair
        assert name and b"\r" not in name and b"\n" not in name and b":" not in name, pair
        assert b"\r" not in value and b"\n" not in value and b"\x00" not in value, pair
    client, server = scope["client"], scope["server"]
    assert client is None or (isinstance(client[0], str) and isinstance(client[1], int)), client
    assert server is None or (isinstance(server[0], str) and (server[1] is None or 0 < server[1] < 65536)), (
        server
    )
    json.dumps(scope["aws.event"], default=repr)  # still the event as given
    assert isinstance(body, bytes)


def parse_outcome(event: Any, base_path: str) -> tuple[str, str]:
    """(outcome, detail): ``scope``, ``EventError:<type>`` or ``FAIL:...`` (with a traceback)."""
    try:
        request = parse_event(event, None, base_path=base_path)
    except EventError as exc:
        return f"EventError:{exc.error_type}", str(exc)[:200]
    except Exception as exc:
        return f"FAIL:parse raised {type(exc).__name__}", traceback.format_exc()
    try:
        check_scope(request.scope, request.body)
    except Exception as exc:
        return f"FAIL:invalid scope ({type(exc).__name__})", f"{exc!r}\n{traceback.format_exc()}"
    return "scope", ""


# --- the runtime loop --------------------------------------------------------------------------------


class ScopeProblems:
    """The app of the loop: checks its scope, answers 200 with a short text body."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            check_scope(dict(scope), b"")
        except Exception as exc:
            self.problems.append(f"the app got an invalid scope: {exc!r}")
        while (await receive()).get("more_body"):
            pass
        text = f"{scope['method']} {len(scope['path'])} {len(scope['headers'])}".encode()
        headers = [(b"content-type", b"text/plain"), (b"x-path-length", str(len(scope["path"])).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": text})


#: LogWatch's key of the per-invocation line (``cycle.log_invocation``, through ``logger.info("%s", ...)``).
INVOCATION_LINE = "INFO '%s'"
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


class LogWatch(logging.Handler):
    """Counts the runtime's log lines whose message holds a control character (a line break, ESC), by
    level: such a line lets whoever chose the text start a forged line of its own. The per-invocation
    INFO line escapes what a client chose, so one there is a failure; the rest is reported."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines = 0
        self.unsafe: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1
        try:
            message = record.getMessage()
        except Exception as exc:
            message = f"<getMessage failed: {exc!r}>\n"
        if CONTROL.search(message):
            key = f"{record.levelname} {str(record.msg)[:40]!r}"
            self.unsafe[key] += 1
            self.examples.setdefault(key, message[:300])


class Loop:
    """One runtime loop serving the fuzz app from a loopback Runtime API, in this process."""

    def __init__(self, api: LocalRuntimeAPI, app: ScopeProblems, runtime_died: list[BaseException]) -> None:
        self.api = api
        self.app = app
        self.runtime_died = runtime_died

    async def invoke(self, raw: bytes) -> tuple[str, str]:
        """(outcome, detail): ``response:stream``, ``response:buffered``, ``error:<type>`` or ``FAIL:...``."""
        self.app.problems.clear()
        items: list[Any] = []
        with anyio.move_on_after(LOOP_TIMEOUT_S) as scope:
            async for item in self.api.invoke(raw, timeout_s=LOOP_TIMEOUT_S):
                if not isinstance(item, StreamData):
                    items.append(item)
        if self.runtime_died:
            return "FAIL:the runtime loop ended", repr(self.runtime_died[0])
        if scope.cancelled_caught:
            return "FAIL:no answer (timed out)", ""
        if self.app.problems:
            return "FAIL:invalid scope in the app", "; ".join(self.app.problems)
        if len(items) != 1:
            return f"FAIL:{len(items)} answers", repr(items)[:500]
        (item,) = items
        if isinstance(item, StreamEnd):
            if item.error is not None:
                return f"FAIL:stream ended with {item.error[0]}", repr(item.error[1])[:1000]
            return "response:stream", ""
        if isinstance(item, BufferedResult):
            payload = item.payload
            status = payload.get("statusCode", payload.get("status")) if isinstance(payload, dict) else None
            if str(status) != "200":
                return f"FAIL:buffered status {status}", repr(payload)[:500]
            return "response:buffered", ""
        assert isinstance(item, InvocationFailed)
        return f"error:{item.error_type}", json.dumps(item.payload)[:300]


async def _serve_loop(base_path: str, stop: anyio.Event, *, task_status: Any) -> None:
    api = LocalRuntimeAPI()
    app = ScopeProblems()
    died: list[BaseException] = []
    async with anyio.create_task_group() as group:
        address = await group.start(api.serve, "127.0.0.1", 0)
        config = Config(
            runtime_api=address, lifespan="off", padding=PaddingPolicy(mode="none"), base_path=base_path
        )
        runtime = LambdaRuntime(app, config, handle_signals=False, blocking_waits=False)

        async def run() -> None:
            try:
                await runtime.serve()
            except BaseException as exc:
                died.append(exc)
                raise

        group.start_soon(run)
        task_status.started(Loop(api, app, died))
        await stop.wait()
        group.cancel_scope.cancel()


# --- the run -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Totals:
    parse: Counter[str] = dataclasses.field(default_factory=Counter)
    loop: Counter[str] = dataclasses.field(default_factory=Counter)
    actions: Counter[str] = dataclasses.field(default_factory=Counter)
    failures: list[str] = dataclasses.field(default_factory=list)
    iterations: int = 0
    raw_sent: int = 0
    elapsed: float = 0.0
    log: LogWatch = dataclasses.field(default_factory=lambda: LogWatch())


def _as_json(event: Any, rng: random.Random) -> bytes:
    """The event as Lambda sends it: UTF-8 JSON (a lone surrogate only as a ``\\ud800`` escape)."""
    if rng.random() < 0.5:
        try:
            return json.dumps(event, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            pass
    return json.dumps(event).encode()


def _expected_raw(raw: bytes) -> str:
    """Bytes that are not JSON are a MalformedEvent; JSON that is no HTTP event, what parse_event says."""
    try:
        event = json.loads(raw)
    except Exception:
        return "error:Function.MalformedEvent"
    return _expected_loop(parse_outcome(event, "")[0])


def _expected_loop(parsed: str) -> str:
    """What the loop must answer for an event ``parse_event`` judged ``parsed``."""
    if parsed == "scope":
        return "response"
    return "error:" + parsed.partition(":")[2]


def _record(totals: Totals, out: Path, case: dict[str, Any], outcome: str, detail: str) -> None:
    number = len(totals.failures) + 1
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"fail-{number:04d}.json"
    path.write_text(json.dumps({**case, "outcome": outcome, "detail": detail[-4000:]}, ensure_ascii=True))
    totals.failures.append(
        f"{outcome} [{case.get('corpus')}: {'; '.join(case.get('mutations', []))}] -> {path}"
    )
    if len(totals.failures) <= MAX_FAILURES_SHOWN:
        print(f"  FAIL {outcome}: {case.get('corpus')} {case.get('mutations')} -> {path}", flush=True)
        print("    " + detail.strip().splitlines()[-1][:300] if detail.strip() else "", flush=True)


async def fuzz(args: argparse.Namespace) -> Totals:
    rng = random.Random(args.seed)
    corpus = [(path.stem, json.loads(path.read_text("utf-8"))) for path in CORPUS]
    totals = Totals()
    logger = logging.getLogger("lambda_asgi_stream")
    logger.addHandler(totals.log)
    out = Path(args.out)
    stop = anyio.Event()
    started = time.monotonic()
    last_report = started
    async with anyio.create_task_group() as group:
        loops: dict[str, Loop] = {}
        for base_path in sorted({case.get("base_path", "") for _, case in corpus}):
            loops[base_path] = await group.start(_serve_loop, base_path, stop)
        while True:
            for name, case in corpus:
                if args.iterations and totals.iterations >= args.iterations:
                    break
                if not args.iterations and time.monotonic() - started >= args.seconds:
                    break
                totals.iterations += 1
                event, done = mutate(case["event"], rng)
                totals.actions.update(d.split()[0] for d in done)
                base_path = case.get("base_path", "")
                parsed, detail = parse_outcome(event, base_path)
                totals.parse[parsed] += 1
                record = {"corpus": name, "base_path": base_path, "event": event, "mutations": done}
                if parsed.startswith("FAIL"):
                    _record(totals, out, record, parsed, detail)
                    continue
                if totals.iterations % args.loop_every:
                    continue
                loop = loops[base_path]
                forged = totals.log.unsafe[INVOCATION_LINE]
                answered, detail = await loop.invoke(_as_json(event, rng))
                totals.loop[answered] += 1
                if answered.startswith("FAIL") or not answered.startswith(_expected_loop(parsed)):
                    _record(totals, out, record, f"loop answered {answered}, parse gave {parsed}", detail)
                if totals.log.unsafe[INVOCATION_LINE] != forged:
                    line = totals.log.examples[INVOCATION_LINE]
                    _record(totals, out, record, "a control character in the per-invocation log line", line)
                if loop.runtime_died:
                    print("  the runtime loop ended: stopping", flush=True)
                    stop.set()
                    totals.elapsed = time.monotonic() - started
                    return totals
            else:
                if rng.random() < args.raw_share * len(corpus):
                    raw = rng.choice(RAW)
                    totals.raw_sent += 1
                    answered, detail = await loops[""].invoke(raw)
                    totals.loop[f"raw -> {answered}"] += 1
                    if answered != _expected_raw(raw):
                        record = {"corpus": "<raw bytes>", "raw": base64.b64encode(raw).decode()}
                        _record(totals, out, record, f"raw bytes answered {answered}", detail)
                now = time.monotonic()
                if now - last_report > 10:
                    last_report = now
                    print(f"  ... {totals.iterations} damaged events, {now - started:.0f} s", flush=True)
                continue
            break
        stop.set()
    totals.elapsed = time.monotonic() - started
    return totals


async def replay(path: Path) -> int:
    case = json.loads(path.read_text())  # noqa: ASYNC240
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        loop: Loop = await group.start(_serve_loop, case.get("base_path", ""), stop)
        if "raw" in case:
            raw = base64.b64decode(case["raw"])
            print("parse: (raw bytes)")
        else:
            print("parse:", *parse_outcome(case["event"], case.get("base_path", "")))
            raw = json.dumps(case["event"]).encode()
        print("loop: ", *await loop.invoke(raw))
        stop.set()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="run this long (default 60)")
    parser.add_argument("--iterations", type=int, default=0, help="or this many damaged events")
    parser.add_argument("--quick", action="store_true", help="10 s")
    parser.add_argument("--seed", type=int, default=1129)
    parser.add_argument(
        "--loop-every", type=int, default=1, help="send every Nth damaged event through the loop"
    )
    parser.add_argument("--raw-share", type=float, default=0.002, help="raw non-event bytes per event sent")
    parser.add_argument("--out", default="fuzz-failures", help="directory for reproducers")
    parser.add_argument("--replay", help="run one reproducer file again")
    parser.add_argument("--log", action="store_true", help="show the runtime's log lines (default: quiet)")
    args = parser.parse_args()
    logger = logging.getLogger("lambda_asgi_stream")
    logger.setLevel(logging.INFO)  # the per-invocation line is built only when INFO is enabled
    if not args.log:
        logger.propagate = False  # LogWatch still sees every line
    if args.replay:
        return anyio.run(replay, Path(args.replay))
    if args.quick:
        args.seconds = 10.0
    print(
        f"fuzz: {len(CORPUS)} corpus events, seed {args.seed}, "
        + (f"{args.iterations} damaged events" if args.iterations else f"{args.seconds:.0f} s")
        + f", every {args.loop_every} through the runtime loop"
    )
    totals = anyio.run(fuzz, args)
    elapsed = totals.elapsed
    looped = sum(n for k, n in totals.loop.items() if not k.startswith("raw"))
    print(f"\ndamaged events: {totals.iterations} in {elapsed:.0f} s ({totals.iterations / elapsed:.0f}/s)")
    print(f"through the runtime loop: {looped} damaged events + {totals.raw_sent} raw byte strings")
    print("mutations applied: " + ", ".join(f"{k} {n}" for k, n in sorted(totals.actions.items())))
    print("parse_event outcomes:")
    for name, n in totals.parse.most_common():
        print(f"  {name:<48} {n}")
    print("runtime loop outcomes:")
    for name, n in totals.loop.most_common():
        print(f"  {name:<48} {n}")
    print(f"runtime log lines: {totals.log.lines}; with a control character, by level and format:")
    for name, n in totals.log.unsafe.most_common():
        print(f"  {name:<60} {n}   e.g. {totals.log.examples[name][:100]!r}")
    print(f"failures: {len(totals.failures)}")
    for line in totals.failures[:MAX_FAILURES_SHOWN]:
        print(f"  {line}")
    return 1 if totals.failures else 0


if __name__ == "__main__":
    sys.exit(main())
