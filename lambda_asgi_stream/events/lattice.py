"""Amazon VPC Lattice target groups with a Lambda target, event structure version 1 and 2.

VPC Lattice User Guide, "Lambda functions as targets": version 2 carries ``version: "2.0"``, ``path``,
``method``, ``headers``, ``queryStringParameters``, ``body``, ``isBase64Encoded`` and a ``requestContext``
with ``serviceNetworkArn``, ``serviceArn``, ``targetGroupArn``, ``identity``, ``region``; version 1 is flat
and snake_case: ``raw_path``, ``method``, ``headers``, ``query_string_parameters``, ``body``,
``is_base64_encoded``. Header and query values may be strings or arrays of strings (both appear in AWS's
documentation and samples), query values arrive decoded and are re-encoded, as for REST. There is no
source-IP field: ``x-forwarded-for`` carries the caller's address. VPC Lattice invokes buffered only.
"""

from __future__ import annotations

from typing import Any

from . import _common as c
from .request import Request


def is_lattice_v2(event: dict[str, Any]) -> bool:
    context = event.get("requestContext")
    return isinstance(context, dict) and "serviceNetworkArn" in context


def is_lattice_v1(event: dict[str, Any]) -> bool:
    # No other AWS event has a top-level snake_case ``raw_path``; a missing ``method`` is then a broken
    # Lattice event (named in the error), not an unknown one.
    return "raw_path" in event


def parse(event: dict[str, Any], context: Any, base_path: str) -> Request:
    if "raw_path" in event:  # version 1
        path_field, query_field, flag = "raw_path", "query_string_parameters", "is_base64_encoded"
    else:
        path_field, query_field, flag = "path", "queryStringParameters", "isBase64Encoded"

    body = c.body(event.get("body"), event.get(flag), "body", flag)
    headers = c.headers(c.loose_values(event.get("headers"), "headers"), body)
    first = c.first_values(headers)

    received, _, raw_query = c.path_text(event.get(path_field), path_field).partition("?")
    pairs = c.loose_values(event.get(query_field), query_field)
    # A query left on the path (seen in hand-written events) is the raw form: it wins over the decoded map.
    query = c.query_string(raw_query) if raw_query else c.encode_query(pairs).encode("ascii")
    scope = c.forwarded_scope(
        method=c.method(event.get("method"), "method"),
        scheme=c.scheme(first),
        received=received,
        path_field=path_field,
        base_path=base_path,
        query_string=query,
        headers=headers,
        first=first,
        event=event,
        context=context,
    )
    return Request(
        scope=scope, body=body, integration="vpc-lattice", multi_value_headers=False, streamable=False
    )
