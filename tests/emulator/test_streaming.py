"""The front door streams: each event reaches the client before the app produces the next one.

Order proofs, no clock: the app writes event n, then waits until the test has read event n (the test
creates ``<key>.go<n>`` only after reading it). A front door that held event n would hang the app, and the
test fails on its guard timeout instead.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from typing import IO

import httpx
import pytest
from httpx_sse import connect_sse

from .harness import GUARD_S, ChunkedReader, Emulator, raw_get, wait_for_file


def _key() -> str:
    return uuid.uuid4().hex[:12]


def test_sse_events_arrive_one_by_one_httpx_sse(emu_off: Emulator) -> None:
    key = _key()
    mark = emu_off.mark()
    seen = []
    with (
        httpx.Client(timeout=GUARD_S) as client,
        connect_sse(client, "GET", f"{emu_off.url}/sse?key={key}&n=3") as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"] == "text/event-stream"
        for event in source.iter_sse():
            seen.append(event.data)
            n = len(seen)
            if n < 3:
                # The app has written event n and now waits; it cannot have written event n + 1.
                wait_for_file(emu_off.signals / f"{key}.{n}")
                assert not (emu_off.signals / f"{key}.{n + 1}").exists()
                (emu_off.signals / f"{key}.go{n}").touch()
    assert seen == ["1", "2", "3"]
    line = emu_off.log_line(f"GET /sse?key={key}&n=3", start=mark)
    assert " 200 " in line
    assert "chunks=3 padding=0 end=complete" in line


def test_sse_events_arrive_one_by_one_raw_socket(emu_off: Emulator) -> None:
    """On the wire: one HTTP chunk per write, each sent before the app writes the next."""
    key = _key()
    with raw_get(emu_off, f"/sse?key={key}&n=3") as sock:
        reader = ChunkedReader(sock)
        status, headers = reader.head()
        assert status == 200
        for n in (1, 2):
            assert reader.chunk() == f"data: {n}\n\n".encode()
            wait_for_file(emu_off.signals / f"{key}.{n}")
            assert not (emu_off.signals / f"{key}.{n + 1}").exists()
            (emu_off.signals / f"{key}.go{n}").touch()
        assert reader.chunk() == b"data: 3\n\n"
        assert reader.chunk() == b""  # the final chunk: a clean end


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_sse_events_arrive_one_by_one_curl(emu_off: Emulator) -> None:
    key = _key()
    with subprocess.Popen(
        ["curl", "-sS", "-N", "--max-time", str(int(GUARD_S)), f"{emu_off.url}/sse?key={key}&n=3"],
        stdout=subprocess.PIPE,
    ) as curl:
        out: IO[bytes] = curl.stdout  # type: ignore[assignment]
        for n in (1, 2):
            assert out.readline() == f"data: {n}\n".encode()
            assert out.readline() == b"\n"
            wait_for_file(emu_off.signals / f"{key}.{n}")
            assert not (emu_off.signals / f"{key}.{n + 1}").exists()
            (emu_off.signals / f"{key}.go{n}").touch()
        assert out.read() == b"data: 3\n\n"
        assert curl.wait(GUARD_S) == 0


def test_headers_cookies_and_urls(emu_off: Emulator) -> None:
    """Status, headers, Set-Cookie from the prelude's cookies; the app sees an http URL back to here."""
    key = _key()
    mark = emu_off.mark()
    response = httpx.get(
        f"{emu_off.url}/hello?key={key}&x=1",
        headers={"cookie": "c=3; d=4", "x-test": "yes"},
        timeout=GUARD_S,
    )
    assert response.status_code == 200
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert response.headers["x-multi"] == "one, two"  # payload 2.0 prelude headers are comma-joined
    assert "server" not in response.headers
    got = response.json()
    assert got["scheme"] == "http"
    assert got["url"] == f"{emu_off.url}/hello?key={key}&x=1"
    assert got["url_for_root"] == f"{emu_off.url}/"
    assert got["cookies"] == {"c": "3", "d": "4"}
    assert got["header"] == "yes"
    assert got["pid"] in emu_off.child_pids()  # served by the child process, not in the emulator
    emu_off.wait_for(rf"app: hello {key}", start=mark)  # the app's output shows on the console
    line = emu_off.log_line(f"GET /hello?key={key}&x=1", start=mark)
    assert f"bytes={len(response.content)} chunks=1 padding=0 end=complete" in line
