"""CloudFront Lambda@Edge: a viewer-request or origin-request event whose function answers the request.

The request is ``Records[0].cf.request`` (CloudFront Developer Guide, "Lambda@Edge event structure"):
``method``, ``uri`` (the path as received, percent-encoded), ``querystring`` (as received, no ``?``),
``clientIp``, ``headers`` as ``{"lower-case-name": [{"key": "Name", "value": "v"}, ...]}`` (one entry per
field, so repeats are kept) and, when the distribution includes it, ``body`` with ``data``, ``encoding``
(``base64`` or ``text``) and ``inputTruncated``. The host is the ``Host`` header, else
``config.distributionDomainName``.

CloudFront takes a generated response buffered only (``status`` as a string, ``headers`` in the same
list form, ``body`` with ``bodyEncoding``): see ``encoder.buffered_response``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .._errors import MalformedEventError
from . import _common as c
from .request import Request

_REQUEST = "Records[0].cf.request"


def is_edge(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    if type(records) is not list or not records:
        return False
    first = records[0]
    return isinstance(first, dict) and isinstance(first.get("cf"), dict) and "request" in first["cf"]


def parse(event: dict[str, Any], context: Any, base_path: str) -> Request:
    cf = event["Records"][0]["cf"]
    request = c.obj(cf.get("request"), _REQUEST, required=True)
    config = c.obj(cf.get("config"), "Records[0].cf.config")

    body = _body(request.get("body"))
    headers = c.headers(_header_pairs(request.get("headers")), body, f"{_REQUEST}.headers")
    first = c.first_values(headers)

    received = c.path_text(request.get("uri"), f"{_REQUEST}.uri")
    path = c.decode_path(received, f"{_REQUEST}.uri")
    query = c.text(request.get("querystring"), f"{_REQUEST}.querystring", default="")
    # CloudFront adds ``CloudFront-Forwarded-Proto`` when the distribution forwards it; viewers reach
    # Lambda@Edge over HTTPS unless the behaviour allows HTTP.
    proto = c.header(first, b"cloudfront-forwarded-proto")
    scheme = proto if proto in ("http", "https") else "https"
    domain = c.text(
        config.get("distributionDomainName"), "Records[0].cf.config.distributionDomainName", default=""
    )
    client_ip = c.text(request.get("clientIp"), f"{_REQUEST}.clientIp", default="")
    method = c.method(request.get("method"), f"{_REQUEST}.method")
    raw_path, root = c.raw_path(received), c.root_path(path, base_path)
    client = (client_ip, 0) if client_ip else None
    server = c.server(first, domain or None, scheme)
    query_string = c.query_string(query.removeprefix("?"))
    scope = c.scope(
        method, scheme, path, raw_path, root, query_string, headers, "1.1", client, server, event, context
    )
    return Request(
        scope=scope, body=body, integration="lambda-at-edge", multi_value_headers=True, streamable=False
    )


def _header_pairs(value: Any) -> Iterator[tuple[str, Any]]:
    field = f"{_REQUEST}.headers"
    for name, entries in c.obj(value, field).items():
        if entries is None:
            continue
        if type(entries) is not list:
            raise MalformedEventError(f"{field}.{name}", "expected an array of {key, value} objects")
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise MalformedEventError(f"{field}.{name}[{i}]", "expected a {key, value} object")
            # The object's key is the field name lower-cased (``entry["key"]`` keeps the client's case,
            # which HTTP ignores); the value is read by c.headers, which names ``field.name`` on error.
            yield name, entry.get("value")


def _body(value: Any) -> bytes:
    field = f"{_REQUEST}.body"
    body = c.obj(value, field)
    if not body:
        return b""
    if body.get("inputTruncated") is True:
        # CloudFront cut the body (40 KB viewer request, 1 MB origin request): handing the app part of a
        # body as if it were all of it would corrupt what it stores. Fail loudly instead.
        raise MalformedEventError(
            f"{field}.inputTruncated",
            "CloudFront truncated the request body (over the Lambda@Edge body limit); it cannot be served",
        )
    encoding = c.text(body.get("encoding"), f"{field}.encoding", default="text")
    if encoding not in ("base64", "text"):
        raise MalformedEventError(f"{field}.encoding", f"expected 'base64' or 'text', got {encoding!r}")
    return c.body(body.get("data"), encoding == "base64", f"{field}.data", f"{field}.encoding")
