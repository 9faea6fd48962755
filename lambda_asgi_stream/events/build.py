"""HTTP request -> the event Lambda would deliver for it: the inverse of the parsers.

The emulator and the test transport use this, so an app tested locally receives the same quirks as on
AWS: payload 2.0 drops ``Cookie`` into ``cookies`` and comma-joins repeated headers, an HTTP API hands
over the path decoded, REST decodes query values and strips the stage on ``execute-api``, ALB passes
the query as received, and binary bodies travel as base64. The shapes follow the AWS documentation
samples (urls-invocation.md, http-api-develop-integrations-lambda.md, set-up-lambda-proxy-integrations.md,
lambda-functions.md for ALB and for VPC Lattice, lambda-event-structure.md for Lambda@Edge).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote

from .._types import Integration

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
URL_ID = "localurl0000000000000000000000000"
API_ID = "localapi00"
DISTRIBUTION = "d111111abcdef8.cloudfront.net"
TARGET_GROUP = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT_ID}:targetgroup/local/0123456789abcdef"

# Content types Function URLs and ALB pass as text; any other body arrives base64-encoded.
_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "+json",
    "+xml",
)


def build_event(
    integration: Integration,
    *,
    method: str,
    path: str,
    query_string: str = "",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    stage: str | None = None,
    source_ip: str = "127.0.0.1",
    host: str = "localhost",
    scheme: str = "https",
    request_id: str | None = None,
    multi_value_headers: bool = True,
    lattice_version: int = 2,
) -> dict[str, Any]:
    """The event for one request.

    ``path`` and ``query_string`` are as the client sent them (percent-encoded, no ``?``). ``stage``
    puts a REST or HTTP API on its ``execute-api`` host with that stage as the first path segment;
    without it the API sits behind a custom domain (``host``). ``multi_value_headers`` picks the ALB
    target-group mode, ``lattice_version`` the VPC Lattice event structure (1 or 2).
    """
    pairs = [(name, value) for name, value in headers]
    if not any(name.lower() == "host" for name, _ in pairs):
        pairs.append(("host", host))
    _set_default(pairs, "x-forwarded-proto", scheme)
    _set_default(pairs, "x-forwarded-port", _port(host, scheme))
    _append_forwarded_for(pairs, source_ip)
    request_id = request_id or str(uuid.uuid4())
    text, is_base64 = _body(body, _header(pairs, "content-type"))
    if integration == "lambda-at-edge":
        return _edge(method, path, query_string, pairs, body, source_ip, host)
    if integration == "vpc-lattice":
        return _lattice(method, path, query_string, pairs, text, is_base64, lattice_version)
    common = {"body": text, "isBase64Encoded": is_base64}
    if integration == "alb":
        return _alb(method, path, query_string, pairs, multi_value_headers) | common
    if integration == "rest":
        return _rest(method, path, query_string, pairs, stage, source_ip, host, request_id) | common
    return _v2(integration, method, path, query_string, pairs, stage, source_ip, request_id) | common


def _v2(
    integration: Integration,
    method: str,
    path: str,
    query: str,
    pairs: list[tuple[str, str]],
    stage: str | None,
    source_ip: str,
    request_id: str,
) -> dict[str, Any]:
    cookies = [c.strip() for name, v in pairs if name.lower() == "cookie" for c in v.split(";") if c.strip()]
    headers = _joined({name.lower(): None for name, _ in pairs}, pairs, skip="cookie")
    if integration == "function-url":
        domain, raw_path, stage_name = f"{URL_ID}.lambda-url.{REGION}.on.aws", path, "$default"
    else:
        # HTTP APIs decode the path and cut it at a decoded "?" (docs/wire-format.md, hono#2156).
        domain = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
        raw_path = unquote(path).split("?", 1)[0]
        stage_name = stage or "$default"  # a named stage is already the first segment of the client's path
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID if integration == "http-api" else "anonymous",
            "apiId": API_ID if integration == "http-api" else URL_ID,
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": stage_name,
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = _joined({}, parse_qsl(query, keep_blank_values=True))
    return event


def _rest(
    method: str,
    path: str,
    query: str,
    pairs: list[tuple[str, str]],
    stage: str | None,
    source_ip: str,
    host: str,
    request_id: str,
) -> dict[str, Any]:
    if stage:
        domain = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
        client_path = path
        prefix = f"/{stage}"
        path = path[len(prefix) :] or "/" if path == prefix or path.startswith(prefix + "/") else path
    else:
        domain, client_path, stage = host.split(":")[0], path, "local"
    multi_query = _grouped(parse_qsl(query, keep_blank_values=True))
    multi_headers = _grouped(pairs)
    now = time.time()
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": path.lstrip("/")} if path != "/" else None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "extendedRequestId": request_id[:16],
            "httpMethod": method,
            "identity": {"sourceIp": source_ip, "userAgent": _header(pairs, "user-agent")},
            "path": client_path,
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "resourceId": "abc123",
            "resourcePath": "/{proxy+}",
            "stage": stage,
        },
    }


def _alb(method: str, path: str, query: str, pairs: list[tuple[str, str]], multi: bool) -> dict[str, Any]:
    # ALB keeps query keys and values exactly as received: split on "&" and "=" only, no decoding.
    fields = [_split_field(part) for part in query.split("&") if part]
    lowered = [(name.lower(), value) for name, value in pairs]
    event: dict[str, Any] = {
        "requestContext": {"elb": {"targetGroupArn": TARGET_GROUP}},
        "httpMethod": method,
        "path": path,
    }
    if multi:
        event["multiValueQueryStringParameters"] = _grouped(fields)
        event["multiValueHeaders"] = _grouped(lowered)
    else:  # single-value mode keeps the last value of each name
        event["queryStringParameters"] = dict(fields)
        event["headers"] = dict(lowered)
    return event


def _edge(
    method: str,
    path: str,
    query: str,
    pairs: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    host: str,
) -> dict[str, Any]:
    # An origin-request event with "include body" on: CloudFront always sends the body as base64 then.
    headers: dict[str, list[dict[str, str]]] = {}
    for name, value in pairs:
        headers.setdefault(name.lower(), []).append({"key": name, "value": value})
    request: dict[str, Any] = {
        "clientIp": source_ip,
        "headers": headers,
        "method": method,
        "querystring": query,
        "uri": path,
    }
    if body:
        data = base64.b64encode(body).decode("ascii")
        request["body"] = {"action": "read-only", "data": data, "encoding": "base64", "inputTruncated": False}
    config = {
        "distributionDomainName": host.split(":")[0] if host.endswith(".cloudfront.net") else DISTRIBUTION,
        "distributionId": "ELOCAL0000000",
        "eventType": "origin-request",
        "requestId": str(uuid.uuid4()),
    }
    return {"Records": [{"cf": {"config": config, "request": request}}]}


def _lattice(
    method: str,
    path: str,
    query: str,
    pairs: list[tuple[str, str]],
    text: str | None,
    is_base64: bool,
    version: int,
) -> dict[str, Any]:
    # VPC Lattice hands over the query decoded, as API Gateway's REST does.
    decoded = parse_qsl(query, keep_blank_values=True)
    if version == 1:
        return {
            "raw_path": path,
            "method": method,
            "headers": _joined({}, pairs),
            "query_string_parameters": dict(decoded),
            "body": text,
            "is_base64_encoded": is_base64,
        }
    now_us = int(time.time() * 1_000_000)
    arn = f"arn:aws:vpc-lattice:{REGION}:{ACCOUNT_ID}"
    return {
        "version": "2.0",
        "path": path,
        "method": method,
        "headers": _grouped([(name.lower(), value) for name, value in pairs]),
        "queryStringParameters": _grouped(decoded),
        "body": text,
        "isBase64Encoded": is_base64,
        "requestContext": {
            "serviceNetworkArn": f"{arn}:servicenetwork/sn-0000000000local0",
            "serviceArn": f"{arn}:service/svc-0000000000local0",
            "targetGroupArn": f"{arn}:targetgroup/tg-0000000000local0",
            "identity": {"sourceVpcArn": f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:vpc/vpc-0000000000local0"},
            "region": REGION,
            "timeEpoch": str(now_us),
        },
    }


def _split_field(part: str) -> tuple[str, str]:
    name, _, value = part.partition("=")
    return name, value


def _body(body: bytes, content_type: str | None) -> tuple[str | None, bool]:
    if not body:
        return "", False
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind and any(marker in kind for marker in _TEXT_TYPES):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _joined(seed: dict[str, Any], pairs: Sequence[tuple[str, str]], skip: str = "") -> dict[str, str]:
    """Payload 2.0 headers: one entry per lower-cased name, repeated values comma-joined."""
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        if key != skip:
            out[key] = f"{out[key]},{value}" if key in out else value
    return out


def _grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def _header(pairs: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in pairs if key.lower() == name), None)


def _set_default(pairs: list[tuple[str, str]], name: str, value: str) -> None:
    if _header(pairs, name) is None:
        pairs.append((name, value))


def _append_forwarded_for(pairs: list[tuple[str, str]], source_ip: str) -> None:
    """One ``x-forwarded-for``: what the client sent, then the address that connected.

    ALB (and API Gateway, Function URLs) append the address they saw to the client's list, so its last
    entry is never one the client chose ("X-Forwarded-For", ALB docs, HTTP headers and your ALB).
    """
    sent = [value for name, value in pairs if name.lower() == "x-forwarded-for"]
    pairs[:] = [(name, value) for name, value in pairs if name.lower() != "x-forwarded-for"]
    pairs.append(("x-forwarded-for", ", ".join([*sent, source_ip])))


def _port(host: str, scheme: str) -> str:
    _, sep, port = host.rpartition(":")
    return port if sep and port.isdigit() else ("443" if scheme == "https" else "80")
