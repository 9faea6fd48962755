"""``invocation_cost.py --instructions``: user-space instructions per invocation, under callgrind.

CPU time on a shared VM moves by ±20 % from one round to the next; an instruction count hardly moves.
Each variant runs twice under ``valgrind --tool=callgrind``, serving 100 and then 400 invocations (no
warm-up; every checkout byte-compiled first), and the difference of the two totals over 300 is the count
per invocation: the start-up, the imports and the shutdown cancel out. ``PYTHONHASHSEED=0`` keeps dict
and set orders, and so the count, the same from run to run (runs still differ by about 0.2 %: the clock
enters a few branches). It counts the runtime process's user-space instructions only: a system call is
one instruction, so a change that saves a ``sendmsg`` shows in the CPU figures, not here.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from _sessions import BenchError, FakeAPI, Variant, runtime_session

COUNTS = (100, 400)
_COLLECTED = re.compile(rb"Collected : (\d+)")


def _collected(log: Path) -> int:
    found = _COLLECTED.search(log.read_bytes())
    if found is None:
        raise BenchError(f"no instruction total in {log} (did the process exit cleanly?)")
    return int(found.group(1))


def count(api: FakeAPI, variant: Variant, event: bytes, workdir: Path) -> float:
    """Instructions per invocation of ``variant`` (a runtime variant)."""
    totals = []
    for n in COUNTS:
        log = workdir / f"{variant.key.replace(':', '_')}.{n}.valgrind"
        wrapped = dataclasses.replace(
            variant,
            argv=[
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={workdir / 'callgrind.out'}",
                f"--log-file={log}",
                *variant.argv,
            ],
            env=dict(variant.env, PYTHONHASHSEED="0"),
        )
        # Stopped with SIGTERM: the runtime shuts down and exits, and valgrind writes its totals then.
        runtime_session(api, wrapped, event, warmup=0, count=n, workdir=workdir, graceful=True, grace_s=120)
        totals.append(_collected(log))
        print(f"    {variant.key} x {n}: {totals[-1]:,} instructions", flush=True)
    return (totals[1] - totals[0]) / (COUNTS[1] - COUNTS[0])


def run(
    api: FakeAPI, variants: list[Variant], labels: list[str], names: list[str], events: Any, workdir: Path
) -> dict[str, Any]:
    """Every named variant for every checkout: instructions per invocation and the ratio to the first."""
    if shutil.which("valgrind") is None:
        sys.exit("--instructions needs valgrind on PATH (Debian: apt install valgrind)")
    by_key = {v.key: v for v in variants}
    missing = [n for n in names if f"{labels[0]}:{n}" not in by_key and n not in by_key]
    if missing:
        sys.exit(
            f"--instructions: no runtime variant named {', '.join(missing)} (run-buffered, ric-mangum, ...)"
        )
    runs = f"{COUNTS[1]} - {COUNTS[0]} invocations"
    print(f"\nInstructions per invocation (callgrind, {runs}): {' / '.join(labels)}")
    out: dict[str, Any] = {}
    for name in names:
        if name in by_key:  # not ours (ric-mangum, python-floor): once
            v = by_key[name]
            if v.kind != "runtime":
                sys.exit(f"--instructions: {name} is not a Runtime API client")
            out[name] = count(api, v, events(v.path), workdir)
            print(f"  {name:26} {out[name] / 1000:8.1f}k")
            continue
        for label in labels:
            v = by_key[f"{label}:{name}"]
            out[v.key] = count(api, v, events(v.path), workdir)
        base = out[f"{labels[0]}:{name}"]
        row = "  ".join(f"{label} {out[f'{label}:{name}'] / 1000:8.1f}k" for label in labels)
        ratios = "  ".join(f"{out[f'{label}:{name}'] / base:.3f}" for label in labels[1:])
        print(f"  {name:26} {row}   {'x ' + labels[0] + ' ' + ratios if ratios else ''}")
    _derived(out, labels)
    return out


def _derived(out: dict[str, Any], labels: list[str]) -> None:
    """The padding flusher (default - padding none) and the INFO line (INFO - WARNING), when measured."""
    pairs = [
        ("padding flusher, stream-1", "run-stream-1", "run-stream-1-nopad"),
        ("padding flusher, stream-4", "run-stream-4", "run-stream-4-nopad"),
        ("INFO line, stream-1", "run-stream-1-nopad", "run-stream-1-nopad-warn"),
        ("INFO line, stream-4", "run-stream-4-nopad", "run-stream-4-nopad-warn"),
    ]
    for what, full, without in pairs:
        for label in labels:
            a, b = out.get(f"{label}:{full}"), out.get(f"{label}:{without}")
            if a is not None and b is not None:
                print(f"  [{label}] {what}: {(a - b) / 1000:.1f}k = {(a - b) / a * 100:.1f} % of {full}")
