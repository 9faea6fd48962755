"""Soak: thousands of mixed invocations through ``lambda-asgi-stream run``; nothing lost, nothing forged.

    .venv/bin/python bench/soak.py                      # 10,000 invocations, 1 worker, then 4 workers
    .venv/bin/python bench/soak.py --concurrency 4      # only AWS_LAMBDA_MAX_CONCURRENCY=4
    .venv/bin/python bench/soak.py --quick              # 1,000 invocations each
    .venv/bin/python bench/soak.py --count 3000 --seed 7

The runtime is a real subprocess, started as Lambda starts it (``python -m lambda_asgi_stream run --
soak_app:app`` with ``AWS_LAMBDA_RUNTIME_API`` set), serving ``apps/soak_app.py``. The Runtime API is
``_soak_api.py``, its own process on 127.0.0.1: strict about HTTP/1.1 framing, it hands out the planned
invocations to whichever ``next`` asks (with ``AWS_LAMBDA_MAX_CONCURRENCY=4`` the runtime runs 4
workers, each long-polling on its own connection) and keeps a digest of every answer.

The plan (seeded, so a run can be repeated) mixes: streamed responses (Function URL and REST events) and
buffered ones (HTTP API, ALB in both header modes, VPC Lattice, Lambda@Edge) from 0 B to 3 MiB, in one
body message or hundreds; GET and POST with a request body; SSE, fast or with pauses long enough for the
padding flusher to push and for heartbeats (``LAMBDA_ASGI_STREAM_PADDING_LATENCY_MS=50``,
``..._SSE_HEARTBEAT_S=0.1``); apps that raise before and after the response start, with an ordinary
exception and with one whose ``__str__`` raises; apps that run into a short deadline (400 ms, with a
150 ms margin) before or after the start, or block past it without yielding; events that are not JSON,
not HTTP, or HTTP with an ill-typed field.

Each invocation's expected answer is computed here (the app's body is a function of the request's nonce,
``soak_app.pieces_of``). Checked for every request id: answered exactly once; by the right endpoint
(``/response`` or ``/error``); with the right status, the request's own nonce (``x-soak-nonce`` header,
the body's first bytes and the error message) and request-body hash, the exact body (length and
SHA-256; SSE comment lines, the padding and heartbeats, are dropped first), the right error type. Also
counted: answers to ids never handed out, strict-HTTP violations, answers that came after the deadline
(informational: a loaded 2-vCPU box), the runtime's RSS and open file descriptors (``/proc/PID/status``,
``/proc/PID/fd``) sampled every ``--sample-every`` answers, and its exit status after SIGTERM.

Exit status: non-zero when anything is lost, duplicated, misattributed or wrong, or the runtime died.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
ROOT = HERE.parent
sys.path.insert(0, str(APPS))

import soak_app  # noqa: E402

from lambda_asgi_stream.events.build import build_event  # noqa: E402

PYTHON = sys.executable
NORMAL_DEADLINE_MS = 120_000
SHORT_DEADLINE_MS = 400
TIMEOUT_MARGIN_MS = 150
RUNTIME_ENV = {
    "LAMBDA_ASGI_STREAM_TIMEOUT_MARGIN_MS": str(TIMEOUT_MARGIN_MS),
    "LAMBDA_ASGI_STREAM_PADDING_LATENCY_MS": "50",
    "LAMBDA_ASGI_STREAM_PADDING_THRESHOLD": "16384",
    "LAMBDA_ASGI_STREAM_SSE_HEARTBEAT_S": "0.1",
}
STREAMED = ("function-url", "rest")
BUFFERED = ("http-api", "alb", "alb-single", "vpc-lattice", "lambda-at-edge")
CTYPES = ("text/plain; charset=utf-8", "application/octet-stream", "application/json", "image/png")
ERROR_BODY, TIMEOUT_BODY = b"Internal Server Error", b"Gateway Timeout"
HOSTILE_MESSAGE = "<HostileError: str() failed>"
NONCE = re.compile(r"[0-9]{6}-[0-9a-f]{12}")
KiB, MiB = 1024, 1024 * 1024

# (weight per 1000, name): the mix of one run.
MIX = [
    (300, "stream_small"),
    (110, "stream_many"),
    (12, "stream_large"),
    (70, "sse_fast"),
    (14, "sse_paused"),
    (200, "buffered_ok"),
    (6, "buffered_large"),
    (25, "raise_before"),
    (25, "raise_after"),
    (8, "hostile_before"),
    (8, "hostile_after"),
    (24, "buffered_fail"),
    (5, "deadline_before"),
    (5, "deadline_after"),
    (2, "deadline_blocking"),
    (3, "buffered_deadline"),
    (15, "not_json"),
    (15, "not_http"),
    (15, "malformed"),
]


@dataclass
class Expect:
    """What one invocation's answer must be."""

    id: str
    case: str
    integration: str
    action: str  # "response" or "error"
    kind: str = ""  # "stream" / "buffered" / "error"
    status: int | None = None
    nonce: str | None = None
    req_sha: str | None = None
    body: bytes = b""
    error_type: str | None = None
    error_message: str | None = None
    short_deadline: bool = False
    # Also acceptable bodies: the first k whole SSE events, for an app stopped at its deadline while it
    # still had events to send (a loaded box, or another worker's app blocking the event loop).
    prefixes: list[bytes] = field(default_factory=list, repr=False)
    # Also acceptable: this whole other answer (a deadline_after app stopped before its response start,
    # when another worker's app blocked the event loop past the deadline: a 504, as for deadline_before).
    instead: Expect | None = field(default=None, repr=False)
    nonce_of_request: str = ""  # the nonce the request carried (``nonce`` is None where none is echoed)
    event: str = field(default="", repr=False)


