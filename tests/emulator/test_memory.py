"""A 50 MiB download streams through both processes with flat memory (no whole-body buffering)."""

from __future__ import annotations

import httpx

from .conftest import APP, Factory
from .harness import GUARD_S, vm_hwm_kib

SIZE = 50 * 1024 * 1024
BLOCK = bytes(range(256)) * 256  # what the app repeats (apps.download)


def _download(url: str, size: int) -> int:
    got = 0
    with httpx.Client(timeout=GUARD_S) as client, client.stream("GET", f"{url}/download?size={size}") as r:
        assert r.status_code == 200
        for data in r.iter_raw(256 * 1024):
            offset = got % len(BLOCK)
            assert data[:16] == (BLOCK * 2)[offset : offset + 16]  # in order, nothing lost or repeated
            got += len(data)
    return got


def test_50_mib_download_with_flat_memory(start_emulator: Factory) -> None:
    emu = start_emulator(APP, "--buffering", "lambda", env={"LAMBDA_ASGI_STREAM_PADDING": "none"})
    assert _download(emu.url, 4 * 1024 * 1024) == 4 * 1024 * 1024  # warm up both processes
    (child,) = emu.child_pids()
    before = {"emulator": vm_hwm_kib(emu.process.pid), "sandbox": vm_hwm_kib(child)}
    mark = emu.mark()
    assert _download(emu.url, SIZE) == SIZE
    after = {"emulator": vm_hwm_kib(emu.process.pid), "sandbox": vm_hwm_kib(child)}
    growth_mib = {name: (after[name] - before[name]) / 1024 for name in before}
    assert all(growth < 25 for growth in growth_mib.values()), growth_mib
    line = emu.log_line(f"GET /download?size={SIZE}", start=mark)
    assert f"bytes={SIZE} " in line and "end=complete" in line
    assert emu.child_pids() == [child]  # the same sandbox served it
