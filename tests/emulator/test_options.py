"""``--concurrency`` and ``--reload``, end to end; option checking of the command line."""

from __future__ import annotations

import os
import uuid

import httpx
from httpx_sse import connect_sse

from lambda_asgi_stream.__main__ import main

from .conftest import APP, Factory
from .harness import GUARD_S, ROOT, wait_for_file


def test_concurrency_runs_requests_side_by_side(start_emulator: Factory) -> None:
    emu = start_emulator(APP, "--concurrency", "2", "--buffering", "off")
    key = uuid.uuid4().hex[:12]
    with (
        httpx.Client(timeout=GUARD_S) as client,
        connect_sse(client, "GET", f"{emu.url}/sse?key={key}&n=2") as source,
    ):
        events = source.iter_sse()
        assert next(events).data == "1"
        wait_for_file(emu.signals / f"{key}.1")  # one sandbox is busy until the go-ahead ...
        other = httpx.get(f"{emu.url}/hello", timeout=GUARD_S)  # ... the other answers meanwhile
        assert other.status_code == 200
        (emu.signals / f"{key}.go1").touch()
        assert next(events).data == "2"
    assert len(set(emu.child_pids())) == 2
    assert other.json()["pid"] in emu.child_pids()


def test_reload_restarts_the_app_after_the_request_in_flight(start_emulator: Factory) -> None:
    emu = start_emulator(APP, "--reload", "--buffering", "off")
    old_pid = httpx.get(f"{emu.url}/hello", timeout=GUARD_S).json()["pid"]
    key = uuid.uuid4().hex[:12]
    with (
        httpx.Client(timeout=GUARD_S) as client,
        connect_sse(client, "GET", f"{emu.url}/sse?key={key}&n=2") as source,
    ):
        events = source.iter_sse()
        assert next(events).data == "1"
        mark = emu.mark()
        os.utime(ROOT / "tests" / "emulator" / "apps.py")  # "save" a source file
        emu.wait_for(r"changed: tests/emulator/apps\.py; restarting the app", start=mark)
        wait_for_file(emu.signals / f"{key}.1")
        (emu.signals / f"{key}.go1").touch()
        assert next(events).data == "2"  # the request in flight finished on the old process
    emu.wait_for(r"sandbox 0: runtime started \(pid \d+\)", start=mark)
    new_pid = httpx.get(f"{emu.url}/hello", timeout=GUARD_S).json()["pid"]
    assert new_pid != old_pid
    assert "exited with code" not in emu.since(mark)  # a deliberate restart, not reported as a crash


def test_bad_options_are_refused() -> None:
    assert main(["serve", APP, "--concurrency", "0"]) == 2
    assert main(["serve", APP, "--timeout", "0"]) == 2
    assert main(["serve", APP, "--buffer-threshold", "0"]) == 2
    assert main(["serve", APP, "--head-timeout", "0"]) == 2
    assert main(["serve", APP, "--write-timeout", "inf"]) == 2
