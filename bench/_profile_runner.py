"""Run a module as ``python -m MODULE`` would, under cProfile with a chosen clock; write the stats at exit.

    python bench/_profile_runner.py OUT cpu|wall MODULE [ARGS...]

``cpu`` profiles with ``time.process_time``, so that time spent preempted (on a loopback send that wakes
the peer, say) is not charged to the function that was running; ``wall`` is cProfile's default clock.
"""

import cProfile
import runpy
import sys
import time

out, clock, module, *rest = sys.argv[1:]
sys.argv = [module, *rest]
profile = cProfile.Profile(time.process_time if clock == "cpu" else time.perf_counter)
profile.enable()
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    profile.disable()
    profile.dump_stats(out)
