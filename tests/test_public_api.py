"""Pin the public surface (httpx's test_exported_members habit) and the cold path's imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lambda_asgi_stream

PUBLIC = {
    "Adapter",
    "AppImportError",
    "ASGIProtocolError",
    "Config",
    "ConfigError",
    "DeadlineExceeded",
    "EventError",
    "LambdaAsgiStreamError",
    "LambdaContext",
    "MalformedEventError",
    "PreludeTooLargeError",
    "Request",
    "ResponseError",
    "ResponseTooLargeError",
    "RuntimeAPIError",
    "RuntimeAPIStatusError",
    "StartupError",
    "StreamTruncatedError",
    "UnsupportedEventError",
    "__version__",
    "after_invocation",
    "flush",
    "parse_event",
    "remove_after_invocation",
    "InvocationError",
    "IncompleteStreamError",
    "EventStreamFormatError",
}


def test_all_is_pinned() -> None:
    assert set(lambda_asgi_stream.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(lambda_asgi_stream, name) is not None


def test_every_error_is_in_one_tree() -> None:
    errors = [getattr(lambda_asgi_stream, n) for n in PUBLIC if n.endswith(("Error", "Exceeded"))]
    for error in errors:
        assert issubclass(error, lambda_asgi_stream.LambdaAsgiStreamError), error


# Modules that must never load on the Lambda cold path (docs/architecture.md, "Layers").
FORBIDDEN = (
    "httpx",
    "uvicorn",
    "starlette",
    "fastapi",
    "lambda_asgi_stream.local_api",
    "lambda_asgi_stream.emulator",
    "lambda_asgi_stream.testing",
)


@pytest.mark.parametrize(
    "module",
    [
        "lambda_asgi_stream",
        "lambda_asgi_stream.runtime",
        "lambda_asgi_stream.cycle",
        "lambda_asgi_stream.encoder",
        "lambda_asgi_stream.events",
        "lambda_asgi_stream.runtime_api",
        "lambda_asgi_stream.lifespan",
        "lambda_asgi_stream.__main__",
    ],
)
def test_cold_path_imports_stay_small(module: str) -> None:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []


CORE = (
    "encoder.py",
    "padding.py",
    "runtime_api.py",
    "_http.py",
    "_types.py",
    "_errors.py",
    "_version.py",
    "events",
)
ASYNC_OR_IO = {"anyio", "h11", "asyncio", "trio", "socket", "sniffio"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_sans_io_core_imports_nothing_async() -> None:
    # The core (docs/architecture.md, "Layers") turns values into values; only the glue and the shells
    # may do I/O, and the core's relative imports stay inside the core.
    package = Path(lambda_asgi_stream.__file__).parent
    files = [package / name for name in CORE if name.endswith(".py")]
    files += list((package / "events").glob("*.py"))
    assert len(files) > 6
    allowed = {name.removesuffix(".py") for name in CORE} | {p.stem for p in files} | {""}
    for path in files:
        for name in _imports(path):
            assert name.split(".")[0] not in ASYNC_OR_IO, f"{path.name} imports {name}"
            if name.startswith("."):
                assert name.lstrip(".").split(".")[0] in allowed, f"{path.name} imports {name}"