# --- the plan ------------------------------------------------------------------------------------------


def _app_plan(rng: random.Random, case: str, nonce: str) -> dict[str, Any]:
    ctype = rng.choice(CTYPES)
    size, chunks, pause = (
        rng.choice([0, 1, rng.randint(2, 200), rng.randint(200, 2 * KiB)]),
        rng.randint(1, 4),
        0,
    )
    kind = "ok"
    if case == "stream_many":
        size, chunks = rng.randint(4 * KiB, 256 * KiB), rng.randint(10, 300)
    elif case in ("stream_large", "buffered_large"):
        size, chunks = (
            rng.randint(1 * MiB, 3 * MiB if case == "stream_large" else 2 * MiB),
            rng.choice([1, 16, 64]),
        )
    elif case in ("sse_fast", "sse_paused", "deadline_after"):
        ctype, size, chunks = soak_app.SSE_TYPE, rng.randint(100, 8 * KiB), rng.randint(2, 40)
        if case == "sse_paused":
            chunks, pause = rng.randint(2, 3), rng.randint(60, 180)
        elif case == "deadline_after":  # every event out well before the app is stopped at 250 ms
            chunks, pause = rng.randint(2, 3), rng.randint(20, 40)
    elif case == "buffered_ok":
        size = rng.choice([size, rng.randint(2 * KiB, 64 * KiB)])
    if case.startswith(("raise", "hostile", "deadline")):
        kind = case
    elif case == "buffered_fail":
        kind = rng.choice(["raise_before", "raise_after", "hostile_before", "hostile_after"])
    elif case == "buffered_deadline":
        kind = rng.choice(["deadline_before", "deadline_after", "deadline_blocking"])
    if kind == "deadline_blocking":
        pause = SHORT_DEADLINE_MS - TIMEOUT_MARGIN_MS + 50
    return {"kind": kind, "nonce": nonce, "size": size, "chunks": chunks, "pause_ms": pause, "ctype": ctype}


def _event(integration: str, plan: dict[str, Any], method: str, request_body: bytes) -> dict[str, Any]:
    nonce = plan["nonce"]
    headers = [("x-soak", json.dumps(plan, separators=(",", ":"))), ("user-agent", "soak")]
    if request_body:
        headers.append(("content-type", "application/octet-stream"))
    name = "alb" if integration == "alb-single" else integration
    return build_event(
        name,  # type: ignore[arg-type]
        method=method,
        path=f"/soak/{nonce}",
        query_string=f"n={nonce}",
        headers=headers,
        body=request_body,
        multi_value_headers=integration != "alb-single",
    )


