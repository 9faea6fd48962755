"""``--integration rest`` (streams, payload 1.0) and ``alb`` (buffered): basic requests work end to end."""

from __future__ import annotations

import httpx
import pytest

from .conftest import APP, Factory
from .harness import GUARD_S, Emulator


@pytest.fixture(scope="module")
def emu_rest(start_emulator: Factory) -> Emulator:
    return start_emulator(APP, "--integration", "rest", "--buffering", "off")


@pytest.fixture(scope="module")
def emu_alb(start_emulator: Factory) -> Emulator:
    return start_emulator(APP, "--integration", "alb")


def _check_hello(emu: Emulator, response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    got = response.json()
    assert got["scheme"] == "http"
    assert got["path"] == "/hello"
    assert got["url"] == f"{emu.url}/hello?key=k&x=1&x=2"
    assert got["cookies"] == {"c": "3"}
    assert got["header"] == "yes"


def _hello(emu: Emulator) -> httpx.Response:
    return httpx.get(
        f"{emu.url}/hello?key=k&x=1&x=2", headers={"cookie": "c=3", "x-test": "yes"}, timeout=GUARD_S
    )


def test_rest_streams_with_multi_value_headers(emu_rest: Emulator) -> None:
    assert "(rest, RESPONSE_STREAM," in emu_rest.console
    mark = emu_rest.mark()
    response = _hello(emu_rest)
    _check_hello(emu_rest, response)
    assert response.headers.get_list("x-multi") == ["one", "two"]  # REST keeps repeated headers apart
    assert response.headers["transfer-encoding"] == "chunked"
    assert "end=complete" in emu_rest.log_line("GET /hello?key=k&x=1&x=2", start=mark)


def test_alb_is_buffered(emu_alb: Emulator) -> None:
    assert "(alb, BUFFERED," in emu_alb.console
    mark = emu_alb.mark()
    response = _hello(emu_alb)
    _check_hello(emu_alb, response)
    assert response.headers.get_list("x-multi") == ["one", "two"]
    assert "end=complete" in emu_alb.log_line("GET /hello?key=k&x=1&x=2", start=mark)


def test_alb_client_address_is_the_one_that_connected(emu_alb: Emulator) -> None:
    """ALB appends the address it saw connect to X-Forwarded-For; the app's client is that last entry,
    never an address the client wrote itself."""
    response = httpx.get(
        f"{emu_alb.url}/hello",
        headers=[("x-forwarded-for", "6.6.6.6"), ("X-Forwarded-For", "7.7.7.7, 8.8.8.8")],
        timeout=GUARD_S,
    )
    got = response.json()
    assert got["client"] == ["127.0.0.1", 0]
    assert got["forwarded_for"] == "6.6.6.6, 7.7.7.7, 8.8.8.8, 127.0.0.1"
    plain = httpx.get(f"{emu_alb.url}/hello", timeout=GUARD_S).json()
    assert plain["client"] == ["127.0.0.1", 0] and plain["forwarded_for"] == "127.0.0.1"


def test_buffered_response_over_6_mb_gives_500_saying_why(emu_alb: Emulator) -> None:
    mark = emu_alb.mark()
    size = 6 * 1024 * 1024 + 1
    response = httpx.get(f"{emu_alb.url}/body?size={size}", timeout=GUARD_S)
    assert response.status_code == 500
    emu_alb.wait_for(r"app failed: buffered response body passed .*6 MB", start=mark)
    assert httpx.get(f"{emu_alb.url}/body?size=1000", timeout=GUARD_S).content == b"x" * 1000
