"""What a client and the console see when an invocation fails, and that the emulator recovers."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid

import httpx
import pytest

from .conftest import Factory
from .harness import GUARD_S, ChunkedReader, Emulator, raw_get, wait_for_file


def _key() -> str:
    return uuid.uuid4().hex[:12]


def _read_all(response: httpx.Response) -> bytes:
    body = b""
    for data in response.iter_raw():
        body += data
    return body


# --- the app raises -----------------------------------------------------------------------------------


def test_crash_mid_stream_cuts_the_response_httpx(emu_off: Emulator) -> None:
    key = _key()
    mark = emu_off.mark()
    with httpx.Client(timeout=GUARD_S) as client, client.stream("GET", f"{emu_off.url}/crash?key={key}") as r:
        assert r.status_code == 200  # committed before the error
        chunks = r.iter_raw()
        assert next(chunks) == b"data: 1\n\n"
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            next(chunks)
    # The error is on the console, plainly, with what the client got.
    emu_off.wait_for(rf"GET /crash\?key={key}: Function\.RuntimeError: boom {key}$", start=mark)
    emu_off.wait_for(r"status 200 was already sent: the response was cut after 9 body bytes", start=mark)
    line = emu_off.log_line(f"GET /crash?key={key}", start=mark)
    assert " 200 " in line and "bytes=9 chunks=1 " in line
    assert line.endswith("end=error:Function.RuntimeError")


def test_crash_mid_stream_cuts_the_response_on_the_wire(emu_off: Emulator) -> None:
    with raw_get(emu_off, f"/crash?key={_key()}") as sock:
        reader = ChunkedReader(sock)
        assert reader.head()[0] == 200
        assert reader.chunk() == b"data: 1\n\n"
        assert reader.chunk() is None  # the connection closed without the final (empty) chunk
        assert reader.eof


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_crash_mid_stream_is_a_partial_transfer_for_curl(emu_off: Emulator) -> None:
    done = subprocess.run(
        ["curl", "-sS", "-N", "--max-time", str(int(GUARD_S)), f"{emu_off.url}/crash?key={_key()}"],
        capture_output=True,
        timeout=GUARD_S,
    )
    assert done.stdout == b"data: 1\n\n"
    # CURLE_PARTIAL_FILE: "transfer closed with outstanding read data remaining"
    assert done.returncode == 18, done.stderr


def test_crash_before_the_response_is_the_runtimes_500(emu_off: Emulator) -> None:
    """The runtime answers an exception before ``http.response.start`` with a 500 prelude, then the error
    trailers; so the client gets that 500 (not the front door's 502), cut after its short body."""
    key = _key()
    mark = emu_off.mark()
    with (
        httpx.Client(timeout=GUARD_S) as client,
        client.stream("GET", f"{emu_off.url}/crash-early?key={key}") as r,
    ):
        assert r.status_code == 500
        with pytest.raises(httpx.RemoteProtocolError):
            _read_all(r)
    emu_off.wait_for(rf"Function\.RuntimeError: early boom {key}$", start=mark)


# --- the runtime process dies -------------------------------------------------------------------------


def test_child_death_before_the_response_gives_502_and_a_new_sandbox(emu_off: Emulator) -> None:
    key = _key()
    mark = emu_off.mark()
    pids = emu_off.child_pids()
    r = httpx.get(f"{emu_off.url}/die?key={key}", timeout=GUARD_S)
    assert r.status_code == 502
    emu_off.wait_for(rf"app: exiting the process \({key}\)", start=mark)  # the child's own output
    emu_off.wait_for(r"sandbox 0: the runtime exited with code 3; starting a new one", start=mark)
    emu_off.wait_for(rf"GET /die\?key={key}: Runtime\.ExitError: .* code 3", start=mark)
    assert "end=error:Runtime.ExitError" in emu_off.log_line(f"GET /die?key={key}", start=mark)
    r = httpx.get(f"{emu_off.url}/hello", timeout=GUARD_S)
    assert r.status_code == 200
    new_pid = r.json()["pid"]
    assert new_pid not in pids
    assert emu_off.child_pids()[-1] == new_pid


def test_child_death_mid_stream_cuts_and_recovers(emu_off: Emulator) -> None:
    key = _key()
    mark = emu_off.mark()
    with raw_get(emu_off, f"/die?key={key}&when=after") as sock:
        reader = ChunkedReader(sock)
        assert reader.head()[0] == 200
        assert reader.chunk() == b"data: 1\n\n"
        wait_for_file(emu_off.signals / f"{key}.1")
        (emu_off.signals / f"{key}.go1").touch()  # now the app exits the process
        assert reader.chunk() is None
    emu_off.wait_for(r"the response was cut after 9 body bytes", start=mark)
    assert httpx.get(f"{emu_off.url}/hello", timeout=GUARD_S).status_code == 200


# --- the app cannot be imported -----------------------------------------------------------------------


def test_import_failure_is_explained_answers_502_and_does_not_spin(start_emulator: Factory) -> None:
    emu = start_emulator("tests.emulator.broken_app:app")
    emu.wait_for(
        r"the app failed to start: Runtime\.ImportModuleError: importing 'tests\.emulator\.broken_app' "
        r"raised RuntimeError: broken on purpose"
    )
    emu.wait_for(r"requests get 502; the next request tries again")
    # No retry without a request. (An idle second: it cannot fail a correct emulator, however slow, and
    # is what catches a restart loop.)
    time.sleep(1.0)
    assert len(emu.child_pids()) == 1
    for attempt in range(1, 3):
        mark = emu.mark()
        r = httpx.get(f"{emu.url}/hello", timeout=GUARD_S)
        assert r.status_code == 502
        emu.wait_for(r"GET /hello: Runtime\.InitError: .*broken on purpose", start=mark)
        emu.wait_for(r"the client got 502", start=mark)
        # One new init per request, none in between: the emulator waits for demand, it does not loop.
        assert len(emu.child_pids()) == 1 + attempt
    # The child's own report of each attempt is on the console too, with the app's traceback.
    assert emu.console.count("ERROR lambda_asgi_stream: importing 'tests.emulator.broken_app'") == 3
    assert re.search(r'File ".*tests/emulator/broken_app\.py", line 3, in <module>', emu.console)


# --- limits -------------------------------------------------------------------------------------------


def test_prelude_over_16_kib_is_refused_and_explained(emu_off: Emulator) -> None:
    mark = emu_off.mark()
    with httpx.Client(timeout=GUARD_S) as client, client.stream("GET", f"{emu_off.url}/big-header") as r:
        assert r.status_code == 500
        assert "x-big" not in r.headers
        with pytest.raises(httpx.RemoteProtocolError):
            _read_all(r)
    emu_off.wait_for(r"Function\.PreludeTooLarge: .*Lambda accepts at most 16384 .*x-big", start=mark)


def test_request_body_over_6_mb_gets_413(emu_off: Emulator) -> None:
    mark = emu_off.mark()
    r = httpx.post(f"{emu_off.url}/hello", content=b"x" * (6 * 1024 * 1024 + 1), timeout=GUARD_S)
    assert r.status_code == 413
    emu_off.wait_for(
        r"POST /hello: Request over Lambda's 6291456 byte \(6 MB\) invoke payload limit", start=mark
    )
