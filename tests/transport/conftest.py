from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")

BASE_URL = "https://lambda"
#: Every test stops by itself: generous next to the milliseconds each one takes.
LIMIT = 10.0


async def in_thread(fn: Callable[[], T], limit: float = LIMIT) -> T:
    """Run a sync test body in a worker thread, failing (not hanging) if it blocks past ``limit``."""
    with anyio.fail_after(limit):
        return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)