def _unusable(rng: random.Random, case: str, exp: Expect) -> str:
    exp.action, exp.kind = "error", "error"
    if case == "not_json":
        exp.error_type = "Function.MalformedEvent"
        return rng.choice(['{"version": "2.0", ', "not json at all", "\x00\x01", '{"a": NaN]', ""])
    if case == "not_http":
        exp.error_type = "Function.UnsupportedEvent"
        return json.dumps(
            rng.choice(
                [
                    {"Records": [{"eventSource": "aws:sqs", "body": "hi"}]},
                    {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}},
                    [1, 2, 3],
                    "a string",
                    {"hello": "world"},
                ]
            )
        )
    exp.error_type = "Function.MalformedEvent"
    event = build_event("function-url", method="GET", path="/x")
    if rng.random() < 0.5:
        event["requestContext"]["http"]["method"] = rng.choice([42, None, ["GET"], {"m": 1}])
    else:
        event = build_event("alb", method="GET", path="/x")
        event["path"] = None
    return json.dumps(event)


def make_plan(count: int, seed: int, skip: frozenset[str] = frozenset()) -> list[Expect]:
    rng = random.Random(seed)
    weights = [w for w, n in MIX if n not in skip]
    names = [n for _, n in MIX if n not in skip]
    plan = []
    for i in range(count):
        case = rng.choices(names, weights)[0]
        request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        nonce = f"{i:06d}-{rng.getrandbits(48):012x}"
        buffered = case.startswith("buffered")
        integration = rng.choice(BUFFERED if buffered else STREAMED)
        exp = Expect(request_id, case, integration, "response", nonce_of_request=nonce)
        if case in ("not_json", "not_http", "malformed"):
            exp.event = _unusable(rng, case, exp)
            plan.append(exp)
            continue
        app_plan = _app_plan(rng, case, nonce)
        kind = app_plan["kind"]
        request_body = rng.randbytes(rng.choice([0, 0, 17, 1500, 40 * KiB]))
        method = "POST" if request_body else rng.choice(["GET", "DELETE"])
        exp.event = json.dumps(_event(integration, app_plan, method, request_body))
        exp.short_deadline = kind.startswith("deadline")
        exp.kind = "buffered" if buffered else "stream"
        body = b"".join(soak_app.pieces_of(app_plan))
        failing = kind != "ok"
        started = kind.endswith("_after")
        error_type = {
            "raise": "Function.SoakBoom",
            "hostile": "Function.HostileError",
            "deadline": "Function.Timeout",
        }.get(kind.partition("_")[0])
        message = {"raise": f"boom {nonce}", "hostile": HOSTILE_MESSAGE}.get(kind.partition("_")[0])
        if not failing or (started and not buffered):
            exp.status, exp.nonce, exp.req_sha = 200, nonce, hashlib.sha256(request_body).hexdigest()
            exp.body = body
            if kind == "deadline_after":
                pieces = soak_app.pieces_of(app_plan)
                exp.prefixes = [b"".join(pieces[:k]) for k in range(len(pieces))]
                exp.instead = Expect(request_id, case, integration, "response", "stream", 504)
                exp.instead.body, exp.instead.error_type = TIMEOUT_BODY, error_type
        else:  # a whole 500 / 504 of ours: nothing of the app's response (buffered), or before its start
            exp.status = 504 if kind.startswith("deadline") else 500
            exp.body = TIMEOUT_BODY if exp.status == 504 else ERROR_BODY
        if failing and not buffered:  # buffered failures are whole responses: Lambda sees no error
            exp.error_type, exp.error_message = error_type, message
        plan.append(exp)
    return plan


# --- running -------------------------------------------------------------------------------------------


class RunError(RuntimeError):
    pass


