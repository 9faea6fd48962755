"""Payload format 2.0: Lambda Function URLs and API Gateway HTTP APIs.

The two share one schema (urls-invocation.md) but differ on the path: a Function URL passes ``rawPath`` as
the client sent it, percent-encoded, while an HTTP API passes it already decoded (from live captures;
docs/wire-format.md, "Event formats"). So the parser must know which one it reads, and it tells them apart
by the domain: Function URLs always answer on ``<url-id>.lambda-url.<region>.on.aws`` (also behind
CloudFront, whose origin is that host). An event with no domain at all (a hand-written test event) is read
as a Function URL, the only 2.0 source that can stream.
"""

from __future__ import annotations

from typing import Any

from .._types import STREAMING_INTEGRATIONS, Headers, Integration
from . import _common as c
from .request import Request


def parse(event: dict[str, Any], context: Any, base_path: str) -> Request:
    # Each field is taken as it is when it has the plain JSON type it nearly always has; anything else goes
    # to the checking reader (``c.obj``, ``c.text``), which gives the default or the error naming the field.
    # The order of the reads is the order of the checks: the first bad field is the one reported.
    request_context = event.get("requestContext")
    if type(request_context) is not dict:
        request_context = c.obj(request_context, "requestContext", required=True)
    http = request_context.get("http")
    if type(http) is not dict:
        http = c.obj(http, "requestContext.http", required=True)
    domain = request_context.get("domainName")
    if type(domain) is not str:
        domain = c.text(domain, "requestContext.domainName", default="")
    integration: Integration = "function-url" if _is_function_url(domain) else "http-api"

    body = c.body(event.get("body"), event.get("isBase64Encoded"))
    headers = _headers(event, body)
    first = c.first_values(headers)

    raw = event.get("rawPath")
    if type(raw) is not str or not raw:
        # ``requestContext.http.path`` holds the same path: the second place 2.0 keeps it.
        raw = c.text(raw, "rawPath", default="") or c.path_text(http.get("path"), "rawPath")
    if integration == "function-url":
        path = c.decode_path(raw, "rawPath")
        raw_path = c.raw_path(raw)
    else:
        path = raw if raw.startswith("/") else c.decode_path(raw, "rawPath")
        raw_path = c.quote_path(path)

    stage = request_context.get("stage")
    if type(stage) is not str:
        stage = c.text(stage, "requestContext.stage", default="$default")
    root = c.root_path(path, base_path) or _stage_root(path, stage, domain)
    query = event.get("rawQueryString")
    if type(query) is not str:
        query = c.text(query, "rawQueryString", default="")
    scheme = c.scheme(first)
    source_ip = http.get("sourceIp")
    if type(source_ip) is not str:
        source_ip = c.text(source_ip, "requestContext.http.sourceIp", default="")
    method = c.method(http.get("method"), "requestContext.http.method")
    protocol = http.get("protocol")
    if type(protocol) is not str:
        protocol = c.text(protocol, "requestContext.http.protocol", default="")
    client = (source_ip, 0) if source_ip else None
    server = c.server(first, domain, scheme)
    query_string, version = c.query_string(query.removeprefix("?")), c.http_version(protocol)
    scope = c.scope(
        method, scheme, path, raw_path, root, query_string, headers, version, client, server, event, context
    )
    # False: multi_value_headers (2.0 responses have none)
    return Request(scope, body, integration, False, integration in STREAMING_INTEGRATIONS)


def _headers(event: dict[str, Any], body: bytes) -> Headers:
    cookies = event.get("cookies")
    if cookies is None or cookies == []:  # fast path: the headers object as it is, no copy
        headers = event.get("headers")
        if type(headers) is not dict:
            headers = c.obj(headers, "headers")
        return c.headers(headers.items(), body)
    # 2.0 moves every Cookie header into the ``cookies`` array and removes it from ``headers``; the
    # ``"; "`` join is the Cookie header's own separator (RFC 6265 5.4), which Starlette splits on.
    pairs = c.single_values(event.get("headers"), "headers")
    cookie_values = c.strings(cookies, "cookies")
    if cookie_values:
        pairs = [(name, value) for name, value in pairs if name.lower() != "cookie"]
        pairs.append(("cookie", "; ".join(cookie_values)))
    return c.headers(pairs, body)


def _is_function_url(domain: str) -> bool:
    return not domain or ".lambda-url." in domain


def _stage_root(path: str, stage: str, domain: str) -> str:
    # An HTTP API named stage reached through execute-api keeps the stage as the first path segment
    # (docs/wire-format.md); it is the app's mount point, like a REST stage. ``$default`` has no segment.
    if stage == "$default" or ".execute-api." not in domain:
        return ""
    return c.root_path(path, "/" + stage)
