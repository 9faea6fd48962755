"""CPU per invocation of the runtime process: our runtime loop next to AWS's own (awslambdaric + Mangum).

    .venv/bin/python bench/invocation_cost.py --ours before=../old-checkout --ours after=. --json OUT.json
    .venv/bin/python bench/invocation_cost.py --quick                    # ~1 min, this checkout only
    .venv/bin/python bench/invocation_cost.py --chart OUT.png --before A.json --after B.json
    .venv/bin/python bench/invocation_cost.py --profile run-stream-1     # cProfile of one runtime process
    .venv/bin/python bench/invocation_cost.py --ours a=A --ours b=B --paired run-stream-4 --rounds 16
    .venv/bin/python bench/invocation_cost.py --ours a=A --ours b=B --instructions run-stream-4   # valgrind

Everything runs on loopback and stops by itself. A fake Lambda Runtime API (``_fake_api.py``, its own
process) hands out a Function URL event per ``next`` and checks every response (status, exact body
bytes, no error trailer). Each session starts a fresh runtime process, serves W warm-up invocations,
then N measured ones. The runtime's CPU (all threads: the scheduler's run time from
``/proc/<pid>/task/*/schedstat``, with ``utime + stime`` from ``/proc/<pid>/stat`` as a coarse
cross-check) is read when its ``next`` arrives after W and after W + N invocations, when it is idle in the
long poll. The figure is CPU µs per invocation, the median over alternating rounds (each round runs every
variant once, in a rotated order, each in a fresh process), with the spread of the rounds.

Variants, all serving the same raw ASGI app (``apps/bench_app.py``, no framework):

* ``run-buffered``   ``python -m lambda_asgi_stream run bench_app:app``, ``INVOKE_MODE=BUFFERED``, 100 B
* ``run-stream-1``   the same, streamed (default config: padding idle, log level INFO), one 100 B body
* ``run-stream-4``   streamed, 4 chunks of 200 B of ``text/event-stream`` (padding engaged, never pads)
* ``run-stream-*-nopad``       ``LAMBDA_ASGI_STREAM_PADDING=none`` (isolates the padding flusher)
* ``run-stream-*-nopad-warn``  and ``LAMBDA_ASGI_STREAM_LOG_LEVEL=WARNING`` (no per-invocation log line)
* ``ric-adapter``    ``python -m awslambdaric bench_adapter.handler``: ``Adapter(app)``, buffered
* ``ric-mangum``     ``python -m awslambdaric bench_mangum.handler``: ``Mangum(app, lifespan="off")``,
  buffered: what the managed Python runtime does today. The reference of every ratio.
* ``uvicorn``        one keep-alive HTTP/1.1 request to ``uvicorn --http h11 --loop asyncio``, for scale
* ``python-floor``   ``apps/floor_runtime.py``: the two exchanges on a blocking socket and json both ways,
  nothing else (no ASGI, no checks): the least any Python runtime loop costs, for scale

``--paired VARIANTS`` runs only those variants of ours, checkout against checkout in alternating order
every round, and prints the median of the per-round ratios to the first ``--ours``: the figure to read for
a change of a few percent on a noisy machine.

``--instructions VARIANTS`` counts the user-space instructions per invocation of those variants, per
checkout, under callgrind (``_instructions.py``; needs ``valgrind``): deterministic, so it shows a change
of 1 % whatever the machine's load, but blind to system calls.

``--ours LABEL=PATH`` (repeatable) runs the variants that import our package (``run-*``,
``ric-adapter``) once per checkout, with PATH first on ``PYTHONPATH`` (checked: the runtime reports
which ``lambda_asgi_stream/__init__.py`` it loaded), so before and after are compared in one run.

Then the cold start (``--cold-runs``, interleaved, fresh processes, after ``compileall``): ms from just
before ``Popen`` to the fake API seeing the first ``next`` (init) and the first complete response (init +
first invocation), for ``run`` and for awslambdaric + Mangum, with the raw app and with FastAPI; the
floor is ``python -c "import asyncio"`` to its exit. Also which cold-path modules ``run`` loaded, and
its largest imports (``-X importtime``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))

import bench_app
import bench_fastapi
from _sessions import (
    APPS,
    PYTHON,
    BenchError,
    FakeAPI,
    Variant,
    floor_session,
    runtime_session,
    uvicorn_session,
)

from lambda_asgi_stream.events.build import build_event

REFERENCE = "ric-mangum"
GOAL, GOAL_AT_LEAST, PADDING_GOAL = 0.5, 0.8, 0.05
DEFAULT_VARIANTS = ("run-buffered", "run-stream-1", "run-stream-4")
HEADERS = [
    ("accept", "*/*"),
    ("accept-encoding", "gzip, deflate, br"),
    ("user-agent", "curl/8.5.0"),
    ("x-amzn-trace-id", "Root=1-67891233-abcdef012345678912345678"),
]
SSE_BODY = b"".join(bench_app.CHUNKS)


# --- events and variants ---------------------------------------------------------------------------


def event_bytes(path: str) -> bytes:
    """The Function URL event of every session. The fake API makes each invocation's copy unique: it
    rewrites the request id's tail and the trace id's random part (``_fake_api.PER_REQUEST``), which
    must therefore appear here as they are."""
    event = build_event(
        "function-url",
        method="GET",
        path=path,
        headers=HEADERS,
        request_id="c6af9ac6-7b61-11e6-9a41-93e812345678",
    )
    return json.dumps(event).encode()


def base_env() -> dict[str, str]:
    """A clean environment with what Lambda sets for every runtime (runtimes-api, "Defined runtime
    environment variables"); AWS_LAMBDA_RUNTIME_API is added per session."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LAMBDA_ASGI_STREAM_", "AWS_", "PYTHON"))
        and k not in ("_HANDLER", "LAMBDA_TASK_ROOT", "BENCH_MODULES_OUT")
    }
    env.update(
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_LAMBDA_FUNCTION_NAME="bench",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024",
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/bench",
        AWS_LAMBDA_LOG_STREAM_NAME="2026/11/29/[$LATEST]bench",
        LAMBDA_TASK_ROOT=str(APPS),
        TZ=":UTC",
    )
    return env


