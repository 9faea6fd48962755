"""The layering of docs/architecture.md, pinned: which module may import which, and what each loads.

leaves -> core (no I/O, no async stack) -> glue (runs the app) -> shells (one real boundary each) -> face.
Imports point down only, shells never import each other, and the runtime loop (the Lambda cold path)
loads neither anyio nor h11 nor anything local-only.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lambda_asgi_stream

PACKAGE = Path(lambda_asgi_stream.__file__).parent

LEAVES = {"_types", "_errors", "_http", "_version", "_importer"}
CORE = {
    "events",
    "encoder",
    "padding",
    "sse",
    "buffering",
    "runtime_api",
    "config",
    "http1",
    "eventstream",
    "client",
    "probe_protocol",
    "end_record",
}
GLUE = {"cycle", "lifespan", "hooks", "probe_endpoint"}
SHELLS = {"runtime", "emulator", "local_api", "testing", "adapter", "probe"}
FACE = {"__init__", "__main__"}
RANK = {**dict.fromkeys(LEAVES, 0), **dict.fromkeys(CORE, 1), **dict.fromkeys(GLUE, 2)}
RANK.update({**dict.fromkeys(SHELLS, 3), **dict.fromkeys(FACE, 4)})
# The emulator's own modules are one shell, whatever their files.
SAME_SHELL = {"local_api": "emulator"}

ASYNC_STACK = {"asyncio", "anyio", "sniffio", "trio", "h11"}
LOCAL_ONLY = {"httpx", "uvicorn", "starlette", "fastapi"}


def _unit(path: Path) -> str:
    """The layer unit a file belongs to: a top-level module, or a subpackage as a whole."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _package_imports(path: Path) -> set[str]:
    """The units of our package that ``path`` imports, anywhere in the file (lazy imports included)."""
    unit_parts = path.relative_to(PACKAGE).parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = (
                list(unit_parts[: len(unit_parts) - (node.level - 1)]) if node.level > 1 else list(unit_parts)
            )
            target = [*base, *(node.module or "").split(".")] if node.module else base
            names = [target[0]] if target and target[0] else [alias.name for alias in node.names]
            found.update(name for name in names if name in RANK)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lambda_asgi_stream."):
            found.add((node.module or "").split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("lambda_asgi_stream."))
    return found


def _files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_layer() -> None:
    units = {_unit(p) for p in _files()}
    assert units - set(RANK) == set(), "add the new module to a layer here and in docs/architecture.md"


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    unit = _unit(path)
    for target in _package_imports(path) - {unit}:
        if SAME_SHELL.get(target, target) == SAME_SHELL.get(unit, unit):
            continue
        if unit in FACE:
            continue  # the face may import anything (shells lazily, checked below)
        assert RANK[target] < RANK[unit] or (RANK[target] == RANK[unit] and RANK[unit] in (0, 1)), (
            f"{unit} (layer {RANK[unit]}) imports {target} (layer {RANK[target]})"
        )


def _loaded(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in json.loads(out.stdout)}


CORE_MODULES = sorted(f"lambda_asgi_stream.{unit}" for unit in (LEAVES | CORE) if unit not in {"_importer"})


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_modules_load_no_async_stack(module: str) -> None:
    assert _loaded(f"import {module}") & (ASYNC_STACK | LOCAL_ONLY) == set()


def test_importing_the_package_loads_no_async_stack() -> None:
    assert _loaded("import lambda_asgi_stream") & (ASYNC_STACK | LOCAL_ONLY) == set()


def test_the_cold_path_loads_asyncio_only() -> None:
    # What `lambda-asgi-stream run` imports before the app: the loop, on plain asyncio.
    loaded = _loaded("import lambda_asgi_stream.__main__, lambda_asgi_stream.runtime")
    assert "asyncio" in loaded
    assert loaded & (ASYNC_STACK - {"asyncio"} | LOCAL_ONLY) == set()


# What `run` never needs before the app's first request, each about a millisecond or more to import (or, for
# a dataclass, to build each class with exec): imported where it is needed, off the cold path.
COLD_PATH_EXCLUDED = {"argparse", "pathlib", "hashlib", "urllib", "dataclasses"}


def test_the_cold_path_leaves_out_what_run_does_not_need() -> None:
    loaded = _loaded("import lambda_asgi_stream.__main__, lambda_asgi_stream.runtime")
    assert loaded & COLD_PATH_EXCLUDED == set()


def _top_level_imports(path: Path) -> set[str]:
    """The top-level packages ``path`` imports at module level (not inside a function or TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_cold_path_modules_import_the_excluded_ones_only_where_needed() -> None:
    # Every module `run` loads keeps these out of its module-level imports.
    code = (
        "import json, sys\nimport lambda_asgi_stream.__main__, lambda_asgi_stream.runtime\n"
        "ours = [m.__file__ for name, m in sys.modules.items() if name.startswith('lambda_asgi_stream')]\n"
        "print(json.dumps(ours))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    files = [Path(name) for name in json.loads(out.stdout)]
    assert len(files) > 10
    for path in files:
        assert _top_level_imports(path) & COLD_PATH_EXCLUDED == set(), path.name


def test_the_adapter_is_still_there_lazily() -> None:
    from lambda_asgi_stream import Adapter
    from lambda_asgi_stream.adapter import Adapter as Direct

    assert Adapter is Direct
    with pytest.raises(AttributeError):
        lambda_asgi_stream.NoSuchThing  # noqa: B018
