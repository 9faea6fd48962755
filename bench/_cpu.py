"""CPU time consumed so far by another process, read from /proc (Linux only).

Two readings of the same thing, both covering every thread of the process:

* ``utime + stime`` from ``/proc/<pid>/stat`` (proc(5)), in clock ticks (usually 10 ms each), and
* the sum of ``sum_exec_runtime`` over ``/proc/<pid>/task/*/schedstat`` (the scheduler's own account, in
  nanoseconds; Documentation/scheduler/sched-stats.rst), which is what utime/stime are derived from.

The tick count is coarse (a 2,000-invocation window of ~100 µs each is 20 ticks), so the scheduler
figure is the one reported; the tick figure is kept beside it as a cross-check. The scheduler figure
only covers threads alive at both samples: when the set of threads changed in between (a thread per
invocation, or an idle worker thread that ended), only the tick figure is right; see ``cpu_between``.
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
    threads: tuple[int, ...]  # the thread ids alive now


def cpu_sample(pid: int) -> CPUSample:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # Fields after the command name, which is in parentheses and may itself contain spaces or parens.
    fields = stat[stat.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5), counted from 1
    sched_s, threads = _sched_seconds(pid)
    return CPUSample((utime + stime) * CLOCK_TICK_S, stime * CLOCK_TICK_S, sched_s, threads)


def _sched_seconds(pid: int) -> tuple[float, tuple[int, ...]]:
    total = 0
    alive = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return float("nan"), ()
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
            alive.append(int(tid))
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total / 1e9, tuple(sorted(alive))


def cpu_between(a: CPUSample, b: CPUSample) -> tuple[float, bool]:
    """CPU seconds used between two samples, and whether that is the coarse tick figure (threads changed)."""
    if a.threads == b.threads and a.sched_s == a.sched_s:  # (not NaN)
        return b.sched_s - a.sched_s, False
    return b.ticks_s - a.ticks_s, True
