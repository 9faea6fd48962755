"""ASGI response values -> the bytes Lambda expects, and back again for readers. No I/O.

Streaming (docs/wire-format.md, "Prelude"): the body of the ``/response`` POST is ``JSON(prelude)``,
then exactly 8 NUL bytes, then the raw payload. JSON never holds a raw NUL (control characters are
escaped), so the first run of 8 NULs is the delimiter. The prelude must fit in the first 16 KiB of the
stream (API Gateway docs; docs/wire-format.md).

Prelude shapes, one per integration:

* Function URL (and ``InvokeWithResponseStream``): ``statusCode``, ``headers`` (one string per name,
  repeats comma-joined) and ``cookies`` (each ``Set-Cookie`` value). Function URLs do not document
  ``multiValueHeaders`` nor array-valued ``headers`` (docs/wire-format.md), so we never send
  either there: that is the safe path.
* API Gateway REST ``STREAM``: the same, plus ``multiValueHeaders`` for names that repeat (the docs
  format block lists ``headers``, ``multiValueHeaders`` and ``cookies``; Go's
  ``APIGatewayProxyStreamingResponse``).

``Set-Cookie`` is never comma-joined: ``Expires=Wed, 21 Oct ...`` holds a comma (RFC 6265 3).

Buffered: the Mangum-compatible response dicts (``cookies`` for payload 2.0, ``multiValueHeaders`` for
REST, ``headers`` or ``multiValueHeaders`` for ALB as the target group is configured, one value per name
for VPC Lattice, ``status``/``headers`` lists/``bodyEncoding`` for Lambda@Edge), base64 for bodies that
are not text.

Errors: :func:`error_trailers` builds the ``Lambda-Runtime-Function-Error-Type`` / ``-Body`` pair sent as
HTTP trailers after the last chunk (docs/wire-format.md, "Trailers"): base64 of a JSON error object,
because raw CR/LF in a trailer would break the framing.
"""

from __future__ import annotations

import base64
import json
import re
import traceback
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii
from typing import Any

from ._errors import ConfigError, LambdaAsgiStreamError, PreludeTooLargeError, ResponseTooLargeError
from ._http import is_token
from ._types import FrozenRecord, Headers, Integration
from .events.request import HandledRequest, Request
from .padding import PADDING_HEADER

DELIMITER = b"\x00" * 8
MAX_PRELUDE_BYTES = 16 * 1024
# Lambda's invocation payload limit for buffered responses: 6 MB (docs "Lambda quotas").
MAX_BUFFERED_RESPONSE_BYTES = 6 * 1024 * 1024

ERROR_TYPE_TRAILER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
PRELUDE_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"

# RFC 9110 7.6.1 hop-by-hop fields, plus content-length: a streamed response is chunked by Lambda, and a
# length that disagrees with the bytes sent would corrupt the client's framing (RFC 9112 6.3).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Mangum's DEFAULT_TEXT_MIME_TYPES, so a migrated app's buffered bodies come out the same.
DEFAULT_TEXT_MIME_TYPES = (
    "text/",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/vnd.api+json",
    "application/vnd.oai.openapi",
)

_ERROR_NAME_CHARS = re.compile(r"[^A-Za-z]")
# Bounds of an error report (the trailer or the /error body), whatever the exception holds: a message of
# megabytes would otherwise go out whole, twice (the last traceback line repeats it).
_MAX_ERROR_MESSAGE = 1024
_MAX_STACK_LINES = 40
_MAX_STACK_LINE = 300
MAX_ERROR_REPORT_BYTES = 8 * 1024  # the JSON object, before base64


def _value_text(value: bytes) -> str:
    """A header value as the JSON string Lambda turns back into bytes.

    Values are ASCII nearly always. Beyond ASCII, apps that encode as UTF-8 get their bytes back (Lambda
    writes the JSON strings out as UTF-8); bytes that are not UTF-8 are read as latin-1, HTTP's historical
    charset (RFC 9110 5.5), which is what Starlette encodes header values with.
    """
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _connection_tokens(pairs: list[tuple[str, str]]) -> set[str]:
    # Fields named in `Connection` are hop-by-hop too (RFC 9110 7.6.1).
    return {
        token.strip().lower()
        for name, value in pairs
        if name == "connection"
        for token in value.split(",")
        if token.strip()
    }


