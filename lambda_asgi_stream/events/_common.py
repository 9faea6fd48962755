"""Field readers and scope pieces shared by the event parsers.

Every reader names the field it was reading when it fails, so a bad event produces
``MalformedEventError("requestContext.http.method", "expected a string, got null")`` rather than a
``KeyError`` deep in a parser. Optional fields may be missing *or* null: API Gateway sends
``"headers": null`` for a request without headers (Mangum crashes on it).
"""

from __future__ import annotations

import base64
import binascii
import string
from collections.abc import Iterable, Mapping
from typing import Any

from .._errors import MalformedEventError
from .._http import is_token
from .._types import Headers

# Characters that stay literal when a decoded path is quoted back into ``raw_path``: RFC 3986 pchar plus
# "/" (the segment separator). Everything else, including "%", "?" and "#", is escaped.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
# Fast paths: a string made only of these characters comes out of ``quote`` unchanged, so the (slow, about
# 1 µs) call can be skipped. ``quote`` never escapes ASCII letters, digits and "_.-~" plus its ``safe``.
UNRESERVED = frozenset(string.ascii_letters + string.digits + "_.-~")
_RAW_PATH_LITERAL = UNRESERVED | frozenset(_PATH_SAFE + "%")
_PATH_LITERAL = UNRESERVED | frozenset(_PATH_SAFE)

# Per-call lookups made cheap: the validated forms of the values real events carry, computed once.
_KNOWN_METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
_HTTP_VERSIONS = {"1.0": "1.0", "1.1": "1.1", "2": "2", "2.0": "2", "3": "3", "3.0": "3"}
_PROTOCOLS: dict[str | None, str] = {
    f"HTTP/{spelled}": version for spelled, version in _HTTP_VERSIONS.items()
}


# JSON can carry a lone surrogate ("\ud800") that no UTF-8 encoder accepts; it is passed on encoded
# as-is (CESU-style) rather than failing the event.
_LONE_SURROGATES = "surrogatepass"
_QUERY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


def obj(value: Any, field: str, *, required: bool = False) -> Mapping[str, Any]:
    """A JSON object field; missing or null gives ``{}`` unless the field is required."""
    if type(value) is dict:  # fast path: what json.loads gives
        return value
    if value is None:
        if required:
            raise MalformedEventError(field, "is missing")
        return {}
    if not isinstance(value, Mapping):
        raise MalformedEventError(field, f"expected an object, got {_kind(value)}")
    return value


def text(value: Any, field: str, *, default: str | None = None) -> str:
    """A string field; missing or null gives ``default`` (an error if there is none)."""
    if type(value) is str:  # fast path
        return value
    if value is None:
        if default is None:
            raise MalformedEventError(field, "is missing")
        return default
    if not isinstance(value, str):
        raise MalformedEventError(field, f"expected a string, got {_kind(value)}")
    return value


