"""The dispatcher that picks the parser for an event.

Detection goes by the shape of ``requestContext`` (Hono misread REST events behind a custom domain as 2.0
because it looked at ``rawPath``): ``requestContext.elb`` is ALB, ``requestContext.http`` with
``version == "2.0"`` is payload 2.0, ``httpMethod`` + ``requestContext`` is REST / payload 1.0 (tested
in that order, on the one lookup of ``requestContext``). The
sources that cannot stream and are rarer (Lambda@Edge's ``Records[0].cf``, VPC Lattice) are tried only
after those, so they cost the common formats nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import UnsupportedEventError
from . import alb, edge, lattice, v1, v2
from .base_path import normalize_base_path
from .handlers import EventHandler
from .request import HandledRequest, Request


def parse_event(
    event: Any,
    context: Any = None,
    *,
    base_path: str = "",
    handlers: Sequence[EventHandler] = (),
) -> Request:
    """Turn a Lambda invocation event into a :class:`Request`.

    >>> req = parse_event({"version": "2.0", "rawPath": "/hi", "requestContext": {"http": {"method": "GET"}}})
    >>> req.scope["path"]
    '/hi'

    ``base_path`` is normally already normalised (:func:`normalize_base_path`, done once where the
    option is read); one without its leading ``/`` is normalised here. ``handlers`` are custom
    :class:`EventHandler` objects, tried in order before the built-in formats.

    Raises :class:`UnsupportedEventError` for events that are not HTTP events and
    :class:`MalformedEventError` for HTTP events with a bad field.
    """
    if handlers:
        request = _custom(handlers, event, context, base_path)
        if request is not None:
            return request
    if not isinstance(event, dict):
        raise UnsupportedEventError(f"a Lambda HTTP event is a JSON object, got {type(event).__name__}")
    if base_path and base_path[0] != "/":  # Mangum's "v1": without this it would match no path at all
        base_path = normalize_base_path(base_path)
    request_context = event.get("requestContext")
    if isinstance(request_context, dict):  # the formats that carry nearly all traffic, in that order
        if "elb" in request_context:
            return alb.parse(event, context, base_path)
        if "http" in request_context and event.get("version") == "2.0":
            return v2.parse(event, context, base_path)
        if "httpMethod" in event:
            return v1.parse(event, context, base_path)
    if edge.is_edge(event):
        return edge.parse(event, context, base_path)
    if lattice.is_lattice_v2(event) or lattice.is_lattice_v1(event):
        return lattice.parse(event, context, base_path)
    raise UnsupportedEventError(_describe(event), keys=sorted(event))


def _custom(handlers: Sequence[EventHandler], event: Any, context: Any, base_path: str) -> Request | None:
    for handler in handlers:
        if handler.matches(event, context):
            request = handler.parse(event, context, base_path)
            # Its response is the handler's dict: never streamed, and shaped by the handler.
            extra = request.extra if isinstance(request, HandledRequest) else None
            scope, body, integration = request.scope, request.body, request.integration
            return HandledRequest(
                scope, body, integration, request.multi_value_headers, False, handler, extra
            )
    return None


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
        "not an HTTP event from a Function URL, API Gateway (REST or HTTP API), ALB, Lambda@Edge or "
        "VPC Lattice (expected requestContext.http, requestContext.elb, httpMethod, Records[0].cf.request "
        f"or method; got {keys})"
    )
