"""The README's promises that code can check: its opening commands, the names it documents, and every
Python block, run as written."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import lambda_asgi_stream
import lambda_asgi_stream.config as config_module
from lambda_asgi_stream.events.build import build_event

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


# --- every Python block runs as written -------------------------------------------------------------------
#
# A block whose first line is ``# name.py`` is that file, and later blocks may import it (``from main
# import app``). A block that is only a fragment says so in an HTML comment right before it:
# ``<!-- fragment -->``; there are none today, and this test prefers it that way.
_PYTHON_BLOCK = re.compile(r"(<!-- fragment -->\n)?```python\n(.*?)```", flags=re.S)


def _python_blocks() -> list[tuple[str, str]]:
    """(file name, source) of each complete Python block, in order."""
    blocks = []
    for i, match in enumerate(_PYTHON_BLOCK.finditer(README)):
        if match.group(1):
            continue
        source = match.group(2)
        named = re.match(r"# (\w+\.py)\n", source)
        blocks.append((named.group(1) if named else f"readme_block_{i}.py", source))
    return blocks


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDA_ASGI_STREAM_", "AWS_LAMBDA_"))}
    return env | {"PYTHONPATH": str(tmp_path)}


@pytest.fixture
def readme_files(tmp_path: Path) -> Path:
    blocks = _python_blocks()
    assert {name for name, _ in blocks} >= {"main.py", "handler.py", "test_main.py"}
    for name, source in blocks:
        (tmp_path / name).write_text(source)
    return tmp_path


def test_every_python_block_is_complete() -> None:
    # No fragments, and each compiles; the tests below run them.
    blocks = _python_blocks()
    assert len(blocks) == len(re.findall(r"```python\n", README))  # no fragments
    for name, source in blocks:
        compile(source, name, "exec")


def test_the_app_and_the_adapter_blocks_run(readme_files: Path) -> None:
    # handler.py as written, then called the way Lambda's Python runtime calls it.
    event = build_event("function-url", method="GET", path="/tokens")
    check = (
        "import json, sys, runpy\n"
        "handler = runpy.run_path('handler.py')['handler']\n"
        "response = handler(json.loads(sys.argv[1]), None)\n"
        "print(json.dumps(response))\n"
    )
    result = _run_in(readme_files, "-c", check, json.dumps(event))
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout.strip().splitlines()[-1])
    assert response["statusCode"] == 200
    assert response["body"] == "data: streamed\n\ndata: from\n\ndata: lambda\n\n"


def test_the_test_block_passes_under_pytest(readme_files: Path) -> None:
    result = _run_in(readme_files, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_main.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_the_wheel_name_in_the_readme_is_this_version() -> None:
    names = set(re.findall(r"lambda_asgi_stream-([0-9][^-]*)-py3-none-any\.whl", README))
    assert names == {lambda_asgi_stream.__version__}


# --- links into docs/ resolve ----------------------------------------------------------------------------

DOCS = ROOT / "docs"


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def _links(path: Path) -> list[tuple[str, str]]:
    text = path.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.findall(r"\]\(((?!https?:|mailto:)[^)#\s]*)(?:#([^)\s]+))?\)", text)


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in DOCS.glob("*.md"))], ids=str
)
def test_relative_links_and_anchors_resolve(page: str) -> None:
    source = ROOT / page
    for target, anchor in _links(source):
        path = (source.parent / target).resolve() if target else source
        if target == "docs/migrating-from-mangum.md" or path.name == "migrating-from-mangum.md":
            continue  # written on another branch
        assert path.exists(), f"{page} links to {target}, which does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path.read_text()), f"{page} links to {target}#{anchor}: no such heading"


# --- the repository stands alone ------------------------------------------------------------------------

# Team notes that live outside the repository; code, docstrings and docs cite docs/ or public sources.
_OUTSIDE_NOTES = re.compile(r"(^|[^-/\w])(protocol|lessons|design)\.md|/work/shared", flags=re.M)
# Files that still cite them, owned by work in progress elsewhere: this list may only shrink.
NOT_YET_UPDATED: frozenset[str] = frozenset()  # every file now cites docs/ or a public source


def _repository_files() -> list[Path]:
    files = [ROOT / "README.md", *(ROOT / ".ci").glob("*")]
    for folder in ("lambda_asgi_stream", "tests", "examples", "bench", "docs"):
        files += [p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return files


def test_nothing_cites_notes_outside_the_repository() -> None:
    citing = set()
    for path in _repository_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if _OUTSIDE_NOTES.search(text):
            citing.add(path.relative_to(ROOT).as_posix())
    new = citing - NOT_YET_UPDATED - {"tests/test_readme.py"}
    assert new == set(), f"cite docs/*.md or a public AWS/ASGI/RFC source instead, in: {sorted(new)}"


@contextlib.contextmanager
def _hello_served(tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``serve examples.hello.app:app`` in a subprocess, for the blocks that call a real endpoint."""
    from tests.emulator.harness import Emulator

    signals = tmp_path / "signals"
    signals.mkdir()
    emulator = Emulator("examples.hello.app:app", "--buffering", "off", signals=signals, env=env)
    try:
        yield emulator.url
    finally:
        emulator.stop()


def _run_in(readme_files: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A Python in the folder of the README's files, with the package importable."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=readme_files,
        env=_env(readme_files),
    )


def test_the_invoke_client_block_runs_against_serve(readme_files: Path, tmp_path: Path) -> None:
    # call_function.py as written, with boto3 pointed at a real `serve` instead of the port it names.
    script = readme_files / "call_function.py"
    source = script.read_text()
    assert 'endpoint_url="http://127.0.0.1:9000"' in source
    with _hello_served(tmp_path) as url:
        script.write_text(source.replace("http://127.0.0.1:9000", url))
        result = _run_in(readme_files, str(script))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("200 ")
    assert 'data: {"n": 3}' in result.stdout and "data: liftoff" in result.stdout
    assert "failed:" not in result.stdout
    assert lines[-1] == "200"


def test_the_telemetry_block_registers_hooks_that_run(readme_files: Path) -> None:
    # telemetry.py as written (Sentry and OpenTelemetry, not configured: their flushes are no-ops), then an
    # invocation through the Adapter: both hooks run after it, and nothing fails.
    check = (
        "import logging, runpy\n"
        "logging.basicConfig(level='INFO')\n"
        "runpy.run_path('telemetry.py')\n"
        "from lambda_asgi_stream import Adapter, hooks\n"
        "from lambda_asgi_stream.events.build import build_event\n"
        "assert [h.__name__ for h in hooks._hooks] == ['flush_sentry', 'flush_traces']\n"
        "async def app(scope, receive, send):\n"
        "    await send({'type': 'http.response.start', 'status': 204, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b''})\n"
        "event = build_event('function-url', method='GET', path='/')\n"
        "print(Adapter(app, lifespan='off')(event)['statusCode'])\n"
    )
    result = _run_in(readme_files, "-c", check)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "204"
    assert "hook" not in result.stderr  # no hook failed


def test_the_end_record_block_runs_against_serve(readme_files: Path, tmp_path: Path) -> None:
    check = (
        "import sys\n"
        "from read_events import read_events\n"
        "sys.stdout.write(read_events(sys.argv[1]).decode())\n"
    )
    with _hello_served(tmp_path, {"LAMBDA_ASGI_STREAM_END_RECORD": "sse"}) as url:
        result = _run_in(readme_files, "-c", check, f"{url}/countdown?from=2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("event: done\ndata: liftoff\n\n")  # whole, and the record stripped
    assert "lambda-end" not in result.stdout
