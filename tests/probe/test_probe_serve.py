"""``lambda-asgi-stream probe`` against ``serve --buffer-threshold N``: it reports N within 10 %.

The emulator runs as a subprocess with the probe token set, the probe CLI as another; the probe's pauses
are short here (0.15 s, 0.4 s) so that each test takes a couple of seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulator.conftest import Factory, _factory
from tests.emulator.harness import GUARD_S, ROOT

TOKEN = "probe-test-token-0123456789"
APP = "examples.hello.app:app"
FAST = ["--pause", "0.15", "--time-pause", "0.4"]


@pytest.fixture(scope="module")
def start_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Factory]:
    yield from _factory(tmp_path_factory.mktemp("probe"))


def run_probe(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LAMBDA_ASGI_STREAM_PROBE_TOKEN"}
    if token is not None:
        env["LAMBDA_ASGI_STREAM_PROBE_TOKEN"] = token
    command = [sys.executable, "-m", "lambda_asgi_stream", "probe", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=GUARD_S * 2)


@pytest.mark.parametrize("threshold", [16 * 1024, 32 * 1024, 100 * 1024])
def test_probe_reports_the_emulators_threshold(start_emulator: Factory, threshold: int) -> None:
    emu = start_emulator(
        APP, "--buffer-threshold", str(threshold), env={"LAMBDA_ASGI_STREAM_PROBE_TOKEN": TOKEN}
    )
    done = run_probe(f"{emu.url}/anything?x=1", "--json", *FAST)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert abs(result["threshold_bytes"] - threshold) <= threshold * 0.10
    assert result["threshold_bytes"] >= threshold > result["held_bytes"]  # bracketed, safe side
    assert result["hold_back"] is True and result["time_release_s"] is None
    assert result["settings"] == {"LAMBDA_ASGI_STREAM_PADDING_THRESHOLD": str(result["threshold_bytes"])}
    # The setting is taken as printed: the runtime's own configuration reads it back.
    from lambda_asgi_stream.config import Config

    config = Config.from_env({"AWS_LAMBDA_RUNTIME_API": "x:1", **result["settings"]})
    assert config.padding.threshold == result["threshold_bytes"]


def test_probe_summary_prints_the_setting(start_emulator: Factory) -> None:
    emu = start_emulator(APP, "--buffer-threshold", "20000", env={"LAMBDA_ASGI_STREAM_PROBE_TOKEN": TOKEN})
    done = run_probe(emu.url, *FAST)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("LAMBDA_ASGI_STREAM_PADDING_THRESHOLD="))
    assert 20000 <= int(line.split("=", 1)[1]) <= 22000
    assert "time-based release: none" in done.stdout


def test_no_hold_back_means_no_padding(start_emulator: Factory) -> None:
    emu = start_emulator(APP, "--buffering", "off", env={"LAMBDA_ASGI_STREAM_PROBE_TOKEN": TOKEN})
    done = run_probe(emu.url, "--json", *FAST)
    result = json.loads(done.stdout)
    assert result["hold_back"] is False and result["settings"] == {"LAMBDA_ASGI_STREAM_PADDING": "none"}
    assert result["requests"] == 1


def test_without_the_token_a_probe_request_is_the_apps(start_emulator: Factory) -> None:
    # The function has no token: the probe header is just a header, and the app answers.
    emu = start_emulator(APP)
    done = run_probe(emu.url, "--json", *FAST)
    assert done.returncode == 1
    assert "reached the app" in done.stderr and "LAMBDA_ASGI_STREAM_PROBE_TOKEN" in done.stderr


def test_a_wrong_token_reaches_the_app_and_a_good_one_with_a_bad_plan_is_refused(
    start_emulator: Factory,
) -> None:
    emu = start_emulator(APP, env={"LAMBDA_ASGI_STREAM_PROBE_TOKEN": TOKEN})
    done = run_probe(emu.url, "--json", *FAST, token="not-the-token")
    assert done.returncode == 1 and "reached the app" in done.stderr
    too_much = {"x-lambda-asgi-stream-probe": TOKEN, "x-lambda-asgi-stream-probe-plan": "2000000:0"}
    request = urllib.request.Request(emu.url + "/", headers=too_much)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=GUARD_S)
    assert caught.value.code == 400
    assert b"at most 1048576 bytes" in caught.value.read()
    stranger = urllib.request.Request(emu.url + "/", headers={"x-lambda-asgi-stream-probe-plan": "1000:0"})
    with urllib.request.urlopen(stranger, timeout=GUARD_S) as response:
        assert json.loads(response.read())["hello"] == "world"  # the app's answer, not a probe's


def test_probe_needs_a_token(tmp_path: Path) -> None:
    done = run_probe("http://127.0.0.1:9/", token=None)
    assert done.returncode == 1 and "no probe token" in done.stderr