def ric(name: str, handler: str, pythonpath: str, label: str | None, exec_env: str) -> Variant:
    env = dict(base_env(), PYTHONPATH=pythonpath, _HANDLER=handler)
    if exec_env:
        env["AWS_EXECUTION_ENV"] = exec_env  # python3.12+ managed runtimes: `next` polled from a thread
    argv = [PYTHON, "-m", "awslambdaric", handler]
    return Variant(name, label, "runtime", argv, env, "buffered", "/hello", bench_app.BODY)


def ours_variants(label: str, path: str, exec_env: str) -> list[Variant]:
    pythonpath = f"{path}{os.pathsep}{APPS}"
    argv = [PYTHON, "-m", "lambda_asgi_stream", "run", "bench_app:app"]
    nopad = {"LAMBDA_ASGI_STREAM_PADDING": "none"}
    warn = {**nopad, "LAMBDA_ASGI_STREAM_LOG_LEVEL": "WARNING"}
    table: list[tuple[str, dict[str, str], str, str, bytes]] = [
        (
            "run-buffered",
            {"LAMBDA_ASGI_STREAM_INVOKE_MODE": "BUFFERED"},
            "buffered",
            "/hello",
            bench_app.BODY,
        ),
        ("run-stream-1", {}, "stream", "/hello", bench_app.BODY),
        ("run-stream-4", {}, "stream", "/events", SSE_BODY),
        ("run-stream-1-nopad", nopad, "stream", "/hello", bench_app.BODY),
        ("run-stream-4-nopad", nopad, "stream", "/events", SSE_BODY),
        ("run-stream-1-nopad-warn", warn, "stream", "/hello", bench_app.BODY),
        ("run-stream-4-nopad-warn", warn, "stream", "/events", SSE_BODY),
    ]
    variants = [
        Variant(
            name, label, "runtime", argv, dict(base_env(), PYTHONPATH=pythonpath, **extra), mode, route, body
        )
        for name, extra, mode, route, body in table
    ]
    variants.append(ric("ric-adapter", "bench_adapter.handler", pythonpath, label, exec_env))
    return variants


