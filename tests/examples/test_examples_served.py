"""Both examples served by the emulator exactly as the README shows, consumed by real clients: the
official ``openai`` package, ``curl -N`` and headless Chromium. The emulator models Lambda's hold-back of
small writes (``--buffering lambda``, the default) and the runtime pads as deployed (``idle``)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from examples.sse_llm.app import LocalModel, tokenize
from tests.emulator.harness import Emulator

from . import _chromium

PROMPT = [{"role": "user", "content": "What does streaming give me?"}]


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    # Fast but realistic pacing: the first token after 20 ms, then one every 10 ms; the flusher's latency
    # target scaled down with it (50 ms instead of 200), so the ~350 ms answer needs several pushes.
    env = {"LLM_FIRST_TOKEN_MS": "20", "LLM_TOKEN_MS": "10", "LAMBDA_ASGI_STREAM_PADDING_LATENCY_MS": "50"}
    emu = Emulator("examples.sse_llm.app:app", signals=tmp_path_factory.mktemp("llm"), env=env)
    yield emu
    assert emu.stop() == []


@pytest.fixture(scope="module")
def ssr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = Emulator(
        "examples.fastapi_ssr.app:app", signals=tmp_path_factory.mktemp("ssr"), env={"SSR_DELAY_MS": "20"}
    )
    yield emu
    assert emu.stop() == []


def _expected() -> list[str]:
    return tokenize(LocalModel(0, 0).answer(PROMPT))


def test_openai_client_streams_chat_completion_chunks(llm: Emulator) -> None:
    client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key="not-needed", max_retries=0, timeout=30)
    stream = client.chat.completions.create(model="local", messages=PROMPT, stream=True)  # type: ignore[arg-type]
    pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices]
    assert [p for p in pieces if p] == _expected()
    log = llm.log_line("POST /v1/chat/completions")
    assert " 200 " in log and "end=complete" in log


def test_openai_client_plain_completion(llm: Emulator) -> None:
    client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key="not-needed", max_retries=0, timeout=30)
    completion = client.chat.completions.create(model="local", messages=PROMPT)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "".join(_expected())
    assert completion.object == "chat.completion"


def test_models_list_for_sdk_discovery(llm: Emulator) -> None:
    response = httpx.get(f"{llm.url}/v1/models", timeout=30)
    assert response.json()["data"][0]["id"] == "local"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_n_gets_the_sse_stream(llm: Emulator) -> None:
    body = json.dumps({"model": "local", "stream": True, "messages": PROMPT})
    result = subprocess.run(
        [
            "curl",
            "-sSN",
            "-H",
            "content-type: application/json",
            "-d",
            body,
            f"{llm.url}/v1/chat/completions",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    # Padding arrives as SSE comment lines (":..."), which every SSE parser skips; so do we.
    blocks = result.stdout.decode().split("\n\n")
    data = [line[5:].strip() for b in blocks for line in b.split("\n") if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    pieces = [json.loads(d)["choices"][0]["delta"].get("content") for d in data[:-1]]
    assert [p for p in pieces if p] == _expected()


def test_page_in_headless_chromium_renders_tokens_as_they_arrive(llm: Emulator) -> None:
    binary = _chromium.find()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    browser = _chromium.Browser(binary, f"{llm.url}/#auto")
    try:
        browser.wait_for("document.body.dataset.done === '1'")
        answer = browser.evaluate("document.getElementById('answer').textContent")
        tokens = int(browser.evaluate("document.getElementById('answer').dataset.tokens"))
        reads = int(browser.evaluate("document.getElementById('answer').dataset.reads"))
    finally:
        browser.close()
    assert answer == "".join(_expected())
    assert tokens == len(_expected())
    # The page counts the network reads that brought tokens: one read would mean the answer arrived in
    # a single burst at the end, which is what Lambda's hold-back does without the padding flusher.
    assert reads > 1


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_page_shows_the_timeline_and_the_bytes_on_the_wire(
    llm: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Under the answer the page draws when each token was written and when it arrived, and prints the
    # bytes on the wire against the useful ones. Read the numbers back from the rendered page, check
    # them against the emulator's own count, and keep a screenshot.
    binary = _chromium.find()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    mark = llm.mark()
    browser = _chromium.Browser(binary, f"{llm.url}/#auto")
    try:
        browser.wait_for("document.body.dataset.done === '1'")
        shown = browser.evaluate(
            "Object.fromEntries(['wire-bytes', 'useful-bytes', 'padding-bytes', 'overhead', 'max-delay',"
            " 'median-delay', 'reads'].map((id) => [id, document.getElementById(id).textContent]))"
        )
        marks = browser.evaluate("document.querySelectorAll('#timeline circle.mark').length")
        tokens = int(browser.evaluate("document.getElementById('answer').dataset.tokens"))
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            browser.session,
            width=900,
            height=1000,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = browser.call("Page.captureScreenshot", browser.session, format="png")["data"]
    finally:
        browser.close()
    path = tmp_path_factory.mktemp("screenshot") / "sse_llm_page.png"
    path.write_bytes(base64.b64decode(shot))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    log = llm.log_line("POST /v1/chat/completions", start=mark)
    logged = dict(field.split("=", 1) for field in log.split() if "=" in field)
    wire, useful, padding = (_number(shown[k]) for k in ("wire-bytes", "useful-bytes", "padding-bytes"))
    assert wire == int(logged["bytes"])  # every byte the page counted is a byte the client was sent
    assert wire == useful + padding and padding >= int(logged["padding"]) > 0
    assert shown["overhead"] == f"{wire / useful:.1f}x"
    assert tokens == len(_expected()) and marks == 2 * tokens  # written and arrived, per token
    assert int(shown["max-delay"]) >= int(shown["median-delay"]) >= 0
    assert int(shown["reads"]) > 1


def test_ssr_page_and_progress_through_the_emulator(ssr: Emulator) -> None:
    with httpx.Client(base_url=ssr.url, timeout=30) as client:
        with client.stream("GET", "/") as response:
            chunks = response.iter_raw()
            first = next(chunks)
            rest = b"".join(chunks)
        page = first + rest
        # The shell (with <head>) is the first thing the client gets; sections follow.
        assert b"<title>Your account</title>" in first
        assert page.count(b"<section") == 3 and page.rstrip().endswith(b"</html>")
        progress = client.get("/progress", params={"steps": 3})
    assert progress.text.count("class='step'") == 3
    log = ssr.log_line("GET /")
    assert "end=complete" in log


def test_example_imports_from_repo_root() -> None:
    root = Path(__file__).resolve().parents[2]
    for module in ("examples.sse_llm.app", "examples.fastapi_ssr.app"):
        result = subprocess.run(
            [sys.executable, "-c", f"import {module} as m; print(type(m.app).__name__)"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.stdout.strip() == "FastAPI", result.stderr


def _stream_reads(emu: Emulator) -> tuple[int, str]:
    """(network reads that carried data, the answer) for one streamed completion."""
    body = {"model": "local", "stream": True, "messages": PROMPT}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{emu.url}/v1/chat/completions", json=body) as response,
    ):
        reads = [chunk for chunk in response.iter_raw() if chunk]
    text = b"".join(reads).decode()
    data = [line[5:].strip() for line in text.split("\n") if line.startswith("data:")]
    answer = "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in data[:-1])
    return len(reads), answer


def test_without_the_flusher_lambda_holds_the_answer_back(
    llm: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = {"LLM_FIRST_TOKEN_MS": "20", "LLM_TOKEN_MS": "10", "LAMBDA_ASGI_STREAM_PADDING": "none"}
    unpadded = Emulator("examples.sse_llm.app:app", signals=tmp_path_factory.mktemp("none"), env=env)
    try:
        held_reads, held_answer = _stream_reads(unpadded)
    finally:
        assert unpadded.stop() == []
    padded_reads, padded_answer = _stream_reads(llm)
    assert held_answer == padded_answer == "".join(_expected())
    # ~6 KB of events stay under the 100 KiB hold-back threshold: released in one piece at the end
    # (a second read only if the kernel splits that piece).
    assert held_reads <= 2
    # With the flusher, a push at least every 45 ms (90 % of the 50 ms target) over a stream of 330 ms or
    # more: about seven, each a read of its own.
    assert padded_reads >= 4
