"""examples/fastapi_ssr: the page shell leaves before the slow sections are ready, and the progress bar
fills step by step. Order is proven with gates the test controls, never with timings."""

from __future__ import annotations

from html.parser import HTMLParser

import anyio
import httpx
import pytest

import examples.fastapi_ssr.app as ssr
from lambda_asgi_stream.testing import LambdaTransport

pytestmark = pytest.mark.anyio
LIMIT = 15.0


def _client() -> httpx.AsyncClient:
    # As deployed: Lambda's hold-back of small writes, with the idle padding flusher on.
    transport = LambdaTransport(ssr.app, buffering="lambda", padding="idle")
    return httpx.AsyncClient(transport=transport, base_url="https://lambda")


class _Outline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.sections: list[str] = []
        self.items: int = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(dict(attrs)["id"] or "")
        self.items += tag == "li"


async def test_shell_arrives_before_any_section_is_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    release = {name: anyio.Event() for name in ssr.SECTIONS}
    loaded: list[str] = []

    async def load(name: str) -> list[str]:
        await release[name].wait()
        loaded.append(name)
        return ssr.DATA[name]

    monkeypatch.setattr(ssr, "load", load)
    received = b""
    async with _client() as client:
        with anyio.fail_after(LIMIT):
            async with client.stream("GET", "/") as response:
                assert response.headers["content-type"].startswith("text/html")
                chunks = response.aiter_raw()
                while b"<header>" not in received:
                    received += await chunks.__anext__()
                # The browser already has <head> and the header while no data call has returned.
                assert b"<title>Your account</title>" in received and loaded == []
                for name in ssr.SECTIONS:
                    release[name].set()
                    while (
                        f'id="{name}"'.encode() not in received
                        or b"</ul>" not in received.rsplit(f'id="{name}"'.encode(), 1)[-1]
                    ):
                        received += await chunks.__anext__()
                    assert loaded[-1] == name
                received += b"".join([c async for c in chunks])
    outline = _Outline()
    outline.feed(received.decode())
    assert outline.sections == ssr.SECTIONS
    assert outline.items == sum(len(v) for v in ssr.DATA.values())
    assert b"</html>" in received


async def test_progress_steps_arrive_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = 4
    gates = [anyio.Event() for _ in range(steps)]
    finished: list[int] = []

    async def work_step(index: int) -> None:
        if index:
            await gates[index - 1].wait()
        finished.append(index)

    monkeypatch.setattr(ssr, "work_step", work_step)
    received = b""
    async with _client() as client:
        with anyio.fail_after(LIMIT):
            async with client.stream("GET", f"/progress?steps={steps}") as response:
                chunks = response.aiter_raw()
                for i in range(steps):
                    while received.count(b"class='step'") <= i:
                        received += await chunks.__anext__()
                    # Step i is on screen while step i+1 cannot have finished its work.
                    assert finished == list(range(i + 1))
                    gates[i].set()
                received += b"".join([c async for c in chunks])
    assert received.count(b"class='step'") == steps
    assert received.endswith(b"</html>")


async def test_whole_page_renders_without_gates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSR_DELAY_MS", "5")
    async with _client() as client:
        response = await client.get("/")
    outline = _Outline()
    outline.feed(response.text)
    assert response.status_code == 200
    assert outline.sections == ssr.SECTIONS