class Prelude(FrozenRecord):
    """A decoded streaming prelude, as a reader (emulator, test transport) sees it (immutable, by value).

    A plain class, not a dataclass: building one runs ``exec`` at import, on the Lambda cold path.
    """

    __slots__ = ("status", "headers", "cookies", "raw")  # noqa: RUF023 (the constructor's order)
    _unshown = ("raw",)

    status: int
    headers: list[tuple[str, str]]
    cookies: list[str]
    raw: dict[str, Any]

    def __init__(
        self, status: int, headers: list[tuple[str, str]], cookies: list[str], raw: dict[str, Any]
    ) -> None:
        self._assign(status, headers, cookies, raw)


def build_prelude(
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
    integration: Integration,
    exclude_headers: frozenset[str] = frozenset(),
) -> bytes:
    """Encode ``http.response.start`` as the streaming prelude, delimiter included.

    >>> build_prelude(200, [(b"content-type", b"text/plain")], "function-url")
    b'{"statusCode":200,"headers":{"content-type":"text/plain"}}\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'

    ``exclude_headers``: lower-case names never sent (Mangum's option; build it once with
    :func:`header_names`). Raises :class:`PreludeTooLargeError` when it would not fit in Lambda's 16 KiB.
    """
    dropped = (_PRELUDE_DROPPED | exclude_headers) - {"connection"} if exclude_headers else _PRELUDE_DROPPED
    grouped = _grouped(headers, dropped)
    connection = grouped.pop("connection", None)
    if connection:  # fields named in `Connection` are hop-by-hop too (RFC 9110 7.6.1)
        for token in _connection_tokens([("connection", value) for value in connection]):
            grouped.pop(token, None)
    cookies = grouped.pop("set-cookie", [])
    prelude: dict[str, Any] = {"statusCode": status}
    if integration == "rest":
        prelude["headers"] = {k: v[0] for k, v in grouped.items() if len(v) == 1}
        multi = {k: v for k, v in grouped.items() if len(v) > 1}
        if multi:
            prelude["multiValueHeaders"] = multi
    else:
        prelude["headers"] = {k: v[0] if len(v) == 1 else ", ".join(v) for k, v in grouped.items()}
    if cookies:
        prelude["cookies"] = cookies
    encoded = _prelude_json(prelude).encode("ascii")
    if len(encoded) + len(DELIMITER) > MAX_PRELUDE_BYTES:
        raise PreludeTooLargeError(_too_large_message(len(encoded), grouped, cookies))
    return encoded + DELIMITER


# One encoder for every prelude: ``json.dumps`` with options builds a new JSONEncoder on each call.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode
_json_string = encode_basestring_ascii  # what that encoder writes for a str (C)


def _prelude_json(prelude: dict[str, Any]) -> str:
    """``_compact_json(prelude)``; the usual prelude (a status and single-valued headers) written directly,
    which spares the encoder's per-call set-up (a test checks both agree)."""
    if len(prelude) != 2 or "headers" not in prelude:
        return _compact_json(prelude)
    fields = ",".join(
        [_json_string(name) + ":" + _json_string(value) for name, value in prelude["headers"].items()]
    )
    return f'{{"statusCode":{prelude["statusCode"]:d},"headers":{{{fields}}}}}'


_names: dict[bytes, str] = {}  # response header names already decoded, lower-case (apps send the same few)


def _name_text(key: bytes) -> str:
    name = _names.get(key)
    if name is None:
        name = bytes(key).decode("latin-1").lower()
        if len(_names) < 256:
            _names[key] = name
    return name


def _too_large_message(size: int, grouped: dict[str, list[str]], cookies: list[str]) -> str:
    sizes = {name: sum(len(v) for v in values) for name, values in grouped.items()}
    if cookies:
        sizes["set-cookie"] = sum(len(c) for c in cookies)
    biggest = sorted(sizes.items(), key=lambda item: -item[1])[:3]
    listed = ", ".join(f"{name} ({n} bytes)" for name, n in biggest)
    return (
        f"response status and headers take {size + len(DELIMITER)} bytes; Lambda accepts at most "
        f"{MAX_PRELUDE_BYTES} before the body starts. Largest: {listed}"
    )


