"""The dispatcher that picks the parser for an event.

Detection goes by the shape of ``requestContext`` (lessons.md 3.7: Hono misread REST events behind a custom
domain as 2.0 because it looked at ``rawPath``): ``requestContext.elb`` is ALB, ``requestContext.http`` with
``version == "2.0"`` is payload 2.0, ``httpMethod`` + ``requestContext`` is REST / payload 1.0.
"""

from __future__ import annotations

from typing import Any

from .._errors import UnsupportedEventError
from . import alb, v1, v2
from .request import Request


def parse_event(event: Any, context: Any = None, *, base_path: str = "") -> Request:
    """Turn a Lambda invocation event into a :class:`Request`.

    >>> req = parse_event({"version": "2.0", "rawPath": "/hi", "requestContext": {"http": {"method": "GET"}}})
    >>> req.scope["path"]
    '/hi'

    Raises :class:`UnsupportedEventError` for events that are not HTTP events and
    :class:`MalformedEventError` for HTTP events with a bad field.
    """
    if not isinstance(event, dict):
        raise UnsupportedEventError(f"a Lambda HTTP event is a JSON object, got {type(event).__name__}")
    if alb.is_alb(event):
        return alb.parse(event, context, base_path)
    if v2.is_v2(event):
        return v2.parse(event, context, base_path)
    if v1.is_v1(event):
        return v1.parse(event, context, base_path)
    raise UnsupportedEventError(_describe(event), keys=sorted(event))


def _describe(event: dict[str, Any]) -> str:
    """Say what the event looks like, so a misrouted trigger is easy to recognise in the logs."""
    if isinstance(event.get("Records"), list):
        source: Any = next(iter(event["Records"]), {})
        origin = source.get("eventSource") or source.get("EventSource") if isinstance(source, dict) else None
        return f"not an HTTP event: a {origin or 'Records'} batch"
    if "detail-type" in event:
        return "not an HTTP event: an EventBridge event"
    context = event.get("requestContext")
    if isinstance(context, dict) and "connectionId" in context:
        return "not an HTTP event: an API Gateway WebSocket event (WebSockets are not supported)"
    keys = ", ".join(sorted(event)[:8]) or "no keys"
    return (
        "not an HTTP event from a Function URL, API Gateway (REST or HTTP API) or ALB "
        f"(expected requestContext.http, requestContext.elb or httpMethod; got {keys})"
    )