def _read_json(
    stream: IO[bytes], timeout: float, watch: subprocess.Popen[bytes] | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([stream], [], [], 0.25)
        if ready:
            line = stream.readline()
            if not line:
                raise RunError("the fake Runtime API exited")
            result: dict[str, Any] = json.loads(line)
            return result
        if watch is not None and watch.poll() is not None:
            raise RunError(f"the runtime exited with {watch.returncode}")
        if time.monotonic() > deadline:
            raise RunError("timed out waiting for the fake Runtime API")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RunError("no VmRSS")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def run_once(
    plan: list[Expect], concurrency: int, workdir: Path, sample_every: int, timeout: float, close_share: float
) -> dict[str, Any]:
    plan_path, report_path = workdir / "plan.jsonl", workdir / f"report-{concurrency}.json"
    with open(plan_path, "w", encoding="utf-8") as f:
        for exp in plan:
            deadline = SHORT_DEADLINE_MS if exp.short_deadline else NORMAL_DEADLINE_MS
            f.write(json.dumps({"id": exp.id, "event": exp.event, "deadline_ms": deadline}) + "\n")
    api = subprocess.Popen(
        [
            PYTHON,
            str(HERE / "_soak_api.py"),
            str(plan_path),
            str(report_path),
            str(sample_every),
            str(close_share),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,  # unbuffered: select() on the pipe must see every line that readline() has not read
    )
    assert api.stdin is not None and api.stdout is not None
    runtime: subprocess.Popen[bytes] | None = None
    log = workdir / f"runtime-{concurrency}.log"
    samples: list[tuple[int, float, int, int]] = []  # (answered, seconds, rss KiB, fds)
    try:
        port = _read_json(api.stdout, 10)["port"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDA_ASGI_STREAM_", "AWS_"))}
        env.update(RUNTIME_ENV)
        env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{port}"
        env["PYTHONPATH"] = os.pathsep.join([str(APPS), str(ROOT)])
        if concurrency > 1:
            env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(concurrency)
        started = time.monotonic()
        with open(log, "wb") as out:
            runtime = subprocess.Popen(
                [PYTHON, "-m", "lambda_asgi_stream", "run", "--", "soak_app:app"],
                env=env,
                cwd=str(workdir),
                stdout=out,
                stderr=out,
            )
        stalled = ""
        while True:
            try:
                message = _read_json(api.stdout, timeout, watch=runtime)
            except RunError as exc:  # stalled or died: still collect what was answered, to name what was not
                stalled = str(exc)
                break
            answered = message.get("answered", message.get("answers", 0))
            samples.append(
                (answered, time.monotonic() - started, rss_kib(runtime.pid), fd_count(runtime.pid))
            )
            if message["event"] == "done":
                break
        elapsed = time.monotonic() - started
        time.sleep(0.2)  # idle in its long poll: the last sample
        if runtime.poll() is None:
            last = samples[-1][0] if samples else 0
            samples.append((last, time.monotonic() - started, rss_kib(runtime.pid), fd_count(runtime.pid)))
        runtime.send_signal(signal.SIGTERM)
        try:
            exit_code: int | str = runtime.wait(30)
        except subprocess.TimeoutExpired:
            runtime.kill()
            runtime.wait()
            exit_code = "did not stop within 30 s of SIGTERM (killed)"
        api.stdin.write(b"report\n")
        api.stdin.flush()
        while _read_json(api.stdout, 60)["event"] != "reported":
            pass
        report: dict[str, Any] = json.loads(report_path.read_text())
    finally:
        if runtime is not None and runtime.poll() is None:
            runtime.kill()
            runtime.wait()
        api.stdin.close()
        try:
            api.wait(10)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()
    report.update(samples=samples, elapsed=elapsed, exit_code=exit_code, log=str(log), stalled=stalled)
    return report


# --- checking ------------------------------------------------------------------------------------------


def check(plan: list[Expect], report: dict[str, Any]) -> dict[str, Any]:
    expected = {exp.id: exp for exp in plan}
    by_id: dict[str, list[dict[str, Any]]] = {}
    for answer in report["answers"]:
        by_id.setdefault(answer["id"], []).append(answer)
    lost = [i for i in expected if i not in by_id]
    duplicated = {i: len(a) for i, a in by_id.items() if len(a) > 1 and i in expected}
    unknown = [i for i in by_id if i not in expected]
    misattributed: list[str] = []
    wrong: list[str] = []
    outcomes: Counter[str] = Counter()
    error_types: Counter[str] = Counter()
    late = []
    for request_id, answers in by_id.items():
        exp = expected.get(request_id)
        if exp is None:
            continue
        answer = answers[0]
        if answer.get("late_ms", 0) > 0:
            late.append((exp.case, answer["late_ms"]))
        problems = list(answer["problems"])
        foreign = _foreign_nonce(answer, exp)
        if foreign:
            misattributed.append(f"{request_id} ({exp.case}): {foreign}")
        mismatch = _compare(answer, exp)
        if mismatch and exp.instead is not None and not _compare(answer, exp.instead):
            mismatch = []
        problems += mismatch
        if problems:
            wrong.append(f"{request_id} ({exp.case}, {exp.integration}): " + "; ".join(problems))
        outcomes[f"{answer['action']}:{answer.get('kind')}:{answer.get('status', '-')}"] += 1
        if answer.get("error_type"):
            error_types[answer["error_type"]] += 1
    return {
        "lost": lost,
        "duplicated": duplicated,
        "unknown": unknown,
        "misattributed": misattributed,
        "wrong": wrong,
        "outcomes": outcomes,
        "error_types": error_types,
        "late": late,
    }


def _foreign_nonce(answer: dict[str, Any], exp: Expect) -> str:
    """An answer that carries another request's nonce (header, body start or error message)."""
    own = exp.nonce_of_request
    for where in ("nonce", "body_head", "error_message"):
        found = NONCE.search(answer.get(where) or "")
        if found and found.group() != own:
            return f"carries nonce {found.group()!r} in its {where}, expected {own!r}"
    return ""


def _compare(answer: dict[str, Any], exp: Expect) -> list[str]:
    out = []
    if answer["action"] != exp.action:
        return [f"answered on /{answer['action']}, expected /{exp.action}"]
    if answer.get("kind") != exp.kind:
        out.append(f"a {answer.get('kind')} answer, expected {exp.kind}")
    if exp.action == "error":
        if answer.get("error_type") != exp.error_type:
            out.append(f"error type {answer.get('error_type')!r}, expected {exp.error_type!r}")
        if not answer.get("error_doc_type"):
            out.append("error document without errorType")
        return out
    if answer.get("status") != exp.status:
        out.append(f"status {answer.get('status')}, expected {exp.status}")
    if answer.get("nonce") != exp.nonce:
        out.append(f"nonce header {answer.get('nonce')!r}, expected {exp.nonce!r}")
    if exp.req_sha is not None and answer.get("req_sha") != exp.req_sha:
        out.append("request body hash differs (the app got another body)")
    got = (answer.get("body_len"), answer.get("body_sha"))
    if all(got != (len(b), hashlib.sha256(b).hexdigest()) for b in (exp.body, *exp.prefixes)):
        out.append(
            f"body {got[0]} B {answer.get('body_head', '')[:30]!r}, "
            f"expected {len(exp.body)} B {exp.body[:30]!r}"
        )
    if answer.get("error_type") != exp.error_type:
        out.append(f"error type {answer.get('error_type')!r}, expected {exp.error_type!r}")
    if exp.error_message is not None and answer.get("error_message") != exp.error_message:
        out.append(f"error message {answer.get('error_message')!r}, expected {exp.error_message!r}")
    return out


# --- the summary ---------------------------------------------------------------------------------------


def _quarter_means(samples: list[tuple[int, float, int, int]], index: int) -> tuple[float, float]:
    n = len(samples)
    q = max(1, n // 4)
    return statistics.mean(s[index] for s in samples[:q]), statistics.mean(s[index] for s in samples[-q:])


def _late(late: list[tuple[str, float]]) -> str:
    if not late:
        return "0"
    cases = Counter(case for case, _ in late)
    worst = max(ms for _, ms in late)
    return f"{len(late)} (max {worst:.0f} ms late; " + ", ".join(f"{c} {n}" for c, n in cases.items()) + ")"


def summarize(label: str, plan: list[Expect], report: dict[str, Any], result: dict[str, Any]) -> bool:
    answers = report["answers"]
    samples = report["samples"]
    rss_first, rss_last = _quarter_means(samples, 2)
    fds = [s[3] for s in samples]
    late = result["late"]
    cases = Counter(exp.case for exp in plan)
    ok = not (result["lost"] or result["duplicated"] or result["unknown"] or result["misattributed"])
    ok = ok and not result["wrong"] and not report["violations"] and report["exit_code"] == 0
    ok = ok and not report["stalled"]
    rows = [
        ("invocations planned / handed out", f"{len(plan)} / {report['handed_out']}"),
        ("answers received", str(len(answers))),
        ("answered exactly once", str(len(plan) - len(result["lost"]) - len(result["duplicated"]))),
        ("lost (never answered)", str(len(result["lost"]))),
        ("duplicated (answered twice)", str(len(result["duplicated"]))),
        ("answers to unknown ids", str(len(result["unknown"]))),
        ("misattributed (foreign nonce)", str(len(result["misattributed"]))),
        ("wrong answer (status/body/type)", str(len(result["wrong"]))),
        ("strict-HTTP violations", str(len(report["violations"]))),
        ("answers after the deadline", _late(late)),
        ("runtime exit after SIGTERM", str(report["exit_code"])),
        ("stalled", report["stalled"] or "no"),
        ("wall time", f"{report['elapsed']:.1f} s ({len(plan) / report['elapsed']:.0f} inv/s)"),
        ("replies that closed the connection", str(report["closes"])),
        (
            "connections / nexts / max concurrent nexts",
            f"{report['connections']} / {report['nexts']} / {report['max_waiting_nexts']}",
        ),
        ("SSE padding + heartbeat bytes seen", str(report["padding_bytes"])),
        (
            "RSS MiB first quarter -> last quarter",
            f"{rss_first / 1024:.1f} -> {rss_last / 1024:.1f} "
            f"(drift {(rss_last - rss_first) / 1024:+.1f} MiB; "
            f"min {min(s[2] for s in samples) / 1024:.1f}, max {max(s[2] for s in samples) / 1024:.1f})",
        ),
        ("open fds first / last / min / max", f"{fds[0]} / {fds[-1]} / {min(fds)} / {max(fds)}"),
        ("samples", str(len(samples))),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n== {label} ==")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    step = max(1, len(samples) // 10)
    print(
        "  RSS MiB over the run (at N answers): "
        + ", ".join(f"{s[2] / 1024:.1f}@{s[0]}" for s in samples[::step] + samples[-1:])
    )
    print("  outcomes (endpoint:kind:status):")
    for name, n in sorted(result["outcomes"].items()):
        print(f"    {name:<28} {n}")
    print("  error types reported to Lambda:")
    for name, n in sorted(result["error_types"].items()):
        print(f"    {name:<28} {n}")
    print("  cases: " + ", ".join(f"{name} {n}" for name, n in sorted(cases.items())))
    for title, items in (
        ("LOST", result["lost"]),
        ("DUPLICATED", list(result["duplicated"])),
        ("UNKNOWN", result["unknown"]),
        ("MISATTRIBUTED", result["misattributed"]),
        ("WRONG", result["wrong"]),
        ("VIOLATIONS", report["violations"]),
    ):
        for item in items[:10]:
            print(f"  {title}: {item}")
        if len(items) > 10:
            print(f"  {title}: ... {len(items) - 10} more")
    if report["exit_code"] != 0:
        print(f"  runtime log: {report['log']}")
    print(f"  verdict: {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="invocations per run (default 10000)")
    parser.add_argument(
        "--concurrency",
        type=int,
        action="append",
        help="AWS_LAMBDA_MAX_CONCURRENCY; repeat (default: 1 and 4)",
    )
    parser.add_argument("--quick", action="store_true", help="1000 invocations per run")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--sample-every", type=int, default=0, help="answers between RSS/fd samples")
    parser.add_argument("--timeout", type=float, default=60, help="longest wait for the next answer, s")
    parser.add_argument(
        "--close-share",
        type=float,
        default=0.0,
        help="share of the fake's replies that close the connection (Connection: close); default 0",
    )
    parser.add_argument("--skip", action="append", default=[], help="leave a case out of the mix; repeat")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, reports)")
    args = parser.parse_args()
    count = 1000 if args.quick else args.count
    every = args.sample_every or max(10, count // 100)
    concurrencies = args.concurrency or [1, 4]
    print(f"soak: {count} invocations per run, seed {args.seed}, concurrency {concurrencies}")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"runtime environment: {RUNTIME_ENV}")
    unknown = set(args.skip) - {name for _, name in MIX}
    if unknown:
        parser.error(f"--skip: no such case {', '.join(sorted(unknown))}")
    plan = make_plan(count, args.seed, frozenset(args.skip))
    planned_bytes = sum(len(exp.body) for exp in plan)
    print(f"plan: {planned_bytes / MiB:.1f} MiB of response bodies")
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    all_ok = True
    try:
        for concurrency in concurrencies:
            label = f"AWS_LAMBDA_MAX_CONCURRENCY={concurrency}" if concurrency > 1 else "one worker"
            if args.close_share:
                label += f", {args.close_share:.0%} of replies close the connection"
            try:
                report = run_once(plan, concurrency, workdir, every, args.timeout, args.close_share)
            except RunError as exc:
                print(f"\n== {label} ==\n  FAIL: {exc} (logs in {workdir})")
                args.keep = True
                all_ok = False
                continue
            ok = summarize(label, plan, report, check(plan, report))
            if not ok:
                args.keep = True
            all_ok = all_ok and ok
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            for path in workdir.iterdir():
                path.unlink()
            workdir.rmdir()
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
