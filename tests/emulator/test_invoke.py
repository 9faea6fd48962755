"""``lambda-asgi-stream invoke``, driven as a subprocess: a request built from the command line (METHOD
PATH, -H, -d, --integration), an event file, and the template it ships."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lambda_asgi_stream.events.build import build_event

from .harness import GUARD_S, ROOT

APP = "tests.emulator.apps:app"
TEMPLATE = ROOT / "lambda_asgi_stream" / "emulator" / "event-template.json"


def invoke(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDA_ASGI_STREAM_", "AWS_LAMBDA_"))}
    return subprocess.run(
        [sys.executable, "-m", "lambda_asgi_stream", "invoke", *args],
        cwd=ROOT,
        env={**env, "LAMBDA_ASGI_STREAM_PADDING": "none"},
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=GUARD_S,
    )


def result_of(out: str) -> dict[str, Any]:
    """The dict a buffered invoke prints (after whatever the app printed)."""
    start = 0 if out.startswith("{") else out.index("\n{") + 1
    result: dict[str, Any] = json.loads(out[start:])
    return result


def body_of(out: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(result_of(out)["body"])
    return body


def test_help_names_a_real_example_and_the_template() -> None:
    done = invoke("--help")
    assert done.returncode == 0
    assert "examples.hello.app:app" in done.stdout and "examples.hello:app" not in done.stdout
    assert (ROOT / "examples" / "hello" / "app.py").exists()
    assert str(TEMPLATE) in done.stdout.replace("\n  ", " ")
    assert TEMPLATE.exists()


def test_builds_the_event_from_method_path_headers() -> None:
    args = ("GET", "/hello?key=k&x=1", "-H", "x-test: yes", "-H", "Cookie: c=3")
    streamed = invoke(APP, *args)
    assert streamed.returncode == 0, streamed.stderr
    assert re.search(r"status 200$", streamed.stdout, re.MULTILINE)
    assert re.search(r"end: complete \(1 chunks, \d+ bytes\)$", streamed.stdout, re.MULTILINE)
    done = invoke(APP, *args, "--buffered")
    assert done.returncode == 0, done.stderr
    got = body_of(done.stdout)
    assert got["path"] == "/hello" and got["query"] == "key=k&x=1"
    assert got["header"] == "yes" and got["cookies"] == {"c": "3"}


@pytest.mark.parametrize("how", ["inline", "file", "stdin"])
def test_data_is_the_request_body(how: str, tmp_path: Path) -> None:
    data = "caf\u00e9 \u20ac"
    source = {"inline": data, "file": f"@{tmp_path / 'body.txt'}", "stdin": "@-"}[how]
    (tmp_path / "body.txt").write_text(data, encoding="utf-8")
    args = ("POST", "/echo?show=content-type", "-H", "content-type: text/plain", "-d", source, "--buffered")
    done = invoke(APP, *args, stdin=data.encode())
    assert done.returncode == 0, done.stderr
    got = body_of(done.stdout)
    assert got == {"method": "POST", "headers": {"content-type": "text/plain"}, "body": data}


def test_integration_alb_is_buffered_with_its_event_format() -> None:
    done = invoke(APP, "GET", "/hello?x=1&x=2", "-H", "x-test: alb", "--integration", "alb")
    assert done.returncode == 0, done.stderr
    result = result_of(done.stdout)  # ALB is buffered: invoke prints the dict the function returned
    assert result["statusCode"] == 200
    assert result["multiValueHeaders"]["x-multi"] == ["one", "two"]  # ALB's multi-value form
    got = body_of(done.stdout)
    assert got["header"] == "alb" and got["query"] == "x=1&x=2" and got["client"] == ["127.0.0.1", 0]


def test_event_file_and_the_template_work() -> None:
    done = invoke(APP, "--event", str(TEMPLATE))
    assert done.returncode == 0, done.stderr
    assert re.search(r"status 404$", done.stdout, re.MULTILINE)  # the template asks for /tokens
    event = build_event("function-url", method="GET", path="/tokens")
    template = json.loads(TEMPLATE.read_text())
    assert set(template) == set(event) | {"cookies", "queryStringParameters"}
    assert set(template["requestContext"]) == set(event["requestContext"])
    stdin = invoke(APP, "--event", "-", stdin=TEMPLATE.read_bytes())
    assert stdin.returncode == 0 and "status 404" in stdin.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((APP,), "either METHOD PATH"),
        ((APP, "GET"), "either METHOD PATH"),
        ((APP, "GET", "/x", "--event", "e.json"), "either METHOD PATH"),
        ((APP, "--event", "e.json", "-H", "a: b"), "do not go with --event"),
        ((APP, "GET", "x"), "must start with '/'"),
        ((APP, "GET", "/x", "-H", "no-colon"), "'Name: value'"),
        ((APP, "G T", "/x"), "not an HTTP method"),
    ],
)
def test_bad_requests_are_refused(args: tuple[str, ...], message: str) -> None:
    done = invoke(*args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
