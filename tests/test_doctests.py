"""The examples in the package's docstrings run, as ``pytest --doctest-modules`` would run them."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import lambda_asgi_stream

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(lambda_asgi_stream.__path__, prefix="lambda_asgi_stream.")
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _run(name: str) -> doctest.TestResults:
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = _run(name)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see output)"


def test_the_examples_are_really_run() -> None:
    # A guard against a finder that finds nothing: these modules hold runnable examples (not all skipped).
    for name in ("lambda_asgi_stream.encoder", "lambda_asgi_stream.events.parse", "lambda_asgi_stream.sse"):
        assert name in MODULES
        assert _run(name).attempted > 0, name
