"""µs per ``parse_event`` call for the common event formats, optionally next to another checkout.

    .venv/bin/python bench/event_parse.py                       # this checkout
    .venv/bin/python bench/event_parse.py --against /work/main  # and another one, with the ratio

Events (built once, by this checkout's ``events.build.build_event``, the same four headers as
``buffered_vs_mangum.py``): a Function URL event and an HTTP API event (payload 2.0), a REST event
(payload 1.0, stage ``prod`` on an ``execute-api`` host) and an ALB event (multi-value headers). Each
checkout runs in its own worker process (PATH first on ``sys.path``, checked), fed the same events as
JSON; the workers take turns, event by event, so machine noise hits both alike. A round times
``--calls`` calls of each event, each on a fresh copy that ``json.loads`` has just made (as the runtime
has, per invocation: strings whose hashes are not cached yet, memory still in the CPU cache), each call
timed alone with ``time.perf_counter_ns`` (less the clock's own cost, measured alike). The figure is the
median over ``--rounds`` rounds. Before timing, the scopes of both checkouts are compared and any
difference is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# The four headers of buffered_vs_mangum.py's events (which imports them from here).
HEADERS = [
    ("accept", "*/*"),
    ("accept-encoding", "gzip, deflate, br"),
    ("user-agent", "curl/8.5.0"),
    ("x-amzn-trace-id", "Root=1-67891233-abcdef012345678912345678"),
]


def events() -> dict[str, dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from lambda_asgi_stream.events.build import build_event

    return {
        "function-url 2.0": build_event("function-url", method="GET", path="/hello", headers=HEADERS),
        "http-api 2.0": build_event("http-api", method="GET", path="/hello", headers=HEADERS),
        "rest 1.0": build_event("rest", method="GET", path="/prod/hello", headers=HEADERS, stage="prod"),
        "alb": build_event("alb", method="GET", path="/hello", headers=HEADERS),
    }


def worker(checkout: str) -> None:
    """Serve on stdin/stdout: ``scopes`` prints each event's scope, ``[name, N]`` times N calls of one."""
    sys.path.insert(0, checkout)
    import lambda_asgi_stream
    from lambda_asgi_stream.events import parse_event

    loaded = Path(lambda_asgi_stream.__file__).resolve()
    if not loaded.is_relative_to(Path(checkout).resolve()):
        raise SystemExit(f"asked for {checkout}, imported {loaded}")
    cases = {name: json.dumps(event) for name, event in json.loads(sys.stdin.readline()).items()}
    for line in sys.stdin:
        if line.strip() == "scopes":
            reply: Any = {
                name: _comparable(parse_event(json.loads(raw), None).scope) for name, raw in cases.items()
            }
        else:
            name, calls = json.loads(line)
            reply = _time_calls(parse_event, cases[name], calls)
        print(json.dumps(reply), flush=True)


def _time_calls(parse_event: Any, raw: str, calls: int) -> float:
    """Mean µs per call, each call on an event fresh from ``json.loads``, timed alone."""
    loads, clock = json.loads, time.perf_counter_ns
    for _ in range(calls // 10):  # untimed: the other worker's round has just had the CPU's caches
        parse_event(loads(raw), None)
    total = overhead = 0
    for _ in range(calls):
        event = loads(raw)
        start = clock()
        parse_event(event, None)
        total += clock() - start
        start = clock()
        overhead += clock() - start  # what the clock itself adds to each sample
    return (total - overhead) / calls / 1000


def _comparable(scope: dict[str, Any]) -> str:
    return repr({k: v for k, v in scope.items() if k not in ("aws.event", "aws.context")})


class Worker:
    def __init__(self, checkout: Path, cases: dict[str, dict[str, Any]]) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(checkout)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ask(json.dumps(cases), reply=False)

    def ask(self, line: str, reply: bool = True) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        if not reply:
            return None
        answer = self.process.stdout.readline()
        if not answer:
            raise SystemExit(f"worker exited with {self.process.wait()}")
        return json.loads(answer)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--against", type=Path, help="another checkout to measure next to this one")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="5 rounds of 2000 calls")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    rounds, calls = (5, 2000) if args.quick else (args.rounds, args.calls)
    cases = events()
    checkouts = {"this": ROOT}
    if args.against:
        checkouts["against"] = args.against
    workers = {label: Worker(path, cases) for label, path in checkouts.items()}
    try:
        if "against" in workers:
            ours, theirs = workers["this"].ask("scopes"), workers["against"].ask("scopes")
            for name in cases:
                if ours[name] != theirs[name]:
                    print(f"SCOPES DIFFER for {name}:\n  this:    {ours[name]}\n  against: {theirs[name]}")
        samples: dict[str, dict[str, list[float]]] = {label: {n: [] for n in cases} for label in workers}
        for i in range(rounds):
            order = list(workers)[i % len(workers) :] + list(workers)[: i % len(workers)]
            for name in cases:
                for label in order:
                    samples[label][name].append(workers[label].ask(json.dumps([name, calls])))
    finally:
        for w in workers.values():
            w.close()

    version = sys.version.split()[0]
    print(f"parse_event, median µs per call over {rounds} rounds of {calls} calls (Python {version})")
    header = f"{'event':<18}{'this':>9}"
    if args.against:
        header += f"{'against':>10}{'this/against':>14}"
    print(header)
    for name in cases:
        mine = statistics.median(samples["this"][name])
        row = f"{name:<18}{mine:>9.2f}"
        if args.against:
            other = statistics.median(samples["against"][name])
            row += f"{other:>10.2f}{mine / other:>14.2f}"
        print(row)
    for label, path in checkouts.items():
        print(f"  {label}: {path}")


if __name__ == "__main__":
    main()
