"""The value every event parser returns, and the dispatcher that picks the parser.

Detection goes by the shape of ``requestContext`` (lessons.md 3.7: Hono misread REST events behind a custom
domain as 2.0 because it looked at ``rawPath``): ``requestContext.elb`` is ALB, ``requestContext.http`` with
``version == "2.0"`` is payload 2.0, ``httpMethod`` + ``requestContext`` is REST / payload 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._types import HTTPScope, Integration


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request taken from a Lambda event.

    ``scope`` is a complete ASGI 3 HTTP scope (without ``state``, which the caller adds); the caller must
    copy it before handing it to an app, since apps may mutate their scope. ``multi_value_headers`` says
    whether responses must use ``multiValueHeaders`` (always for REST, for ALB when the target group has
    multi-value headers enabled).
    """

    scope: HTTPScope
    body: bytes
    integration: Integration
    multi_value_headers: bool


def parse_event(event: Any, context: Any = None, *, base_path: str = "") -> Request:
    """Turn a Lambda invocation event into a :class:`Request`.

    >>> req = parse_event({"version": "2.0", "rawPath": "/hi", ...})  # doctest: +SKIP
    >>> req.scope["path"]
    '/hi'

    Raises :class:`UnsupportedEventError` for events that are not HTTP events and
    :class:`MalformedEventError` for HTTP events with a bad field.
    """
    raise NotImplementedError  # filled in by the events work
