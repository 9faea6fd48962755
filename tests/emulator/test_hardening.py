"""Nothing lost, nothing forged: clients that misbehave (never read, trickle a request head, leave
mid-upload, forge log lines, send oversized events) and statuses HTTP cannot carry."""

from __future__ import annotations

import select
import socket
import time
import uuid

import httpx
import pytest

from .conftest import APP, Factory
from .harness import GUARD_S, Emulator

MiB = 1024 * 1024
# A hold-back threshold larger than what the kernel's socket buffers absorb: the first release already
# leaves bytes waiting in the server for a client that does not read, and the next write must wait.
HELD = str(8 * MiB)
NO_PADDING = {"LAMBDA_ASGI_STREAM_PADDING": "none"}


def _key() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def emu_hold(start_emulator: Factory) -> Emulator:
    """Releases held bytes 8 MiB at a time; the function timeout is short."""
    return start_emulator(APP, "--timeout", "2", "--buffer-threshold", HELD, env=NO_PADDING)


@pytest.fixture(scope="module")
def emu_strict(start_emulator: Factory) -> Emulator:
    """Short request-head and client-write bounds."""
    return start_emulator(
        APP, "--head-timeout", "1", "--write-timeout", "1", "--buffer-threshold", HELD, env=NO_PADDING
    )