def shared_variants(exec_env: str) -> list[Variant]:
    uvicorn_argv = [PYTHON, "-m", "uvicorn", "bench_app:app", "--http", "h11", "--loop", "asyncio"]
    uvicorn_argv += ["--no-access-log", "--log-level", "warning", "--lifespan", "on", "--host", "127.0.0.1"]
    uvicorn_env = dict(base_env(), PYTHONPATH=str(APPS))
    # The python3.12+ managed runtimes poll `next` from a new thread per invocation (awslambdaric
    # lambda_config.py, SUPPORTED_THREADPOLLING_ENVS). Those threads end before the second CPU sample,
    # so this variant is measured in ticks (see _cpu.cpu_between).
    threaded = ric(f"{REFERENCE}-py312", "bench_mangum.handler", str(APPS), None, "AWS_Lambda_python3.12")
    return [
        ric(REFERENCE, "bench_mangum.handler", str(APPS), None, exec_env),
        threaded,
        Variant("uvicorn", None, "uvicorn", uvicorn_argv, uvicorn_env, "-", "/hello", bench_app.BODY),
        Variant(
            "python-floor",
            None,
            "runtime",
            [PYTHON, str(APPS / "floor_runtime.py")],
            dict(base_env(), PYTHONPATH=str(APPS)),
            "buffered",
            "/hello",
            bench_app.BODY,
        ),
    ]


def uvicorn_request() -> bytes:
    lines = ["GET /hello HTTP/1.1", "host: localhost"] + [f"{k}: {v}" for k, v in HEADERS]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --- warm: CPU per invocation ----------------------------------------------------------------------


