"""The value every event parser returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._types import Integration


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request taken from a Lambda event.

    ``scope`` is a complete ASGI 3 HTTP scope (without ``state``, which the caller adds) plus Mangum's
    ``aws.event`` and ``aws.context`` keys; the caller must copy it before handing it to an app, since
    apps may mutate their scope. ``multi_value_headers`` says whether responses must use
    ``multiValueHeaders`` (always for REST, for ALB when the target group has multi-value headers on).
    ``streamable`` says whether the invoker can take a streamed response at all: a Function URL or a REST
    API can; an HTTP API (either payload version) and ALB invoke buffered only.
    """

    scope: dict[str, Any]
    body: bytes
    integration: Integration
    multi_value_headers: bool
    streamable: bool = True