def _stalled_client(emu: Emulator, target: str) -> socket.socket:
    """A GET whose client never reads its response (a small receive buffer fills at once)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(GUARD_S)
    sock.connect((emu.host, emu.port))
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {emu.host}\r\n\r\n".encode())
    return sock


# --- a client that never reads -------------------------------------------------------------------------


def test_sandbox_is_released_at_the_functions_end_whatever_the_client(emu_hold: Emulator) -> None:
    key = _key()
    target = f"/download?size={9 * MiB}&key={key}"
    mark = emu_hold.mark()
    with _stalled_client(emu_hold, target):
        # The function ends at once: 8 MiB went out (and wait in the server), the last 1 MiB waits for the
        # client to read. The next request gets the sandbox (with one sandbox, nothing else could serve it)
        assert httpx.get(f"{emu_hold.url}/hello", timeout=GUARD_S).status_code == 200
        # ... while the first response is still being written, and its function is not "timed out".
        console = emu_hold.since(mark)
        assert f"GET {target} " not in console and "Timedout" not in console


def test_sandbox_is_released_at_the_timeout_whatever_the_client(emu_hold: Emulator) -> None:
    key = _key()
    target = f"/download?size={9 * MiB}&hang=1&key={key}"
    mark = emu_hold.mark()
    with _stalled_client(emu_hold, target):
        # 8 MiB went out; 1 MiB is held when the function blocks. At its timeout the sandbox is killed and
        # the held 1 MiB waits for the client; a new sandbox serves the next request meanwhile.
        emu_hold.wait_for(r"Sandbox\.Timedout: Task timed out after 2\.00 seconds", start=mark)
        assert httpx.get(f"{emu_hold.url}/hello", timeout=GUARD_S).status_code == 200
        assert f"GET {target} " not in emu_hold.since(mark)


def test_writes_to_a_client_that_stopped_reading_give_up(emu_strict: Emulator) -> None:
    key = _key()
    mark = emu_strict.mark()
    with _stalled_client(emu_strict, f"/download?size={16 * MiB}&key={key}") as sock:
        line = emu_strict.log_line(f"GET /download?size={16 * MiB}&key={key}", start=mark)
        assert " 200 " in line and line.endswith("end=client-stalled")
        received = b""
        while data := sock.recv(MiB):  # the connection is closed: what was written, then EOF
            received += data
        assert not received.endswith(b"0\r\n\r\n")  # no final chunk
    emu_strict.wait_for(r"stopped reading: gave up after 1(\.0)? s", start=mark)


# --- a client that trickles its request head ---------------------------------------------------------


def _closed_by_server(sock: socket.socket, trickle: bytes) -> bool:
    """Send ``trickle`` a byte at a time; True once the server closes the connection."""
    deadline = time.monotonic() + GUARD_S
    for byte in trickle:
        if time.monotonic() > deadline:
            return False
        try:
            sock.send(bytes([byte]))
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable and sock.recv(4096) == b"":
                return True
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


def test_request_head_must_arrive_within_the_head_timeout(emu_strict: Emulator) -> None:
    with socket.create_connection((emu_strict.host, emu_strict.port), timeout=GUARD_S) as sock:
        head = b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
        assert _closed_by_server(sock, head)
    with socket.create_connection((emu_strict.host, emu_strict.port), timeout=GUARD_S) as sock:
        assert sock.recv(1) == b""  # a connection that sends nothing is closed too
    with httpx.Client(timeout=GUARD_S) as client:  # keep-alive requests are unaffected
        for _ in range(3):
            assert client.get(f"{emu_strict.url}/hello").status_code == 200
            time.sleep(0.5)


def test_slowly_trickled_second_request_on_a_kept_alive_connection_is_closed(emu_strict: Emulator) -> None:
    with socket.create_connection((emu_strict.host, emu_strict.port), timeout=GUARD_S) as sock:
        sock.sendall(b"GET /status?code=200&body=ok HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        while not response.endswith(b"ok\r\n0\r\n\r\n"):
            data = sock.recv(4096)
            assert data, response
            response += data
        assert _closed_by_server(sock, b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000)


# --- forged log lines --------------------------------------------------------------------------------


def test_request_text_cannot_forge_console_lines(emu_off: Emulator) -> None:
    mark = emu_off.mark()
    with httpx.Client(timeout=GUARD_S) as client:
        assert client.get(f"{emu_off.url}/y%0aERROR%20forged%20line%202").status_code == 404
        assert client.get(f"{emu_off.url}/%1b[2J%1b]0;title%07").status_code == 404
    line = emu_off.log_line("GET /y%0AERROR%20forged%20line%202", start=mark)
    assert " 404 " in line
    emu_off.log_line("GET /%1B%5B2J%1B%5D0%3Btitle%07", start=mark)
    console = emu_off.since(mark)
    assert not [text for text in console.splitlines() if text.startswith("ERROR forged")]
    assert "\x1b" not in console and "\x07" not in console


# --- statuses HTTP cannot carry ------------------------------------------------------------------------


@pytest.mark.parametrize("code", [101, 999])
def test_status_http_cannot_carry_gives_502(emu_off: Emulator, code: int) -> None:
    mark = emu_off.mark()
    with httpx.Client(timeout=GUARD_S) as client:
        response = client.get(f"{emu_off.url}/status?code={code}&body=hi")
        assert response.status_code == 502
        line = emu_off.log_line(f"GET /status?code={code}&body=hi", start=mark)
        assert " 502 " in line and line.endswith("end=error:Runtime.InvalidStatus")
        assert client.get(f"{emu_off.url}/hello").status_code == 200  # the connection is still good
    emu_off.log_line("GET /hello", start=mark)
    emu_off.wait_for(rf"Runtime\.InvalidStatus: .*status {code}", start=mark)
    assert "Traceback" not in emu_off.since(mark)


def test_body_of_a_204_is_dropped_with_one_warning(emu_off: Emulator) -> None:
    mark = emu_off.mark()
    with httpx.Client(timeout=GUARD_S) as client:
        response = client.get(f"{emu_off.url}/status?code=204&body=hello")
        assert response.status_code == 204 and response.content == b""
        assert client.get(f"{emu_off.url}/hello").status_code == 200
    line = emu_off.log_line("GET /status?code=204&body=hello", start=mark)
    assert line.endswith("end=complete") and " bytes=0 " in line
    emu_off.log_line("GET /hello", start=mark)
    console = emu_off.since(mark)
    assert console.count("status 204 has no body") == 1
    assert "Traceback" not in console


# --- requests ---------------------------------------------------------------------------------------------


def test_client_leaving_mid_upload_does_not_invoke(emu_off: Emulator) -> None:
    key = _key()
    mark = emu_off.mark()
    with socket.create_connection((emu_off.host, emu_off.port), timeout=GUARD_S) as sock:
        head = f"POST /hello?key={key} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
        sock.sendall(head.encode() + b"x" * 1000)
    line = emu_off.log_line(f"POST /hello?key={key}", start=mark)
    assert line.endswith("end=client-gone") and f"POST /hello?key={key} - " in line
    assert f"app: hello {key}" not in emu_off.since(mark)


def test_request_limit_is_on_the_event_lambda_receives(emu_off: Emulator) -> None:
    body = bytes(range(256)) * (int(5.8 * MiB) // 256)  # 5.8 MB binary: 7.7 MB as base64 in the event
    mark = emu_off.mark()
    response = httpx.post(
        f"{emu_off.url}/hello", content=body, headers={"content-type": "image/png"}, timeout=GUARD_S
    )
    assert response.status_code == 413
    assert "6291456" in response.text and "base64" in response.text
    assert "end=error:RequestTooLarge" in emu_off.log_line("POST /hello", start=mark)
    text = b"x" * int(5.8 * MiB)  # the same size as text travels as it is, under the limit
    response = httpx.post(
        f"{emu_off.url}/hello", content=text, headers={"content-type": "text/plain"}, timeout=GUARD_S
    )
    assert response.status_code == 200
