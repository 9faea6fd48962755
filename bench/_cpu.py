"""CPU time consumed so far by another process, read from /proc (Linux only).

Two readings of the same thing, both covering every thread of the process:

* ``utime + stime`` from ``/proc/<pid>/stat`` (proc(5)), in clock ticks (usually 10 ms each), and
* the sum of ``sum_exec_runtime`` over ``/proc/<pid>/task/*/schedstat`` (the scheduler's own account, in
  nanoseconds; Documentation/scheduler/sched-stats.rst), which is what utime/stime are derived from.

The tick count is coarse (a 2,000-invocation window of ~100 µs each is 20 ticks), so the scheduler
figure is the one reported; the tick figure is kept beside it as a cross-check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CPUSample:
    ticks_s: float  # (utime + stime) / CLK_TCK, seconds
    system_s: float  # stime / CLK_TCK: the kernel's share (syscalls, and loopback TCP processing)
    sched_s: float  # sum of schedstat run time over the threads alive now, seconds (nan if unavailable)


def cpu_sample(pid: int) -> CPUSample:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # Fields after the command name, which is in parentheses and may itself contain spaces or parens.
    fields = stat[stat.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5), counted from 1
    return CPUSample((utime + stime) * CLOCK_TICK_S, stime * CLOCK_TICK_S, _sched_seconds(pid))


def _sched_seconds(pid: int) -> float:
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return float("nan")
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total / 1e9