def strings(value: Any, field: str) -> list[str]:
    """An array of strings; missing or null gives ``[]``."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MalformedEventError(field, f"expected an array of strings, got {_kind(value)}")
    return value


def single_values(value: Any, field: str) -> list[tuple[str, str]]:
    """A ``{"name": "value"}`` object as pairs; missing or null gives ``[]``."""
    items = obj(value, field).items()
    pairs = [(name, item) for name, item in items if type(item) is str]
    if len(pairs) == len(items):  # fast path: every value a plain string
        return pairs
    pairs = []
    for name, item in items:
        if item is None:  # seen in hand-written test events; means "no value"
            continue
        pairs.append((name, text(item, f"{field}.{name}")))
    return pairs


def multi_values(value: Any, field: str) -> list[tuple[str, str]]:
    """A ``{"name": ["v1", "v2"]}`` object as pairs, one per value, order kept."""
    pairs: list[tuple[str, str]] = []
    for name, items in obj(value, field).items():
        if type(items) is list and len(items) == 1 and type(items[0]) is str:  # fast path: one value
            pairs.append((name, items[0]))
        else:
            pairs.extend((name, item) for item in strings(items, f"{field}.{name}"))
    return pairs


def loose_values(value: Any, field: str) -> list[tuple[str, str]]:
    """An object whose values are each a string or an array of strings, as pairs, one per value.

    VPC Lattice documents list values for its 2.0 headers and query parameters, while AWS's own sample
    events (Powertools, Java events) carry plain strings: both are read.
    """
    pairs: list[tuple[str, str]] = []
    for name, items in obj(value, field).items():
        if type(items) is str:
            pairs.append((name, items))
        elif items is not None:  # null means "no value", as in single_values
            pairs.extend((name, item) for item in strings(items, f"{field}.{name}"))
    return pairs


def path_text(value: Any, field: str) -> str:
    """The path of an HTTP event: required. A request always has one; an event without it is broken, and
    serving it as ``/`` would run the home page for a request that asked for something else."""
    if type(value) is str and value:  # fast path
        return value
    if value is None or value == "":
        raise MalformedEventError(field, "is missing: every HTTP request has a path")
    return text(value, field)


def method(value: Any, field: str) -> str:
    if type(value) is str and value in _KNOWN_METHODS:  # fast path: a valid method, already upper-case
        return value
    name = text(value, field)
    if not is_token(name.encode("latin-1", "replace")):
        raise MalformedEventError(field, f"not an HTTP method: {name!r}")
    return name.upper()


def body(value: Any, is_base64: Any, field: str = "body", flag: str = "isBase64Encoded") -> bytes:
    """The request body. Lambda never streams requests, so the whole body is here at once.

    A ``bytes`` body never comes out of JSON, but hand-written test events pass one: it is the raw body
    (base64 text when the flag says so, as Mangum reads it).
    """
    if value is None:
        return b""
    if type(value) is str:  # fast path: what json.loads gives
        if not is_base64:
            return value.encode("utf-8", _LONE_SURROGATES)
        data: str | bytes = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        if not is_base64:
            return bytes(value)
        data = bytes(value)
    else:
        raise MalformedEventError(field, f"expected a string, got {_kind(value)}")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        problem = f"{flag} says base64 but the body is not base64 ({exc})"
        raise MalformedEventError(field, problem) from None


def headers(pairs: Iterable[tuple[str, Any]], body: bytes, field: str = "headers") -> Headers:
    """ASGI headers: lower-case names, duplicates kept in order, unsafe fields dropped.

    ``content-length`` is recomputed from the decoded body (the client's value described the base64
    or the original encoding, and Hono fa5f9bfc shows trusting it is a bug); ``transfer-encoding`` is
    dropped because the body is complete.

    ``pairs`` may come straight from an event's ``{"name": "value"}`` object: a value that is not a
    string is read as :func:`single_values` reads it (null skipped, anything else an error naming
    ``field.name``), which spares parsers that copy.
    """
    result: Headers = []
    cookies = 0
    names, values = _header_names, _header_values
    for name, value in pairs:
        if type(value) is not str:
            if value is None:  # seen in hand-written test events; means "no value"
                continue
            value = text(value, f"{field}.{name}")
        try:
            raw_name = names[name]
        except KeyError:
            raw_name = _header_name(name)
        if raw_name is None:
            continue
        # Fast path: a value seen before is in the cache, checked and encoded. (A long one is not looked
        # up: hashing it would cost more than encoding it.)
        raw_value = values.get(value) if len(value) <= _HEADER_VALUE_CACHED_LEN else None
        if raw_value is None:
            raw_value = _header_value(value)
            if raw_value is None:
                continue
        if raw_name == b"cookie":
            cookies += 1
        result.append((raw_name, raw_value))
    if body:
        result.append((b"content-length", str(len(body)).encode("ascii")))
    return _one_cookie_header(result) if cookies > 1 else result


def _one_cookie_header(headers: Headers) -> Headers:
    # Several Cookie fields are joined with "; " into one (RFC 9113 8.2.3, RFC 6265 5.4): frameworks
    # read only the first ``cookie`` header (Starlette's ``request.cookies``), and a ", " join (Mangum)
    # makes the second cookie part of the first one's value.
    cookies = [value for name, value in headers if name == b"cookie"]
    if len(cookies) < 2:
        return headers
    first = next(i for i, (name, _) in enumerate(headers) if name == b"cookie")
    rest = [(name, value) for name, value in headers if name != b"cookie"]
    rest.insert(first, (b"cookie", b"; ".join(cookies)))
    return rest


# Names already seen, validated: events repeat the same few names, and a dict hit is far cheaper than
# lower() + encode() + a regex. Bounded, since names come from clients.
_header_names: dict[str, bytes | None] = {}
_HEADER_NAMES_MAX = 512


def _header_name(name: str) -> bytes | None:
    """The ASGI name of a header, or None when it must not reach the app.

    Names that are not RFC 9110 tokens cannot be represented faithfully by an ASGI server either, so
    they are dropped rather than passed on to trip the app (Hono #4883).
    """
    raw = name.lower().encode("latin-1", "replace")
    valid = raw not in (b"content-length", b"transfer-encoding") and is_token(raw)
    if len(_header_names) < _HEADER_NAMES_MAX:
        _header_names[name] = raw if valid else None
    return raw if valid else None


# Values already seen, checked and encoded: most of an event's values (Accept, User-Agent, Host,
# X-Forwarded-Proto...) recur from one invocation to the next. Values come from clients, so the cache is
# bounded, and emptied when full: the values that recur are back after one event.
_header_values: dict[str, bytes] = {}
_HEADER_VALUES_MAX = 512
_HEADER_VALUE_CACHED_LEN = 256


def _header_value(value: str) -> bytes | None:
    """The bytes of a header value, or None when the field must be dropped."""
    # RFC 9110 5.5: CR, LF and NUL are never valid in a field value (header injection).
    if "\r" in value or "\n" in value or "\x00" in value:
        return None
    # HTTP field values are bytes; API Gateway hands them to us as JSON strings. Latin-1 gives back the
    # original octets for every value an HTTP/1.1 client can send; anything wider came in as UTF-8.
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raw = value.encode("utf-8", _LONE_SURROGATES)
    if len(value) <= _HEADER_VALUE_CACHED_LEN:
        if len(_header_values) >= _HEADER_VALUES_MAX:
            _header_values.clear()
        _header_values[value] = raw
    return raw


def first_values(headers: Headers) -> dict[bytes, bytes]:
    """Each header name's first value: one pass at C speed for the few lookups a parser makes."""
    return dict(reversed(headers))


def header(first: Mapping[bytes, bytes], name: bytes) -> str | None:
    """The first value of a header (``first`` from :func:`first_values`), decoded as latin-1."""
    value = first.get(name)
    return None if value is None else value.decode("latin-1")


def scheme(first: Mapping[bytes, bytes], default: str = "https") -> str:
    proto = header(first, b"x-forwarded-proto")
    if proto == "https" or proto == "http":  # fast path: one plain value
        return proto
    proto = (proto or "").split(",")[0].strip().lower()
    return proto if proto in ("http", "https") else default


Server = tuple[str, int | None]

# Servers already worked out, by what they are worked out from: a function's events nearly all carry the
# same Host and port, and a dict hit is a fifth of the cost. Bounded, since Host comes from clients.
_servers: dict[tuple[bytes | None, bytes | None, str | None, str], Server | None] = {}
_SERVERS_MAX = 256


def server(first: Mapping[bytes, bytes], domain: str | None, scheme: str) -> Server | None:
    """``(host, port)`` from the Host header (or the event's domain) and ``x-forwarded-port``."""
    key = (first.get(b"host"), first.get(b"x-forwarded-port"), domain, scheme)
    try:
        return _servers[key]
    except KeyError:
        found = _server(*key)
    if len(_servers) < _SERVERS_MAX:
        _servers[key] = found
    return found


def _server(
    raw_host: bytes | None, raw_forwarded: bytes | None, domain: str | None, scheme: str
) -> Server | None:
    host = raw_host.decode("latin-1") if raw_host else domain
    if not host:
        return None
    port: int | None = None
    if host.startswith("["):  # IPv6 literal, "[::1]:9000"
        literal, _, rest = host.partition("]")
        host = literal + "]"
        port = _port(rest[1:]) if rest.startswith(":") else None
    elif ":" in host:
        host, _, tail = host.rpartition(":")
        port = _port(tail)
    forwarded = _port(raw_forwarded.decode("latin-1").split(",")[0].strip()) if raw_forwarded else None
    port = forwarded or port or (443 if scheme == "https" else 80)
    return host, port


def _port(value: str) -> int | None:
    # isascii: str.isdigit() also accepts digits int() refuses ("²"), and the Host header is the client's.
    return int(value) if value.isascii() and value.isdigit() and 0 < int(value) < 65536 else None


def client_from_forwarded_for(first: Mapping[bytes, bytes]) -> tuple[str, int] | None:
    """ALB has no source-IP field; its ``x-forwarded-for`` ends with the address it saw connect."""
    value = header(first, b"x-forwarded-for")
    if not value:
        return None
    return value.split(",")[-1].strip(), 0


def http_version(protocol: str | None) -> str:
    """``"HTTP/1.1"`` -> ``"1.1"``, ``"HTTP/2.0"`` -> ``"2"`` (ASGI spells HTTP/2 as ``"2"``)."""
    known = _PROTOCOLS.get(protocol)  # fast path: spelled as API Gateway and Function URLs spell it
    if known is not None:
        return known
    if not protocol:
        return "1.1"
    version = protocol.upper().removeprefix("HTTP/")
    return _HTTP_VERSIONS.get(version, "1.1")


def query_string(query: str) -> bytes:
    """A query string that arrived as received (2.0 ``rawQueryString``, ALB), as ASGI's ASCII bytes.

    Clients percent-encode queries, so this is ASCII nearly always; anything else (a raw UTF-8 query some
    clients send) is percent-encoded as UTF-8 rather than mangled, and every printable ASCII character,
    "%" included, is kept as it came.
    """
    if query.isascii():
        return query.encode("ascii")
    return _quote(query, _QUERY_SAFE).encode("ascii")


def encode_query(pairs: list[tuple[str, str]]) -> str:
    """A query string rebuilt from decoded ``(name, value)`` pairs (REST, VPC Lattice hand them over
    decoded), each part percent-encoded."""
    if not pairs:
        return ""
    # quote, not quote_plus: "%20" means a space to every parser, "+" only to form parsers.
    return "&".join(f"{quote_component(k)}={quote_component(v)}" for k, v in pairs)


def quote_component(text: str) -> str:
    if UNRESERVED.issuperset(text):  # fast path: quote(text, safe="") would return it unchanged
        return text
    return _quote(text, "")


def decode_path(raw: str, field: str) -> str:
    """Percent-decode a path once (UTF-8, as browsers encode; bad UTF-8 becomes U+FFFD, as in uvicorn)."""
    if not raw.startswith("/"):
        raise MalformedEventError(field, f"a path must start with '/', got {raw!r}")
    if "%" not in raw:  # fast path: nothing to decode
        return raw
    import urllib.parse  # here, not at the top: see _quote

    return urllib.parse.unquote(raw, encoding="utf-8", errors="replace")


def quote_path(path: str) -> bytes:
    """The bytes of a decoded path, escaped back for ``raw_path`` (HTTP API gives no raw form)."""
    if _PATH_LITERAL.issuperset(path):  # fast path: nothing to escape
        return path.encode("ascii")
    return _quote(path, _PATH_SAFE).encode("ascii")


def raw_path(raw: str) -> bytes:
    """A path as received (already percent-encoded); non-ASCII is escaped so ``raw_path`` stays ASCII."""
    if _RAW_PATH_LITERAL.issuperset(raw):  # fast path: nothing to escape
        return raw.encode("ascii")
    return _quote(raw, _PATH_SAFE + "%").encode("ascii")


def _quote(text: str, safe: str) -> str:
    """``urllib.parse.quote`` as UTF-8. Imported on first use: the fast paths above mostly spare it, and
    importing it (with ``ipaddress``, which it pulls in) costs the Lambda cold start a few ms."""
    import urllib.parse

    return urllib.parse.quote(text, safe=safe, encoding="utf-8", errors=_LONE_SURROGATES)


def root_path(path: str, base_path: str) -> str:
    """The configured base path if ``path`` lies under it, segment by segment, else ``""``.

    ``/orders`` is the root of ``/orders`` and ``/orders/7`` but not of ``/ordersXYZ`` (LWA's plain
    string trim gets that wrong).
    """
    if not base_path:
        return ""
    base = base_path.rstrip("/")
    if base and (path == base or path.startswith(base + "/")):
        return base
    return ""


def scope(
    method: str,
    scheme: str,
    path: str,
    raw_path: bytes,
    root_path: str,
    query_string: bytes,
    headers: Headers,
    http_version: str,
    client: tuple[str, int] | None,
    server: Server | None,
    event: Any,
    context: Any,
    /,
) -> dict[str, Any]:
    """An ASGI 3 HTTP scope. (Positional, in scope order: it runs per event, and keywords cost a fifth.)

    ``path`` and ``raw_path`` are the full path the client asked for, ``root_path`` included: the
    convention of uvicorn (``--root-path``) and Starlette 0.33+, whose router strips ``root_path`` itself
    and whose ``url_for`` adds it back. ``aws.event``/``aws.context`` are Mangum's keys, so apps migrate.
    """
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},  # a literal: cheaper than copying one
        "http_version": http_version,
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "root_path": root_path,
        "query_string": query_string,
        "headers": headers,
        "client": client,
        "server": server,
        "extensions": {},
        "aws.event": event,
        "aws.context": context,
    }


def forwarded_scope(
    *,
    method: str,
    scheme: str,
    received: str,
    path_field: str,
    base_path: str,
    query_string: bytes,
    headers: Headers,
    first: Mapping[bytes, bytes],
    event: Any,
    context: Any,
) -> dict[str, Any]:
    """The scope for a load balancer's event (ALB, VPC Lattice): the path as received, HTTP/1.1, the
    client known only from ``x-forwarded-for`` and the server from the ``Host`` header."""
    path = decode_path(received, path_field)
    raw = raw_path(received)
    root = root_path(path, base_path)
    client = client_from_forwarded_for(first)
    found = server(first, None, scheme)
    return scope(method, scheme, path, raw, root, query_string, headers, "1.1", client, found, event, context)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
