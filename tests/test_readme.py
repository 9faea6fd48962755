"""The README's promises that code can check: its two opening commands, and the names it documents."""

from __future__ import annotations

import re
from pathlib import Path

import lambda_asgi_stream.config as config_module

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _code_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.S)


def test_the_test_command_is_what_ci_runs() -> None:
    test_command = _code_blocks()[2].strip()
    assert test_command.endswith(".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test_command


def test_the_main_job_serves_the_example_with_the_extra_it_installs() -> None:
    main_job, curl = (block.strip() for block in _code_blocks()[:2])
    assert main_job.startswith("python3 -m venv .venv && .venv/bin/pip install -q -e '.[examples]'")
    assert main_job.endswith("lambda-asgi-stream serve examples.sse_llm.app:app")
    assert curl.startswith("curl -sN localhost:9000/v1/chat/completions")
    from examples.sse_llm.app import app

    assert "/v1/chat/completions" in {getattr(route, "path", None) for route in app.routes}


def test_every_documented_variable_exists_and_every_variable_is_documented() -> None:
    documented = set(re.findall(r"`(LAMBDA_ASGI_STREAM_[A-Z_]+)`", README))
    defined = {v for k, v in vars(config_module).items() if k.startswith("ENV_")}
    bootstrap = (ROOT / "lambda_asgi_stream" / "deploy" / "bootstrap").read_text()
    defined |= set(re.findall(r"LAMBDA_ASGI_STREAM_[A-Z_]+", bootstrap))  # the shell script reads its own
    assert documented - defined == set(), "README names variables the code does not read"
    assert defined - documented == set(), "variables the code reads but the README does not document"
