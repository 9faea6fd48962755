from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import Emulator

APP = "tests.emulator.apps:app"
Factory = Callable[..., Emulator]


def _factory(tmp: Path) -> Iterator[Factory]:
    started: list[Emulator] = []

    def start(app: str, *args: str, env: dict[str, str] | None = None) -> Emulator:
        signals = tmp / f"signals-{uuid.uuid4().hex[:8]}"
        signals.mkdir()
        emu = Emulator(app, *args, signals=signals, env=env)
        started.append(emu)
        return emu

    try:
        yield start
    finally:
        left = {emu.url: emu.stop() for emu in started}
    # Stopping the emulator (SIGTERM) stops its sandboxes: no runtime process outlives it.
    assert not any(left.values()), left


@pytest.fixture(scope="module")
def start_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Factory]:
    """Start ``serve`` subprocesses for a test module; all are stopped at its end."""
    yield from _factory(tmp_path_factory.mktemp("emu"))


@pytest.fixture(scope="module")
def emu_off(start_emulator: Factory) -> Emulator:
    """``--buffering off``, no padding: every write reaches the client as it is made."""
    return start_emulator(APP, "--buffering", "off", env={"LAMBDA_ASGI_STREAM_PADDING": "none"})
