"""Resolve ``MODULE:APP`` the way uvicorn does, with the current directory importable."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from ._errors import AppImportError


def import_app(target: str) -> Any:
    """Import ``package.module:attribute.path`` and return the attribute.

    >>> import_app("examples.hello:app")  # doctest: +SKIP
    """
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise AppImportError(f"app must be given as MODULE:APP (e.g. main:app), not {target!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppImportError(f"cannot import module {module_name!r}: {exc}") from exc
        raise AppImportError(f"importing {module_name!r} failed: {exc}") from exc
    except (Exception, SystemExit) as exc:  # sys.exit() at import is a failed init too, reported as one
        raise AppImportError(f"importing {module_name!r} raised {type(exc).__name__}: {exc}") from exc
    app: Any = module
    for name in attr_path.split("."):
        try:
            app = getattr(app, name)
        except AttributeError:
            raise AppImportError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(app):
        raise AppImportError(f"{target} is a {type(app).__name__}, not an ASGI app")
    return app
