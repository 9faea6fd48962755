"""``--buffering lambda``: small writes are held back as Lambda holds them, and padding pushes them out.

Proof of holding, no clock: on the wire every release of the front door is one HTTP chunk. With
``--buffering off`` each write is its own chunk (test_streaming); here two small events written with a
pause between them (the app waits for the test after the first) arrive in one chunk, at the end.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from httpx_sse import connect_sse

from .conftest import APP, Factory
from .harness import GUARD_S, ChunkedReader, Emulator, raw_get, wait_for_file


@pytest.fixture(scope="module")
def emu_held(start_emulator: Factory) -> Emulator:
    return start_emulator(APP, "--buffering", "lambda", env={"LAMBDA_ASGI_STREAM_PADDING": "none"})


@pytest.fixture(scope="module")
def emu_padded(start_emulator: Factory) -> Emulator:
    return start_emulator(APP, "--buffering", "lambda", env={"LAMBDA_ASGI_STREAM_PADDING": "idle"})


def test_small_unpadded_events_are_held_back(emu_held: Emulator) -> None:
    key = uuid.uuid4().hex[:12]
    mark = emu_held.mark()
    with raw_get(emu_held, f"/sse?key={key}&n=2") as sock:
        reader = ChunkedReader(sock)
        status, _ = reader.head()  # the status and headers are not held
        assert status == 200
        wait_for_file(emu_held.signals / f"{key}.1")  # event 1 is written; the app now waits
        (emu_held.signals / f"{key}.go1").touch()
        # Event 1 was not sent when it was written: it comes with event 2, released by the end.
        assert reader.chunk() == b"data: 1\n\ndata: 2\n\n"
        assert reader.chunk() == b""
    line = emu_held.log_line(f"GET /sse?key={key}&n=2", start=mark)
    assert "chunks=1 padding=0 end=complete" in line


def test_a_write_over_the_threshold_is_released_at_once(emu_held: Emulator) -> None:
    """The other half of the model: 100 KiB pending releases the bytes, before the app goes on."""
    key = uuid.uuid4().hex[:12]
    size = 100 * 1024
    with raw_get(emu_held, f"/sse?key={key}&n=2&size={size}") as sock:
        reader = ChunkedReader(sock)
        assert reader.head()[0] == 200
        first = reader.chunk()
        assert first == b"data: 1" + b"x" * size + b"\n\n"
        assert not (emu_held.signals / f"{key}.2").exists()
        wait_for_file(emu_held.signals / f"{key}.1")
        (emu_held.signals / f"{key}.go1").touch()
        assert reader.chunk() == b"data: 2" + b"x" * size + b"\n\n"
        assert reader.chunk() == b""


def test_padding_pushes_each_event_through(emu_padded: Emulator) -> None:
    """With the runtime's idle padding, each small event reaches the client before the next exists."""
    key = uuid.uuid4().hex[:12]
    mark = emu_padded.mark()
    seen = []
    with (
        httpx.Client(timeout=GUARD_S) as client,
        connect_sse(client, "GET", f"{emu_padded.url}/sse?key={key}&n=3") as source,
    ):
        for event in source.iter_sse():
            seen.append(event.data)
            n = len(seen)
            if n < 3:
                wait_for_file(emu_padded.signals / f"{key}.{n}")
                assert not (emu_padded.signals / f"{key}.{n + 1}").exists()
                (emu_padded.signals / f"{key}.go{n}").touch()
    assert seen == ["1", "2", "3"]
    line = emu_padded.log_line(f"GET /sse?key={key}&n=3", start=mark)
    padding = int(line.split("padding=")[1].split()[0])
    assert padding >= 2 * (100 * 1024 - 20)  # events 1 and 2 each padded up to the threshold
    assert "end=complete" in line
