"""``--timeout``: Lambda's function timeout, from the moment the runtime takes the invocation."""

from __future__ import annotations

import uuid

import httpx
import pytest

from .conftest import APP, Factory
from .harness import GUARD_S, ChunkedReader, Emulator, raw_get


@pytest.fixture(scope="module")
def emu_1s(start_emulator: Factory) -> Emulator:
    return start_emulator(
        APP, "--timeout", "1", "--buffering", "off", env={"LAMBDA_ASGI_STREAM_PADDING": "none"}
    )


def test_timeout_before_any_byte_kills_the_sandbox_and_gives_502(emu_1s: Emulator) -> None:
    """An app that blocks its event loop cannot be cancelled by the runtime: the sandbox is killed."""
    key = uuid.uuid4().hex[:12]
    pids = emu_1s.child_pids()
    mark = emu_1s.mark()
    r = httpx.get(f"{emu_1s.url}/block?key={key}&seconds=60", timeout=GUARD_S)
    assert r.status_code == 502
    emu_1s.wait_for(
        rf"GET /block\?key={key}&seconds=60: Sandbox\.Timedout: Task timed out after 1\.00 seconds "
        r"\(--timeout\): the sandbox was killed",
        start=mark,
    )
    assert "end=error:Sandbox.Timedout" in emu_1s.log_line(f"GET /block?key={key}&seconds=60", start=mark)
    r = httpx.get(f"{emu_1s.url}/hello", timeout=GUARD_S)  # a new sandbox serves the next request
    assert r.status_code == 200
    assert r.json()["pid"] not in pids


def test_timeout_mid_stream_kills_the_sandbox_and_cuts(emu_1s: Emulator) -> None:
    mark = emu_1s.mark()
    with raw_get(emu_1s, "/block?stream=1&seconds=60") as sock:
        reader = ChunkedReader(sock)
        assert reader.head()[0] == 200
        assert reader.chunk() == b"data: 1\n\n"
        assert reader.chunk() is None  # cut: no final chunk
    emu_1s.wait_for(r"Sandbox\.Timedout: Task timed out after 1\.00 seconds", start=mark)
    emu_1s.wait_for(r"the response was cut after 9 body bytes", start=mark)
    assert httpx.get(f"{emu_1s.url}/hello", timeout=GUARD_S).status_code == 200


def test_async_app_is_stopped_by_the_runtime_before_the_kill(emu_1s: Emulator) -> None:
    """An app that awaits is cancelled by the runtime just before the deadline; it reports a timeout in
    the trailers, the client's stream is cut, and the sandbox lives on."""
    pid = httpx.get(f"{emu_1s.url}/hello", timeout=GUARD_S).json()["pid"]
    mark = emu_1s.mark()
    with raw_get(emu_1s, "/hang") as sock:
        reader = ChunkedReader(sock)
        assert reader.head()[0] == 200
        assert reader.chunk() == b"data: 1\n\n"
        assert reader.chunk() is None
    emu_1s.wait_for(r"GET /hang: Function\.Timeout: the app was cancelled at the invocation", start=mark)
    assert httpx.get(f"{emu_1s.url}/hello", timeout=GUARD_S).json()["pid"] == pid


def test_timeout_while_the_client_reads_slowly(emu_1s: Emulator) -> None:
    """The deadline can strike while the front door waits on a client that does not read (backpressure);
    the sandbox is still killed and replaced, and the client's stream is cut."""
    size = 200 * 1024 * 1024
    mark = emu_1s.mark()
    with raw_get(emu_1s, f"/download?size={size}") as sock:
        reader = ChunkedReader(sock)
        assert reader.head()[0] == 200
        emu_1s.wait_for(r"Sandbox\.Timedout: Task timed out after 1\.00 seconds", start=mark)
        received = 0
        while (data := reader.chunk()) is not None:
            assert data != b"", "the response must not end cleanly"
            received += len(data)
        assert 0 < received < size
    assert httpx.get(f"{emu_1s.url}/hello", timeout=GUARD_S).status_code == 200
