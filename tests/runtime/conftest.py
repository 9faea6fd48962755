from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake_api import FakeRuntimeAPI


@pytest.fixture
def api() -> Iterator[FakeRuntimeAPI]:
    with FakeRuntimeAPI() as fake:
        yield fake
    assert fake.errors == [], "the fake Runtime API saw protocol errors"
