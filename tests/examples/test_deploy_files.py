"""The deployment files of both examples are valid, and the shipped wrapper scripts really start our loop.

The scripts are run as Lambda runs them (``bootstrap`` with ``_HANDLER``; the exec wrapper with the managed
runtime's arguments) against our Runtime API server on 127.0.0.1, and serve one streamed invocation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

import lambda_asgi_stream
from lambda_asgi_stream.encoder import PreludeDecoder
from lambda_asgi_stream.events.build import build_event
from lambda_asgi_stream.local_api import LocalRuntimeAPI, StreamData, StreamEnd

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = Path(lambda_asgi_stream.__file__).parent / "deploy"
EXAMPLES = ["sse_llm", "fastapi_ssr"]


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation short forms (!Sub, !GetAtt, ...) as plain values."""


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node, deep=True)


_Loader.add_multi_constructor("!", _short_form)


@pytest.mark.parametrize("example", EXAMPLES)
def test_sam_template_passes_cfn_lint(example: str) -> None:
    template = ROOT / "examples" / example / "template.yaml"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(template)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("example", EXAMPLES)
def test_sam_template_streams_through_a_function_url_with_our_wrapper(example: str) -> None:
    doc = yaml.load((ROOT / "examples" / example / "template.yaml").read_text(), Loader=_Loader)
    functions = [r for r in doc["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    assert len(functions) == 1
    props = functions[0]["Properties"]
    assert props["FunctionUrlConfig"]["InvokeMode"] == "RESPONSE_STREAM"
    env = props["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/var/task/lambda_asgi_stream/deploy/exec-wrapper"
    assert env["LAMBDA_ASGI_STREAM_INVOKE_MODE"] == "RESPONSE_STREAM"


def _serverless(example: str) -> tuple[dict[str, Any], str]:
    text = (ROOT / "examples" / example / "serverless.yml").read_text()
    return yaml.load(text, Loader=_Loader), text


@pytest.mark.parametrize("example", EXAMPLES)
def test_serverless_file_streams_every_http_event(example: str) -> None:
    # Serverless Framework v4.25.0+: `response: transferMode: STREAM` on the http event, proxy
    # integrations only, never with `async` (the framework is not installable here: structure only).
    doc, _ = _serverless(example)
    assert doc["frameworkVersion"] == ">=4.25.0"
    assert doc["provider"]["environment"]["AWS_LAMBDA_EXEC_WRAPPER"].endswith("deploy/exec-wrapper")
    assert doc["provider"]["environment"]["LAMBDA_ASGI_STREAM_INVOKE_MODE"] == "RESPONSE_STREAM"
    events = [e["http"] for f in doc["functions"].values() for e in f["events"]]
    assert {e["path"] for e in events} == {"/", "/{proxy+}"}
    for event in events:
        assert event["response"] == {"transferMode": "STREAM"}
        assert event.get("integration", "lambda-proxy") in ("lambda-proxy", "aws_proxy")
        assert "async" not in event
    assert "resources" not in doc  # the CloudFormation override is only a commented fallback


@pytest.mark.parametrize("example", EXAMPLES)
def test_serverless_fallback_for_older_versions_overrides_both_methods(example: str) -> None:
    _, text = _serverless(example)
    lines = text.splitlines()
    start = lines.index("# resources:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    fallback = yaml.load("\n".join(block), Loader=_Loader)
    methods = fallback["resources"]["extensions"]
    assert set(methods) == {"ApiGatewayMethodAny", "ApiGatewayMethodProxyVarAny"}
    for method in methods.values():
        integration = method["Properties"]["Integration"]
        assert integration["ResponseTransferMode"] == "STREAM"
        assert (
            "/2021-11-15/functions/${AppLambdaFunction.Arn}/response-streaming-invocations"
            in (integration["Uri"])
        )


@pytest.mark.parametrize("example", EXAMPLES)
def test_dockerfile_runs_the_streaming_loop(example: str) -> None:
    text = (ROOT / "examples" / example / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python3", "-m", "lambda_asgi_stream", "run"]' in text
    assert (ROOT / "examples" / example / "requirements.txt").read_text().count("lambda-asgi-stream") == 1


def test_scripts_are_shipped_executable() -> None:
    for name in ("bootstrap", "exec-wrapper"):
        assert os.access(DEPLOY / name, os.X_OK), name


async def _serve_one(command: list[str], env: dict[str, str]) -> tuple[int, list[bytes], str]:
    api = LocalRuntimeAPI()
    event = build_event("function-url", method="GET", path="/countdown", query_string="from=2")
    async with anyio.create_task_group() as group:
        address = await group.start(api.serve, "127.0.0.1", 0)
        process = await anyio.open_process(
            command, env=env | {"AWS_LAMBDA_RUNTIME_API": address}, stdout=subprocess.DEVNULL
        )
        try:
            decoder = PreludeDecoder()
            chunks: list[bytes] = []
            end: StreamEnd | None = None
            with anyio.fail_after(30):
                async for item in api.invoke(json.dumps(event).encode()):
                    if isinstance(item, StreamData):
                        if body := decoder.feed(item.data):
                            chunks.append(body)
                    else:
                        assert isinstance(item, StreamEnd), item
                        end = item
            assert end is not None and end.error is None
            assert decoder.prelude is not None
            return decoder.prelude.status, chunks, dict(decoder.prelude.headers)["content-type"]
        finally:
            process.terminate()
            with anyio.fail_after(10):
                await process.wait()
            group.cancel_scope.cancel()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDA_ASGI_STREAM_", "AWS_LAMBDA_"))}
    # What Lambda sets for the function (runtimes-custom, "Requirements").
    return env | {
        "LAMBDA_TASK_ROOT": str(ROOT),
        "_HANDLER": "examples.hello.app:app",
        "LAMBDA_ASGI_STREAM_PADDING": "none",
    }


@pytest.mark.anyio
@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
async def test_exec_wrapper_replaces_the_managed_runtime_loop() -> None:
    # The managed runtime execs: $AWS_LAMBDA_EXEC_WRAPPER <python> /var/runtime/bootstrap.py
    command = [str(DEPLOY / "exec-wrapper"), sys.executable, "/var/runtime/bootstrap.py"]
    status, chunks, content_type = await _serve_one(command, _env())
    assert status == 200
    assert content_type.startswith("text/event-stream")
    assert chunks[-1].startswith(b"event: done")


@pytest.mark.anyio
@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
async def test_bootstrap_runs_the_handler_as_a_custom_runtime() -> None:
    command = [str(DEPLOY / "bootstrap")]
    status, chunks, _ = await _serve_one(command, _env() | {"LAMBDA_ASGI_STREAM_PYTHON": sys.executable})
    assert status == 200
    assert len(chunks) >= 2
