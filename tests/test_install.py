"""The first five minutes: what a user who installed only part of the package sees, and the wheel itself."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import lambda_asgi_stream

ROOT = Path(__file__).resolve().parents[1]
HINT = "pip install 'lambda-asgi-stream[local]'"

# Put on PYTHONPATH, this makes the modules named in BLOCK_MODULES unimportable, as if never installed.
SITECUSTOMIZE = """
import os, sys

class _NotInstalled:
    blocked = set(os.environ.get("BLOCK_MODULES", "").split(","))

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def _run_without(modules: str, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDA_ASGI_STREAM_", "AWS_LAMBDA_"))}
    env |= {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "BLOCK_MODULES": modules}
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


def test_the_blocker_really_hides_a_module(tmp_path: Path) -> None:
    result = _run_without("uvicorn", [sys.executable, "-c", "import uvicorn"], tmp_path)
    assert result.returncode != 0 and "No module named 'uvicorn'" in result.stderr


def test_serve_without_the_local_extra_says_what_to_install(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("lambda-asgi-stream")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "lambda_asgi_stream"]
    result = _run_without("uvicorn", [*command, "serve", "examples.hello.app:app", "--port", "0"], tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "uvicorn" in lines[0] and HINT in lines[0], result.stderr


def test_the_test_transport_without_httpx_says_what_to_install(tmp_path: Path) -> None:
    code = "import lambda_asgi_stream.testing"
    result = _run_without("httpx", [sys.executable, "-c", code], tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: lambda_asgi_stream.testing needs httpx"), result.stderr
    assert HINT in last


def test_the_runtime_loop_needs_no_extra(tmp_path: Path) -> None:
    code = "import lambda_asgi_stream, lambda_asgi_stream.runtime, lambda_asgi_stream.__main__"
    result = _run_without("httpx,uvicorn,starlette", [sys.executable, "-c", code], tmp_path)
    assert result.returncode == 0, result.stderr


def test_version_option() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lambda_asgi_stream", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"lambda-asgi-stream {lambda_asgi_stream.__version__}"


def test_the_wheel_ships_types_and_executable_scripts_but_no_tests(tmp_path: Path) -> None:
    pytest.importorskip(
        "hatchling", reason="the build backend comes with the test extra: pip install '.[test]'"
    )
    # No build isolation: hatchling is installed, so nothing is fetched from an index.
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("lambda_asgi_stream-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        infos = {info.filename: info for info in archive.infolist()}
    names = set(infos)
    assert "lambda_asgi_stream/py.typed" in names
    assert "lambda_asgi_stream/__init__.py" in names and "lambda_asgi_stream/events/parse.py" in names
    for script in ("bootstrap", "exec-wrapper"):
        info = infos[f"lambda_asgi_stream/deploy/{script}"]
        mode = info.external_attr >> 16
        assert mode & stat.S_IXUSR, f"{script} is not executable in the wheel ({oct(mode)})"
    assert not [n for n in names if n.startswith(("tests/", "examples/", "bench/")) or "/tests/" in n]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert entry_points