class PreludeDecoder:
    """Incremental reader of a streamed body: finds the prelude, then passes body bytes through.

    >>> d = PreludeDecoder()
    >>> d.feed(b'{"statusCode":204}' + b"\\0" * 8 + b"hi")
    b'hi'
    >>> d.prelude.status
    204
    """

    def __init__(self, max_prelude_bytes: int = MAX_PRELUDE_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_prelude_bytes
        self.prelude: Prelude | None = None

    def feed(self, data: bytes) -> bytes:
        """Take the next bytes of the stream; return the body bytes they hold (maybe none)."""
        if self.prelude is not None:
            return data
        self._buffer += data
        end = self._buffer.find(DELIMITER)
        if end < 0:
            if len(self._buffer) > self._max:
                raise PreludeTooLargeError(
                    f"no prelude delimiter (8 NUL bytes) within the first {self._max} bytes"
                )
            return b""
        self.prelude = parse_prelude(bytes(self._buffer[:end]))
        rest = bytes(self._buffer[end + len(DELIMITER) :])
        self._buffer.clear()
        return rest


def parse_prelude(data: bytes) -> Prelude:
    """Decode the JSON part of a prelude (without the delimiter)."""
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise LambdaAsgiStreamError(f"prelude is not JSON: {data[:200]!r}") from exc
    if not isinstance(raw, dict):
        raise LambdaAsgiStreamError(f"prelude is not a JSON object: {data[:200]!r}")
    headers: list[tuple[str, str]] = []
    for name, value in (raw.get("headers") or {}).items():
        headers.append((name.lower(), str(value)))
    for name, values in (raw.get("multiValueHeaders") or {}).items():
        headers.extend((name.lower(), str(v)) for v in values)
    cookies = [str(c) for c in raw.get("cookies") or []]
    return Prelude(int(raw.get("statusCode", 200)), headers, cookies, raw)


def decode_stream(data: bytes) -> tuple[Prelude, bytes]:
    """Split a complete streamed body into its prelude and payload."""
    decoder = PreludeDecoder()
    body = decoder.feed(data)
    if decoder.prelude is None:
        raise LambdaAsgiStreamError("stream ended before the prelude delimiter (8 NUL bytes)")
    return decoder.prelude, body


# --- errors ---------------------------------------------------------------------------------------


def function_error_type(exc: BaseException) -> str:
    """The ``Function.<Name>`` value for an exception, letters only (docs/wire-format.md).

    >>> function_error_type(ValueError("x"))
    'Function.ValueError'
    """
    try:
        own = getattr(exc, "error_type", None)
    except Exception:  # a hostile __getattr__: the report must still go out
        own = None
    if isinstance(own, str) and re.fullmatch(r"(Runtime|Function)\.[A-Z][a-zA-Z]+", own):
        return own
    name = _ERROR_NAME_CHARS.sub("", type(exc).__name__)
    name = name[:1].upper() + name[1:]
    return f"Function.{name}" if len(name) >= 2 else "Function.Unhandled"


def error_payload(exc: BaseException) -> dict[str, Any]:
    """The JSON error object Lambda expects (``errorMessage``, ``errorType``, ``stackTrace``).

    Never raises, whatever the exception does (a ``__str__`` that raises), and never grows past
    :data:`MAX_ERROR_REPORT_BYTES` as JSON: the message and each line are cut, and the innermost frames
    are kept.
    """
    message = text_of(exc)
    try:
        stack = traceback.format_exception(type(exc), exc, exc.__traceback__)
        lines = [_clip(line.rstrip("\n"), _MAX_STACK_LINE) for chunk in stack for line in chunk.splitlines()]
    except Exception:
        lines = [f"{type(exc).__name__}: {message}"]
    payload = {
        "errorMessage": _clip(message, _MAX_ERROR_MESSAGE),
        "errorType": type(exc).__name__,
        "stackTrace": lines[-_MAX_STACK_LINES:],
    }
    while len(json.dumps(payload, separators=(",", ":"))) > MAX_ERROR_REPORT_BYTES and payload["stackTrace"]:
        payload["stackTrace"] = payload["stackTrace"][1:]  # drop the outermost frames first
    return payload


def text_of(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception's own ``__str__`` fails."""
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + f"... ({len(text)} chars)"


def error_trailers(exc: BaseException) -> Headers:
    """The two trailers that mark a streamed invocation as failed (docs/wire-format.md, "Trailers")."""
    body = json.dumps(error_payload(exc), separators=(",", ":")).encode("utf-8")
    return [
        (ERROR_TYPE_TRAILER.encode(), function_error_type(exc).encode("ascii")),
        (ERROR_BODY_TRAILER.encode(), base64.b64encode(body)),
    ]


def read_error_trailers(trailers: Iterable[tuple[bytes, bytes]]) -> tuple[str, Any] | None:
    """The (type, decoded error object) a stream's trailers report, or None for a clean end."""
    found = {bytes(k).lower(): bytes(v) for k, v in trailers}
    error_type = found.get(ERROR_TYPE_TRAILER.lower().encode(), b"").decode("latin-1")
    if not error_type:
        return None
    raw = found.get(ERROR_BODY_TRAILER.lower().encode(), b"")
    try:
        detail: Any = json.loads(base64.b64decode(raw, validate=True))
    except ValueError:
        detail = raw.decode("latin-1")
    return error_type, detail


# --- buffered ---------------------------------------------------------------------------------------


def header_names(names: Iterable[str], option: str = "exclude_headers") -> frozenset[str]:
    """Header names as the encoder compares them (lower-case), checked once where the option is read.

    >>> sorted(header_names(["Server", "X-Powered-By"]))
    ['server', 'x-powered-by']

    Raises :class:`ConfigError` for a name that is not an RFC 9110 token (it could never match), or for
    a bare string, which would otherwise be read one character at a time.
    """
    if isinstance(names, (str, bytes)):
        raise ConfigError(f"{option} must be a list of header names, not a single string")
    checked = set()
    for name in names:
        if not isinstance(name, str) or not is_token(name.encode("latin-1", "replace")):
            raise ConfigError(f"{option}: {name!r} is not a header name")
        checked.add(name.lower())
    return frozenset(checked)


def shape_response(
    request: Request,
    status: int,
    headers: Headers,
    body: bytes,
    *,
    text_mime_types: tuple[str, ...] = DEFAULT_TEXT_MIME_TYPES,
    exclude_headers: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The buffered response dict for ``request``: the built-in shape of its integration, or the one its
    custom event handler (``events.handlers``) makes."""
    if type(request) is not HandledRequest:
        return buffered_response(
            status,
            headers,
            body,
            request.integration,
            multi_value_headers=request.multi_value_headers,
            text_mime_types=text_mime_types,
            exclude_headers=exclude_headers,
        )
    if exclude_headers:
        headers = [(k, v) for k, v in headers if bytes(k).decode("latin-1").lower() not in exclude_headers]
    assert request.handler is not None
    return request.handler.response(request, status, headers, body, text_mime_types)


def buffered_response(
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    integration: Integration,
    *,
    multi_value_headers: bool,
    text_mime_types: Iterable[str] = DEFAULT_TEXT_MIME_TYPES,
    exclude_headers: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The response dict a buffered Lambda returns, in the shape the integration expects.

    >>> buffered_response(200, [(b"content-type", b"text/plain")], b"hi", "function-url",
    ...                   multi_value_headers=False)["body"]
    'hi'

    ``text_mime_types`` replaces the defaults (as Mangum's option does): a body goes out as text when its
    content type contains one of them, else base64. ``exclude_headers``: lower-case names never sent
    (:func:`header_names`). Raises :class:`ResponseTooLargeError` over Lambda's 6 MB limit, instead of
    letting Lambda fail the invocation with a less helpful message.
    """
    grouped = _buffered_headers(headers)
    if exclude_headers:
        for name in exclude_headers:
            grouped.pop(name, None)
    text, is_base64 = _encode_body(body, grouped, tuple(text_mime_types))
    out: dict[str, Any] = {"statusCode": status}
    if integration in ("function-url", "http-api"):
        cookies = grouped.pop("set-cookie", [])
        out["headers"] = {k: ",".join(v) for k, v in grouped.items()}
        if cookies:
            out["cookies"] = cookies
    elif integration == "rest":
        out["headers"] = {k: v[0] for k, v in grouped.items() if len(v) == 1}
        out["multiValueHeaders"] = {k: v for k, v in grouped.items() if len(v) > 1}
    elif integration == "lambda-at-edge":  # checked after the common shapes: they pay nothing for it
        return _edge_response(status, grouped, text, is_base64)
    elif integration == "alb" and multi_value_headers:
        # ALB with multi-value headers on wants every header in multiValueHeaders and no `headers`
        # (ALB docs "Enable multi-value headers"; Mangum PR #187).
        out["multiValueHeaders"] = grouped
        out["statusDescription"] = _status_description(status)
    else:  # ALB single-value mode, VPC Lattice (one value per name in both event versions)
        out["headers"] = _alb_single_value_headers(grouped)
        out["statusDescription"] = _status_description(status)
    out["body"] = text
    out["isBase64Encoded"] = is_base64
    _check_size(text)
    return out


def _check_size(text: str) -> None:
    if len(text) > MAX_BUFFERED_RESPONSE_BYTES:
        raise ResponseTooLargeError(
            f"buffered response body is {len(text)} bytes after encoding; Lambda returns at most "
            f"{MAX_BUFFERED_RESPONSE_BYTES}. Stream it instead (invoke mode RESPONSE_STREAM)."
        )


# Fields CloudFront refuses in a generated response: one of them makes it answer 502 (CloudFront
# Developer Guide, "Restrictions on all edge functions", disallowed headers). Dropped rather than failed:
# the app set them for a plain HTTP server, where they were harmless.
_EDGE_DISALLOWED = frozenset(
    {
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "via",
        "x-accel-buffering",
        "x-accel-charset",
        "x-accel-limit-rate",
        "x-accel-redirect",
        "x-cache",
        "x-forwarded-proto",
        "x-real-ip",
    }
)
_EDGE_DISALLOWED_PREFIXES = ("x-amz-cf-", "x-amzn-", "x-edge-")


def _edge_response(status: int, grouped: dict[str, list[str]], text: str, is_base64: bool) -> dict[str, Any]:
    """A Lambda@Edge generated response (CloudFront Developer Guide, "Lambda@Edge event structure",
    response object): ``status`` is a string, headers are lists of ``{key, value}`` under their lower-case
    name (so repeats, Set-Cookie included, stay separate fields), ``bodyEncoding`` says ``text`` or
    ``base64``. Mangum returns an int ``status`` and ``isBase64Encoded``, which CloudFront ignores: its
    binary bodies arrive as base64 text."""
    headers = {
        name: [{"key": name, "value": value} for value in values]
        for name, values in grouped.items()
        if name not in _EDGE_DISALLOWED and not name.startswith(_EDGE_DISALLOWED_PREFIXES)
    }
    out: dict[str, Any] = {
        "status": str(status),
        "statusDescription": _status_description(status).partition(" ")[2] or str(status),
        "headers": headers,
    }
    # A 204 or 304 with a body field (even an empty one) makes CloudFront answer 502 (RFC 9110 6.4.1: these
    # have no content), so the field is left out whenever there is nothing to send.
    if text:
        out["body"] = text
        out["bodyEncoding"] = "base64" if is_base64 else "text"
    _check_size(text)
    return out


def _buffered_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    """Decoded names (lower-case) -> values, in order, without the two fields Lambda sets itself.

    In one pass, without re-decoding a name seen before.
    """
    return _grouped(headers, _BUFFERED_DROPPED)


def _grouped(headers: Iterable[tuple[bytes, bytes]], dropped: frozenset[str]) -> dict[str, list[str]]:
    """Decoded names (lower-case) -> their values, in order, leaving out the ``dropped`` names."""
    grouped: dict[str, list[str]] = {}
    for key, value in headers:
        name = _name_text(key if type(key) is bytes else bytes(key))  # ASGI allows any bytes-like
        if name in dropped:
            continue
        text = _value_text(value if type(value) is bytes else bytes(value))
        values = grouped.get(name)
        if values is None:
            grouped[name] = [text]
        else:
            values.append(text)
    return grouped


# A streamed prelude drops the hop-by-hop fields (``connection`` is read first, for the fields it names);
# a buffered response only the two Lambda sets itself.
# Both drop x-lambda-padding, the app's word to the padding flusher: never sent, whatever the mode.
_PRELUDE_DROPPED = (HOP_BY_HOP - {"connection"}) | {PADDING_HEADER}
_BUFFERED_DROPPED = frozenset({"transfer-encoding", "connection", PADDING_HEADER})


def _encode_body(body: bytes, grouped: dict[str, list[str]], text_types: tuple[str, ...]) -> tuple[str, bool]:
    if not body:
        return "", False
    content_type = grouped["content-type"][0].lower() if "content-type" in grouped else ""
    if "content-encoding" not in grouped:  # gzip'd text is binary on the wire
        for t in text_types:
            if t in content_type:
                try:
                    return body.decode("utf-8"), False
                except UnicodeDecodeError:
                    break
    return base64.b64encode(body).decode("ascii"), True


def _alb_single_value_headers(grouped: dict[str, list[str]]) -> dict[str, str]:
    # Without multi-value mode ALB takes one value per name; it matches names case-insensitively but
    # keeps distinct spellings, so repeated Set-Cookie values go out as set-cookie, Set-cookie, ...
    # (Mangum #185/#186). Other repeats are comma-joined, which RFC 9110 5.3 allows.
    out: dict[str, str] = {}
    for name, values in grouped.items():
        if name != "set-cookie":
            out[name] = ",".join(values)
            continue
        for i, value in enumerate(values):
            out[_case_variant(name, i)] = value
    return out


def _case_variant(name: str, n: int) -> str:
    letters = list(name)
    positions = [i for i, c in enumerate(letters) if c.isalpha()]
    for bit, pos in enumerate(positions):
        if n >> bit & 1:
            letters[pos] = letters[pos].upper()
    return "".join(letters)


def _status_description(status: int) -> str:
    try:
        from http import HTTPStatus  # only ALB wants the phrase: off the cold path

        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def decode_buffered_response(payload: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """What an HTTP client receives for a buffered response dict (for the emulator and test transport).

    Payload 2.0 rules (Function URL and HTTP API docs, "Response payload"): a value that is not an
    object with ``statusCode`` is sent as a ``200`` JSON body.
    """
    if isinstance(payload, dict) and "status" in payload and "statusCode" not in payload:
        return _decode_edge_response(payload)
    if not isinstance(payload, dict) or "statusCode" not in payload:
        body = json.dumps(payload).encode("utf-8")
        return 200, [("content-type", "application/json")], body
    headers: list[tuple[str, str]] = []
    multi = payload.get("multiValueHeaders") or {}
    for name, value in (payload.get("headers") or {}).items():
        if name not in multi:
            headers.append((name.lower(), str(value)))
    for name, values in multi.items():
        headers.extend((name.lower(), str(v)) for v in values)
    headers.extend(("set-cookie", str(c)) for c in payload.get("cookies") or [])
    raw = payload.get("body") or ""
    if payload.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = raw.encode("utf-8") if isinstance(raw, str) else json.dumps(raw).encode("utf-8")
    return int(payload["statusCode"]), headers, body


def _decode_edge_response(payload: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [
        (name.lower(), str(entry.get("value", "")))
        for name, entries in (payload.get("headers") or {}).items()
        for entry in entries
    ]
    raw = payload.get("body") or ""
    body = base64.b64decode(raw) if payload.get("bodyEncoding") == "base64" else str(raw).encode("utf-8")
    return int(payload["status"]), headers, body
