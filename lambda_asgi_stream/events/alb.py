"""Application Load Balancer target-group events.

The target group sends either ``headers`` and ``queryStringParameters`` or their ``multiValue`` forms,
never both (attribute ``lambda.multi_value_headers.enabled``); the response must use the same form.
ALB passes the path and the query values exactly as received, still percent-encoded ("the load balancer
does not decode them", ALB docs), so the query string is joined as-is and never re-encoded. ALB cannot
stream; its responses are always buffered.
"""

from __future__ import annotations

from typing import Any

from . import _common as c
from .request import Request


def parse(event: dict[str, Any], context: Any, base_path: str) -> Request:
    multi = "multiValueHeaders" in event and event["multiValueHeaders"] is not None
    body = c.body(event.get("body"), event.get("isBase64Encoded"))
    if multi:
        pairs = c.multi_values(event.get("multiValueHeaders"), "multiValueHeaders")
        headers = c.headers(pairs, body)
        field = "multiValueQueryStringParameters"
        query = c.multi_values(event.get(field), field)
    else:
        headers = c.headers(c.obj(event.get("headers"), "headers").items(), body)
        query = c.single_values(event.get("queryStringParameters"), "queryStringParameters")
    first = c.first_values(headers)

    scheme = c.scheme(first, default="http")
    scope = c.forwarded_scope(
        method=c.method(event.get("httpMethod"), "httpMethod"),
        scheme=scheme,
        received=c.path_text(event.get("path"), "path"),
        path_field="path",
        base_path=base_path,
        query_string=c.query_string("&".join(f"{k}={v}" for k, v in query)),
        headers=headers,
        first=first,
        event=event,
        context=context,
    )
    return Request(scope, body, "alb", multi, False)  # multi_value_headers as the event's; never streamable
