"""Payload format 1.0: API Gateway REST APIs (buffered or ``responseTransferMode: STREAM``) and HTTP APIs
configured for 1.0.

``path`` arrives percent-encoded (docs/wire-format.md, "Event formats") and, on an ``execute-api`` host,
without the stage that the client's URL carried (``requestContext.path`` has it). Query values arrive
decoded, so the query string is rebuilt from ``multiValueQueryStringParameters`` (all values; the
single-value map keeps only the last) and re-encoded; the original spelling (``%20`` vs ``+``) cannot be
recovered.
"""

from __future__ import annotations

from typing import Any

from . import _common as c
from .request import Request


def parse(event: dict[str, Any], context: Any, base_path: str) -> Request:
    # As in v2.parse: a field of its usual JSON type is taken as it is, anything else goes to the checking
    # reader, in the order of the checks.
    request_context = event.get("requestContext")
    if type(request_context) is not dict:
        request_context = c.obj(request_context, "requestContext", required=True)
    identity = request_context.get("identity")
    if type(identity) is not dict:
        identity = c.obj(identity, "requestContext.identity")
    domain = request_context.get("domainName")
    if type(domain) is not str:
        domain = c.text(domain, "requestContext.domainName", default="")

    body = c.body(event.get("body"), event.get("isBase64Encoded"))
    # multiValueHeaders is authoritative: ``headers`` keeps only the last value of a repeated header
    # (Hono aa921770 made the same choice after de-duplication bugs).
    pairs = c.multi_values(event.get("multiValueHeaders"), "multiValueHeaders") or c.single_values(
        event.get("headers"), "headers"
    )
    headers = c.headers(pairs, body)
    first = c.first_values(headers)

    received = event.get("path")
    if type(received) is not str or not received:
        # ``requestContext.path`` is the client's own path (stage included), a second place to find it.
        received = c.path_text(received or request_context.get("path"), "path")
    stage = request_context.get("stage")
    if type(stage) is not str:
        stage = c.text(stage, "requestContext.stage", default="")
    prefix = _stage_prefix(received, stage, domain, request_context)
    path = prefix + c.decode_path(received, "path")
    raw_path = c.raw_path(prefix + received)
    root = c.root_path(path, prefix or base_path)

    scheme = c.scheme(first)
    source_ip = identity.get("sourceIp")
    if type(source_ip) is not str:
        source_ip = c.text(source_ip, "requestContext.identity.sourceIp", default="")
    method = c.method(event.get("httpMethod"), "httpMethod")
    query_string = _query(event)
    protocol = request_context.get("protocol")
    if type(protocol) is not str:
        protocol = c.text(protocol, "requestContext.protocol", default="")
    client = (source_ip, 0) if source_ip else None
    server = c.server(first, domain or None, scheme)
    version = c.http_version(protocol)
    scope = c.scope(
        method, scheme, path, raw_path, root, query_string, headers, version, client, server, event, context
    )
    # An HTTP API sending payload 1.0 looks like REST but says so in "version"; it cannot stream.
    streamable = event.get("version") != "1.0"
    return Request(scope, body, "rest", True, streamable)  # True: multi_value_headers


def _stage_prefix(path: str, stage: str, domain: str, request_context: Any) -> str:
    """``"/<stage>"`` when API Gateway removed the stage from ``path``, else ``""``.

    On the ``execute-api`` host the client's URL is ``/<stage>/<path>`` and the event's ``path`` lacks
    the stage (LocalStack #12295 matrix); ``requestContext.path`` shows what the client sent. Behind a
    custom domain the stage never appeared in the URL and nothing is added back.
    """
    # ``$default`` (an HTTP API's payload 1.0) is never a URL segment (HTTP API docs, "Working with
    # stages"): the client's URL has no stage to put back.
    if not stage or stage == "$default" or ".execute-api." not in domain:
        return ""
    client_path = c.text(request_context.get("path"), "requestContext.path", default="")
    prefix = "/" + stage
    if client_path and not (client_path == prefix or client_path.startswith(prefix + "/")):
        return ""  # the client's URL did not carry the stage after all
    if path == prefix or path.startswith(prefix + "/"):
        return ""  # already there (test events written by hand often keep it)
    return prefix


def _query(event: dict[str, Any]) -> bytes:
    multi = event.get("multiValueQueryStringParameters")
    single = event.get("queryStringParameters")
    if (multi is None or multi == {}) and (single is None or single == {}):
        return b""  # fast path: no query, as API Gateway sends it (null); the readers take {} alike
    pairs = c.multi_values(multi, "multiValueQueryStringParameters")
    pairs = pairs or c.single_values(single, "queryStringParameters")
    return c.encode_query(pairs).encode("ascii")
