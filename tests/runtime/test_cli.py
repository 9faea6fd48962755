"""The CLI in a subprocess: ``run`` against the fake Runtime API (SIGTERM, init errors) and ``invoke``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .apps import FAIL_STARTUP_ENV, MARKER_ENV
from .fake_api import TIMEOUT, FakeRuntimeAPI, decode_streamed
from .helpers import http_event

ROOT = Path(__file__).resolve().parents[2]


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDA_ASGI_STREAM_", "AWS_LAMBDA_"))}
    full.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "lambda_asgi_stream", *args],
        cwd=ROOT,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the process did not exit; stderr:\n{err}")
    return proc.returncode, out, err


def test_run_serves_then_shuts_down_on_sigterm(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    with FakeRuntimeAPI(when_empty="hold") as api:
        invocation = api.add(http_event("/hello"))
        proc = spawn(
            ["run", "tests.runtime.apps:app"],
            {"AWS_LAMBDA_RUNTIME_API": api.address, MARKER_ENV: str(marker)},
        )
        try:
            # served, and back in the long poll for the next invocation (or dead: then fail fast)
            api.wait_for(lambda: len(api.nexts()) >= 2 or proc.poll() is not None)
            assert proc.poll() is None, proc.communicate()[1]
            proc.send_signal(signal.SIGTERM)
            code, _, err = finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0, err
    assert marker.read_text().splitlines() == ["startup", "request /hello", "shutdown"]
    out = decode_streamed(api.response(invocation))
    assert out.prelude is not None and out.prelude["statusCode"] == 200
    assert json.loads(out.payload) == {"greeting": "hello from lifespan"}
    assert api.errors == []


def test_run_reports_a_failed_startup_as_init_error(tmp_path: Path) -> None:
    with FakeRuntimeAPI() as api:
        api.add(http_event("/hello"))
        proc = spawn(
            ["run", "tests.runtime.apps:app"],
            {"AWS_LAMBDA_RUNTIME_API": api.address, FAIL_STARTUP_ENV: "1"},
        )
        code, _, err = finish(proc)
    assert code == 1, err
    assert api.nexts() == []
    (init,) = api.init_errors
    assert init.header("Lambda-Runtime-Function-Error-Type") == "Function.StartupError"
    assert "startup refused by the test" in json.loads(init.body)["errorMessage"]
    assert api.errors == []


def test_run_reports_an_import_failure_as_init_error() -> None:
    with FakeRuntimeAPI() as api:
        proc = spawn(["run", "tests.runtime.no_such_module:app"], {"AWS_LAMBDA_RUNTIME_API": api.address})
        code, _, err = finish(proc)
    assert code == 1, err
    assert api.nexts() == []
    (init,) = api.init_errors
    assert init.header("Lambda-Runtime-Function-Error-Type") == "Runtime.ImportModuleError"
    assert "no_such_module" in json.loads(init.body)["errorMessage"]
    assert api.errors == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("LAMBDA_ASGI_STREAM_INVOKE_MODE", "sideways"), ("LAMBDA_ASGI_STREAM_LOG_LEVEL", "verbose")],
)
def test_run_reports_a_bad_setting_as_init_error(name: str, value: str) -> None:
    with FakeRuntimeAPI() as api:
        proc = spawn(["run", "tests.runtime.apps:app"], {"AWS_LAMBDA_RUNTIME_API": api.address, name: value})
        code, _, err = finish(proc)
    assert code == 1, err
    assert "Traceback" not in err
    (init,) = api.init_errors
    assert init.header("Lambda-Runtime-Function-Error-Type") == "Runtime.ConfigError"
    assert value in json.loads(init.body)["errorMessage"]
    assert api.nexts() == [] and api.errors == []


def test_invoke_prints_chunks_as_they_arrive() -> None:
    proc = spawn(["invoke", "examples.hello.app:app", "--event", "examples/hello/event.json"], {})
    code, out, err = finish(proc)
    assert code == 0, err
    assert re.search(r"status 200", out) and "header content-type: text/event-stream" in out
    chunks = re.findall(r"^\+\s*([\d.]+) ms  chunk \d+ \(\d+ bytes\): (.*)$", out, re.MULTILINE)
    events = [(float(t), text) for t, text in chunks if "data:" in text]
    data = [re.search(r"data: (.*?)\\n", text).group(1) for _, text in events]  # type: ignore[union-attr]
    assert data == ['{"n": 5}', '{"n": 4}', '{"n": 3}', '{"n": 2}', '{"n": 1}', "liftoff"]
    offsets = [t for t, _ in events]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)  # each at its own later time
    assert re.search(r"end: complete \(\d+ chunks, \d+ bytes\)", out)


def test_run_logs_one_line_per_invocation_that_a_request_cannot_forge() -> None:
    # A newline in the path would start a line of its own in CloudWatch (each line is one log event).
    with FakeRuntimeAPI() as api:
        api.add(http_event("/y\nERROR forged line 2", query_string="a=\x1b[31mred"))
        proc = spawn(["run", "tests.runtime.apps:app"], {"AWS_LAMBDA_RUNTIME_API": api.address})
        code, _, err = finish(proc)
    lines = err.splitlines()
    served = [line for line in lines if line.startswith("INFO lambda_asgi_stream: GET ")]
    assert len(served) == 1, err
    assert "/y%0AERROR%20forged%20line%202?a=%1B[31mred 404 " in served[0]
    assert not any(line.startswith("ERROR forged") for line in lines)
    assert "\x1b" not in err


def test_an_unusable_event_cannot_forge_a_log_line() -> None:
    # The ERROR line of an unusable event names its top-level keys, which whoever invoked chose.
    with FakeRuntimeAPI() as api:
        bad = api.add({"Records": [], "x\nERROR forged line\x1b[31m": 1})
        proc = spawn(["run", "tests.runtime.apps:app"], {"AWS_LAMBDA_RUNTIME_API": api.address})
        code, _, err = finish(proc)
        answer = api.error(bad)
    assert answer.header("Lambda-Runtime-Function-Error-Type") == "Function.UnsupportedEvent"
    lines = err.splitlines()
    unusable = [line for line in lines if f"invocation {bad.request_id}: unusable event" in line]
    assert len(unusable) == 1 and "x\\x0aERROR forged line\\x1b[31m" in unusable[0], err
    assert not any(line.startswith("ERROR forged") for line in lines)
    assert "\x1b" not in err


def test_run_sends_its_line_through_logging_configured_by_the_app(tmp_path: Path) -> None:
    # An app that configures logging itself (JSON logs, say) gets our line through its handlers.
    (tmp_path / "logging_app.py").write_text(
        "import logging, sys\n"
        "handler = logging.StreamHandler(sys.stderr)\n"
        "handler.setFormatter(logging.Formatter('APP-FORMAT %(name)s | %(message)s'))\n"
        "logging.getLogger().addHandler(handler)\n"
        "from tests.runtime.apps import app\n"
    )
    with FakeRuntimeAPI() as api:
        api.add(http_event("/hello"))
        env = {"AWS_LAMBDA_RUNTIME_API": api.address, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
        code, _, err = finish(spawn(["run", "logging_app:app"], env))
    assert "APP-FORMAT lambda_asgi_stream | GET /hello 200 " in err, err


@pytest.mark.parametrize("handler", ["--help", "-x", "--", "tests.runtime.exits_at_import:app"])
def test_a_handler_that_looks_like_an_option_or_exits_is_an_init_error(handler: str) -> None:
    # As Lambda starts us: the deploy scripts pass the handler after `--`, and it is always a value.
    with FakeRuntimeAPI() as api:
        api.add(http_event("/hello"))
        env = {"AWS_LAMBDA_RUNTIME_API": api.address, "_HANDLER": handler}
        code, out, err = finish(spawn(["run", "--", handler], env))
        init_errors = [r for r in api.requests if r.target.endswith("/runtime/init/error")]
    assert code == 1, err
    assert "usage:" not in out + err
    assert len(init_errors) == 1, err
    assert api.nexts() == []


@pytest.mark.parametrize("script", ["bootstrap", "exec-wrapper"])
def test_deploy_scripts_pass_the_handler_as_a_value(script: str) -> None:
    text = (ROOT / "lambda_asgi_stream" / "deploy" / script).read_text()
    assert 'run -- "${_HANDLER:-}"' in text
