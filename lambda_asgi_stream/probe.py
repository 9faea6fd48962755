"""``lambda-asgi-stream probe URL``: measure Lambda's hold-back against a deployed Function URL (or serve).

The client side of :mod:`probe_protocol`, on the standard library alone (``http.client``), so it runs
wherever the package is installed. Each probe request is one connection: the plan goes in a header, and
the arrival of the first body bytes and of the body's end are timed with ``time.monotonic()``.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
from collections.abc import Callable

from ._errors import ProbeError
from .probe_protocol import (
    PLAN_HEADER,
    PROBE_HEADER,
    ProbeResult,
    Step,
    ThresholdSearch,
    format_plan,
    response_headers,
)

_READ = 256 * 1024


def probe(
    url: str,
    token: str,
    *,
    search: ThresholdSearch | None = None,
    timeout: float = 30.0,
    progress: Callable[[str], None] | None = None,
) -> ProbeResult:
    """Run the whole search against ``url``; raise :class:`ProbeError` when no probe is answered."""
    if not token:
        raise ProbeError("no probe token: pass --token or set LAMBDA_ASGI_STREAM_PROBE_TOKEN")
    search = search or ThresholdSearch()
    while (step := search.next_step()) is not None:
        gap = measure(url, token, step, timeout=timeout)
        if progress is not None:
            progress(
                f"write {step.size:>8d} B, pause {step.pause:g} s: first bytes {gap:.3f} s before the end"
            )
        search.observe(gap)
    return search.result()


def measure(url: str, token: str, step: Step, *, timeout: float = 30.0) -> float:
    """Run one probe request; the seconds between its first body bytes and the end of its body."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeError(f"the probe needs an http(s) URL, not {url!r}")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout + step.pause)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("GET", target, headers={PROBE_HEADER: token, PLAN_HEADER: format_plan([step])})
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        if response.status != 200 or not response_headers(headers):
            detail = response.read(300).decode("utf-8", "replace").strip()
            raise ProbeError(
                f"{url} answered {response.status} without the probe header: the request reached the app. "
                "Is LAMBDA_ASGI_STREAM_PROBE_TOKEN set on the function, to this token?"
                + (f" (body: {detail!r})" if detail else "")
            )
        first = end = None
        received = 0
        while True:
            data = response.read1(_READ)
            now = time.monotonic()
            if not data:
                end = now
                break
            received += len(data)
            if first is None:
                first = now
    except (OSError, http.client.HTTPException) as exc:
        raise ProbeError(f"probe request to {url} failed: {exc}") from exc
    finally:
        connection.close()
    if first is None or received != step.size:
        raise ProbeError(f"the probe asked for {step.size} bytes and received {received}")
    return end - first
