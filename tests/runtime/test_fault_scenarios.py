"""Faults a review of the asyncio rewrite found, each run as its own process (they block, or send signals).

* ``drain_hang.py``: a heartbeat write blocked on backpressure is cancelled when the app fails; the failure
  report that follows must still get the socket's wake-up (it used to lose it and hang).
* ``double_end.py``: the deadline hits while the app's last body write waits on backpressure; the body
  must carry one last chunk, the failure's, with its error trailers (it used to get two).
* ``sigterm_window.py``: SIGTERM just before the worker blocks in its wait for ``next`` must still stop
  the loop and run lifespan shutdown (it used to be lost until SIGKILL).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "scenarios"


def run(name: str) -> str:
    try:
        out = subprocess.run(
            [sys.executable, str(HERE / name)], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} did not finish")
    return out.stdout + out.stderr


def test_a_failure_report_after_a_cancelled_padding_write_does_not_hang() -> None:
    output = run("drain_hang.py")
    assert "OK: run() returned error ; last chunk reached peer: True" in output, output


def test_the_deadline_during_the_last_write_leaves_one_last_chunk_with_the_error() -> None:
    output = run("double_end.py")
    assert "cycle end: timeout" in output, output
    assert "last-chunk terminators on the wire: 1" in output, output
    assert "error trailers: True" in output, output


def test_sigterm_just_before_the_blocking_wait_still_shuts_down() -> None:
    output = run("sigterm_window.py")
    assert "OK: serve() returned after SIGTERM; lifespan events: ['shutdown']" in output, output