def run_paired(
    api: FakeAPI, variants: list[Variant], args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """--paired: each named variant, checkout against checkout, in alternating order every round.

    A load change on the machine moves both sessions of a round alike, so the per-round ratio to the
    first checkout is steadier than a ratio of medians: on a noisy day it still shows a 5 % change.
    """
    labels = list(args.ours)
    if len(labels) < 2:
        sys.exit("--paired compares checkouts: give two or more --ours LABEL=PATH")
    names = args.paired.split(",")
    by_key = {v.key: v for v in variants}
    missing = [n for n in names if f"{labels[0]}:{n}" not in by_key]
    if missing:
        sys.exit(f"--paired: no variant of ours named {', '.join(missing)} (run-buffered, run-stream-1, ...)")
    print(f"\nPaired: {args.rounds} rounds, N={args.count}, checkouts {' / '.join(labels)}")
    seen_package: set[str] = set()
    cpu: dict[str, dict[str, list[float]]] = {n: {label: [] for label in labels} for n in names}
    for r in range(args.rounds):
        for name in names:
            for label in labels if r % 2 == 0 else labels[::-1]:
                v = by_key[f"{label}:{name}"]
                sample = runtime_session(
                    api, v, event_bytes(v.path), warmup=args.warmup, count=args.count, workdir=workdir
                )
                check_package(v, sample, args.ours, seen_package)
                cpu[name][label].append(sample["cpu_us"])
        print(f"  round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}")
    head = f"{'variant':24} {'checkout':10} {'µs/inv':>8}  {'rounds':>13}   x {labels[0]} (median of rounds)"
    print(f"\n  {head}")
    out: dict[str, Any] = {}
    for name in names:
        base = cpu[name][labels[0]]
        for label in labels:
            xs = cpu[name][label]
            ratios = [x / b for x, b in zip(xs, base, strict=True)]
            out[f"{label}:{name}"] = {"rounds_us": xs, "median_us": statistics.median(xs), "ratios": ratios}
            print(
                f"  {name:24} {label:10} {statistics.median(xs):8.1f}  [{min(xs):5.0f}-{max(xs):5.0f}]"
                f"   {statistics.median(ratios):.3f} [{min(ratios):.2f}-{max(ratios):.2f}]"
            )
    return out


def run_warm(
    api: FakeAPI, variants: list[Variant], args: argparse.Namespace, workdir: Path
) -> dict[str, dict[str, Any]]:
    events = {path: event_bytes(path) for path in ("/hello", "/events")}
    request = uvicorn_request()
    results: dict[str, dict[str, Any]] = {
        v.key: {"name": v.name, "label": v.label, "rounds": [], "error": None} for v in variants
    }
    seen_package: set[str] = set()
    print(
        f"\nCPU per invocation: {args.rounds} rounds x {len(variants)} variants, "
        f"W={args.warmup} warm-up + N={args.count} measured invocations per process"
    )
    started = time.perf_counter()
    for r in range(args.rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for v in order:
            res = results[v.key]
            if res["error"]:
                continue
            try:
                if v.kind == "uvicorn":
                    sample = uvicorn_session(
                        v, request, warmup=args.warmup, count=args.count, workdir=workdir
                    )
                else:
                    sample = runtime_session(
                        api, v, events[v.path], warmup=args.warmup, count=args.count, workdir=workdir
                    )
                    check_package(v, sample, args.ours, seen_package)
            except BenchError as exc:
                res["error"] = str(exc)
                print(f"  {v.key}: FAILED, dropped from the run:\n{exc}")
                continue
            keep = ("cpu_us", "from_ticks", "ticks_us", "system_us", "wall_us")
            res["rounds"].append({"round": r, **{k: sample[k] for k in keep}})
        elapsed = time.perf_counter() - started
        print(f"  round {r + 1}/{args.rounds} done at {elapsed:5.0f} s, load {os.getloadavg()[0]:.2f}")
    reference = {s["round"]: s["cpu_us"] for s in results.get(REFERENCE, {}).get("rounds", [])}
    for res in results.values():
        cpu = [s["cpu_us"] for s in res["rounds"]]
        if cpu:
            res["median_us"] = statistics.median(cpu)
            res["min_us"], res["max_us"] = min(cpu), max(cpu)
            res["ticks_median_us"] = statistics.median(s["ticks_us"] for s in res["rounds"])
            res["system_share"] = sum(s["system_us"] for s in res["rounds"]) / sum(
                s["ticks_us"] for s in res["rounds"]
            )
            res["wall_median_us"] = statistics.median(s["wall_us"] for s in res["rounds"])
            # Each round's figure over the reference's in the same round: a load change between rounds
            # moves both, so these ratios scatter less than the figures themselves.
            paired = [s["cpu_us"] / reference[s["round"]] for s in res["rounds"] if s["round"] in reference]
            if paired:
                res["paired_ratios"] = paired
                res["paired_ratio_median"] = statistics.median(paired)
    return results


def check_package(v: Variant, sample: dict[str, Any], ours: dict[str, str], seen: set[str]) -> None:
    """The runtime must have loaded the checkout its label names, not another install or the cwd."""
    if not v.label:
        return
    info = sample.get("modules")
    loaded = (info or {}).get("package")
    root = os.path.realpath(ours[v.label])
    if not loaded or not os.path.realpath(loaded).startswith(root + os.sep):
        raise BenchError(f"{v.key}: loaded lambda_asgi_stream from {loaded}, not from {root}")
    if v.label not in seen:
        seen.add(v.label)
        print(f"  [{v.label}] lambda_asgi_stream.__file__ = {loaded}")


def ratio_text(ratio: float) -> str:
    if ratio <= GOAL:
        return f"{ratio:.2f} (goal <= {GOAL}: met)"
    if ratio < GOAL_AT_LEAST:
        return f"{ratio:.2f} (goal <= {GOAL}: missed; < {GOAL_AT_LEAST}: met)"
    return f"{ratio:.2f} (goal <= {GOAL}: MISSED, and not even < {GOAL_AT_LEAST})"


def print_warm(results: dict[str, dict[str, Any]], labels: list[str]) -> None:
    ref = results.get(REFERENCE, {}).get("median_us")
    print("\nCPU µs per invocation of the runtime process (median of rounds [min-max of rounds]):")
    print(
        f"  {'variant':34s} {'µs/inv':>8s} {'rounds':>13s} {'ticks':>7s} {'sys':>4s} {'wall':>7s}"
        f" {'x ' + REFERENCE:>14s} {'paired x [rounds]':>19s}"
    )
    for key, res in results.items():
        if "median_us" not in res:
            print(f"  {key:34s} {'FAILED':>8s}")
            continue
        x = f"{res['median_us'] / ref:.2f}" if ref else "-"
        spread = f"[{res['min_us']:.0f}-{res['max_us']:.0f}]"
        paired = res.get("paired_ratios")
        px = f"{res['paired_ratio_median']:.2f} [{min(paired):.2f}-{max(paired):.2f}]" if paired else "-"
        mark = "*" if any(s["from_ticks"] for s in res["rounds"]) else " "
        print(
            f"  {key:33s}{mark} {res['median_us']:8.1f} {spread:>13s} {res['ticks_median_us']:7.0f}"
            f" {res['system_share']:4.0%} {res['wall_median_us']:7.0f} {x:>14s} {px:>19s}"
        )
    print(
        "  µs/inv: scheduler run time of all its threads; ticks: utime+stime (10 ms resolution);"
        " sys: the stime share of that;\n  wall: elapsed per invocation;"
        f" x {REFERENCE}: ratio of the medians; paired: median of the per-round ratios;\n"
        "  *: some rounds measured in ticks (threads came and went between the samples)"
    )
    if not ref:
        print(f"\nNo {REFERENCE} figure: no ratios.")
        return
    print(f"\nGoals ({REFERENCE} = {ref:.1f} µs in this run):")
    for label in labels:
        for name in DEFAULT_VARIANTS:
            res = results.get(f"{label}:{name}", {})
            if "median_us" in res:
                print(
                    f"  [{label}] {name:15s} {res['median_us']:6.1f} µs = "
                    f"{ratio_text(res['median_us'] / ref)}"
                )
        for n in ("1", "4"):
            default = results.get(f"{label}:run-stream-{n}", {}).get("median_us")
            nopad = results.get(f"{label}:run-stream-{n}-nopad", {}).get("median_us")
            warn = results.get(f"{label}:run-stream-{n}-nopad-warn", {}).get("median_us")
            if default and nopad:
                cost = (default - nopad) / default
                verdict = "met" if cost < PADDING_GOAL else "MISSED"
                print(
                    f"  [{label}] padding flusher, stream-{n}: {default - nopad:+6.1f} µs = {cost:+.1%} "
                    "of the "
                    f"default (goal < {PADDING_GOAL:.0%}: {verdict})"
                )
            if nopad and warn:
                print(
                    f"  [{label}] INFO log line, stream-{n}: {nopad - warn:+6.1f} µs "
                    "(padding none, INFO - WARNING)"
                )
    if len(labels) >= 2:
        first, last = labels[0], labels[-1]
        print(f"\n{last} / {first}, same run:")
        names = sorted({r["name"] for r in results.values() if r["label"] == first}, key=_order)
        for name in names:
            a = results.get(f"{first}:{name}", {}).get("median_us")
            b = results.get(f"{last}:{name}", {}).get("median_us")
            if a and b:
                print(f"  {name:26s} {a:7.1f} -> {b:7.1f} µs  ({b / a:.2f}x)")


def _order(name: str) -> int:
    order = [
        "run-buffered",
        "run-stream-1",
        "run-stream-4",
        "run-stream-1-nopad",
        "run-stream-4-nopad",
        "run-stream-1-nopad-warn",
        "run-stream-4-nopad-warn",
        "ric-adapter",
    ]
    return order.index(name) if name in order else len(order)


# --- cold start ------------------------------------------------------------------------------------


def compile_all(paths: list[str]) -> None:
    """Byte-compile as pip installs: each checkout's package and the bench apps (site-packages already is)."""
    for path in paths:
        subprocess.run([PYTHON, "-m", "compileall", "-q", path], check=True, stdout=subprocess.DEVNULL)


COLD_FIELDS = ("first_next_ms", "first_response_ms", "init_cpu_ms", "first_invocation_cpu_ms")


def print_cold(summary: dict[str, Any], floor: str) -> None:
    print(
        f"  {'variant':30s} {'wall: init':>19s} {'+ 1st invocation':>19s}"
        f" {'CPU: init':>19s} {'+ 1st invocation':>19s}"
    )
    for key, fields in summary.items():
        cells = []
        for name in COLD_FIELDS:
            f = fields.get(name)
            cells.append(f"{f['median']:6.1f} [{f['min']:4.0f}-{f['max']:4.0f}]" if f else "")
        print(f"  {key:30s} " + " ".join(f"{c:>19s}" for c in cells))
    print(
        "  ms, median [min-max]. wall: from just before Popen to the fake API seeing the first `next` (init)"
        "\n  and the first complete response; CPU: what the process had used by its first and second `next`"
        "\n  (schedstat, or ticks if more). The floor is to its exit (wall) and its rusage (CPU)."
    )


def run_cold(api: FakeAPI, ours: dict[str, str], exec_env: str, runs: int, workdir: Path) -> dict[str, Any]:
    compile_all([str(Path(p) / "lambda_asgi_stream") for p in ours.values()] + [str(APPS)])
    fastapi_body = bench_fastapi.BODY
    cases: list[Variant] = []
    for label, path in ours.items():
        pythonpath = f"{path}{os.pathsep}{APPS}"
        env = dict(base_env(), PYTHONPATH=pythonpath)
        run = [PYTHON, "-m", "lambda_asgi_stream", "run"]
        cases.append(
            Variant(
                "run raw app",
                label,
                "runtime",
                [*run, "bench_app:app"],
                env,
                "stream",
                "/hello",
                bench_app.BODY,
            )
        )
        cases.append(
            Variant(
                "run fastapi",
                label,
                "runtime",
                [*run, "bench_fastapi:app"],
                env,
                "stream",
                "/hello",
                fastapi_body,
            )
        )
    cases.append(ric("ric-mangum raw app", "bench_mangum.handler", str(APPS), None, exec_env))
    mangum_fastapi = ric("ric-mangum fastapi", "bench_fastapi_mangum.handler", str(APPS), None, exec_env)
    mangum_fastapi.expect = fastapi_body
    cases.append(mangum_fastapi)
    event = event_bytes("/hello")
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    print(f"\nCold start: {runs} fresh processes per variant, interleaved (after compileall)")
    floor = "floor: python -c 'import asyncio'"
    keys = [c.key for c in cases] + [floor]
    for i in range(runs):
        order = keys[i % len(keys) :] + keys[: i % len(keys)]
        for key in order:
            if key == floor:
                wall_ms, cpu_ms = floor_session(base_env())
                samples[key]["first_next_ms"].append(wall_ms)
                samples[key]["init_cpu_ms"].append(cpu_ms)
                continue
            case = next(c for c in cases if c.key == key)
            res = runtime_session(api, case, event, warmup=0, count=1, workdir=workdir, cold=True)
            for name in COLD_FIELDS:
                samples[key][name].append(res[name])
    summary: dict[str, Any] = {}
    for key in keys:
        summary[key] = {
            name: {"median": statistics.median(v), "min": min(v), "max": max(v), "samples": v}
            for name, v in samples[key].items()
        }
    print_cold(summary, floor)
    summary["cold_path"] = {
        label: cold_path(api, label, path, event, workdir) for label, path in ours.items()
    }
    return summary


def cold_path(api: FakeAPI, label: str, path: str, event: bytes, workdir: Path) -> dict[str, Any]:
    """Which cold-path modules ``run`` with the raw app has loaded at its first request, and where its
    import time goes (``-X importtime``: each module's own time, summed per top-level package)."""
    env = dict(base_env(), PYTHONPATH=f"{path}{os.pathsep}{APPS}")
    argv = [PYTHON, "-X", "importtime", "-m", "lambda_asgi_stream", "run", "bench_app:app"]
    case = Variant(
        "run raw app -X importtime", label, "runtime", argv, env, "stream", "/hello", bench_app.BODY
    )
    res = runtime_session(api, case, event, warmup=0, count=1, workdir=workdir, cold=True)
    by_package: dict[str, int] = defaultdict(int)
    for line in Path(res["log"]).read_text(errors="replace").splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, _cumulative_us, name = line[len("import time:") :].split("|")
        by_package[name.strip().split(".")[0]] += int(self_us)
    modules = res.get("modules", {})
    largest = sorted(by_package.items(), key=lambda kv: -kv[1])[:12]
    watched = "asyncio, anyio, h11, sniffio, idna, ssl, concurrent, json, email, http"
    print(f"\n  [{label}] cold path of `run bench_app:app`, at its first request:")
    loaded = ", ".join(modules.get("loaded", []))
    print(f"    {modules.get('modules')} modules in sys.modules; of {watched}: {loaded}")
    print("    import time by package (-X importtime, self ms, inflated by the flag):")
    print("    " + ", ".join(f"{name} {us / 1000:.1f}" for name, us in largest))
    return {"modules": modules, "largest_imports_us": largest}


# --- profile ---------------------------------------------------------------------------------------


def run_profile(
    api: FakeAPI, variant: Variant, count: int, workdir: Path, top: int, clock: str, keep: str | None
) -> None:
    """cProfile of one runtime process serving ``count`` invocations (init included), top by tottime."""
    import pstats

    out = Path(keep).resolve() if keep else workdir / "profile.out"
    assert variant.argv[:2] == [PYTHON, "-m"]
    runner = str(Path(__file__).resolve().parent / "_profile_runner.py")
    variant.argv = [PYTHON, runner, str(out), clock, *variant.argv[2:]]
    # Stopped with SIGTERM (the runtime then shuts down cleanly), so that cProfile writes its file.
    runtime_session(
        api, variant, event_bytes(variant.path), warmup=0, count=count, workdir=workdir, graceful=True
    )
    stats = pstats.Stats(str(out))
    total = stats.total_tt  # type: ignore[attr-defined]
    print(
        f"\ncProfile ({clock} clock) of {variant.key}, {count} invocations (+ init): {total:.2f} s total, "
        f"{total / count * 1e6:.0f} µs per invocation with the profiler on"
    )
    stats.sort_stats("tottime").print_stats(top)
    print_profile_groups(stats, count)


PROFILE_GROUPS = [
    ("/h11/", "h11"),
    ("/anyio/", "anyio"),
    ("/sniffio/", "anyio"),
    ("/asyncio/", "asyncio (loop, tasks)"),
    ("/selectors.py", "asyncio (loop, tasks)"),
    ("/logging/", "logging"),
    ("/json/", "json"),
    ("lambda_asgi_stream/runtime.py", "ours: runtime.py"),
    ("lambda_asgi_stream/cycle.py", "ours: cycle.py"),
    ("lambda_asgi_stream/padding.py", "ours: padding.py"),
    ("lambda_asgi_stream/events/", "ours: events/"),
    ("lambda_asgi_stream/encoder.py", "ours: encoder.py"),
    ("lambda_asgi_stream/runtime_api.py", "ours: runtime_api.py"),
    ("lambda_asgi_stream/", "ours: other"),
    ("bench_app", "the app"),
]
SOCKET_CALLS = ("sendmsg", "recv", "poll", "sendall", "send'", "recv_into")


def print_profile_groups(stats: Any, count: int) -> None:
    """tottime summed per module group (C builtins go to 'C builtins', socket/epoll calls to 'syscalls')."""
    groups: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _line, func), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        total += tottime
        if filename == "~":
            group = "syscalls (socket, epoll)" if any(c in func for c in SOCKET_CALLS) else "C builtins"
        else:
            group = next((label for key, label in PROFILE_GROUPS if key in filename), "other Python")
        groups[group] += tottime
    print("tottime by module group (the profiler's own cost inflates code that makes many small calls):")
    for group, seconds in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {group:26s} {seconds / count * 1e6:8.1f} µs/invocation  {seconds / total:6.1%}")


# --- machine, json, main ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in ("anyio", "h11", "sniffio", "mangum", "awslambdaric", "uvicorn", "starlette", "fastapi"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
        "versions": versions,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def parse_ours(values: list[str] | None) -> dict[str, str]:
    if not values:
        return {"ours": str(Path(__file__).resolve().parent.parent)}
    ours = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or not label or ":" in label:
            sys.exit(f"--ours wants LABEL=PATH, not {value!r}")
        if not (Path(path) / "lambda_asgi_stream" / "__init__.py").is_file():
            sys.exit(f"--ours {value}: no lambda_asgi_stream package under {path}")
        ours[label] = str(Path(path).resolve())
    return ours


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ours", action="append", metavar="LABEL=PATH", help="a checkout of ours (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds, N=400, 8 cold runs (~1-2 min)")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 7)")
    parser.add_argument("--count", type=int, help="measured invocations per process, N (default 2000)")
    parser.add_argument("--warmup", type=int, help="warm-up invocations per process, W (default 200)")
    parser.add_argument("--cold-runs", type=int, help="fresh processes per cold-start variant (default 20)")
    parser.add_argument("--no-warm", action="store_true", help="skip the CPU-per-invocation part")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start part")
    parser.add_argument("--only", help="comma-separated variant names to run (the reference always runs)")
    parser.add_argument(
        "--ric-exec-env",
        default="",
        metavar="ENV",
        help="AWS_EXECUTION_ENV for awslambdaric (e.g. AWS_Lambda_python3.13, which makes it poll `next`"
        " from a thread, as the python3.12+ managed runtimes do); default unset: the cheaper loop",
    )
    parser.add_argument(
        "--paired",
        metavar="VARIANTS",
        help="comma-separated run-* variants: only those, checkout against checkout (two or more --ours),"
        " alternating in each round, with the median of the per-round ratios (for small differences)",
    )
    parser.add_argument(
        "--instructions",
        metavar="VARIANTS",
        help="comma-separated run-* variants: user-space instructions per invocation of each, per --ours,"
        " under callgrind (needs valgrind; deterministic, for changes this VM's noise hides)",
    )
    parser.add_argument("--json", metavar="OUT", help="write every sample and median to OUT")
    parser.add_argument(
        "--profile", metavar="VARIANT", help="cProfile one process of VARIANT (e.g. run-stream-1)"
    )
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument(
        "--profile-clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="cpu (default): process_time, preemption not charged; wall: cProfile's default clock",
    )
    parser.add_argument("--profile-out", metavar="FILE", help="keep the cProfile stats file (pstats format)")
    parser.add_argument(
        "--chart", metavar="OUT.png", help="draw a chart from --before/--after (or --from) JSON"
    )
    parser.add_argument("--before", metavar="A.json")
    parser.add_argument("--after", metavar="B.json")
    parser.add_argument("--from", dest="from_", metavar="RUN.json", help="one run with several --ours labels")
    args = parser.parse_args()

    if args.chart:
        from _chart import draw

        files = [f for f in (args.before, args.after, args.from_) if f]
        if not files:
            sys.exit("--chart needs --before A.json --after B.json, or --from RUN.json")
        draw(args.chart, files)
        print(f"wrote {args.chart}")
        return

    args.rounds = args.rounds or (2 if args.quick else 7)
    args.count = args.count or (400 if args.quick else 2000)
    args.warmup = args.warmup or (50 if args.quick else 200)
    args.cold_runs = args.cold_runs or (8 if args.quick else 20)
    args.ours = parse_ours(args.ours)
    info = machine()
    print(
        f"{info['cpu']} x{info['cpus']}, Linux {info['kernel']}, Python {info['python']}, "
        f"load {info['loadavg_start'][0]:.2f}; " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    )
    for label, path in args.ours.items():
        print(f"  ours [{label}] = {path}")

    workdir = Path(tempfile.mkdtemp(prefix="invocation-cost-"))
    api = FakeAPI()
    output: dict[str, Any] = {"machine": info, "argv": sys.argv, "ours": args.ours, "settings": {}}
    try:
        variants = [
            v for label, path in args.ours.items() for v in ours_variants(label, path, args.ric_exec_env)
        ]
        variants = shared_variants(args.ric_exec_env) + variants
        if args.profile:
            variant = next((v for v in variants if v.name == args.profile), None)
            if variant is None or variant.kind != "runtime":
                sys.exit(f"--profile: no runtime variant named {args.profile!r}")
            run_profile(
                api, variant, args.count, workdir, args.profile_top, args.profile_clock, args.profile_out
            )
            return
        if args.instructions:
            import _instructions

            names = args.instructions.split(",")
            labels = list(args.ours)
            # Else the first run of a checkout compiles what the second then loads: not per invocation.
            compile_all([*args.ours.values(), str(APPS)])
            output["instructions"] = _instructions.run(api, variants, labels, names, event_bytes, workdir)
            args.no_warm = args.no_cold = True
        if args.paired:
            output["paired"] = run_paired(api, variants, args, workdir)
            args.no_warm = args.no_cold = True
        if args.only:
            keep = set(args.only.split(",")) | {REFERENCE}
            variants = [v for v in variants if v.name in keep]
        output["settings"] = {
            "rounds": args.rounds,
            "count": args.count,
            "warmup": args.warmup,
            "cold_runs": args.cold_runs,
            "ric_exec_env": args.ric_exec_env,
        }
        if not args.no_warm:
            output["warm"] = run_warm(api, variants, args, workdir)
            print_warm(output["warm"], list(args.ours))
        if not args.no_cold:
            output["cold"] = run_cold(api, args.ours, args.ric_exec_env, args.cold_runs, workdir)
    finally:
        api.close()
        output["machine"]["loadavg_end"] = os.getloadavg()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(output, indent=1) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
