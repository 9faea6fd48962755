"""ASGI response values -> the bytes Lambda expects, and back again for readers. No I/O.

Streaming (protocol.md 2.2): the body of the ``/response`` POST is ``JSON(prelude)``, then exactly 8 NUL
bytes, then the raw payload. JSON never holds a raw NUL (control characters are escaped), so the first run
of 8 NULs is the delimiter. The prelude must fit in the first 16 KiB of the stream (API Gateway docs,
protocol.md 2.2).

Prelude shapes, one per integration:

* Function URL (and ``InvokeWithResponseStream``): ``statusCode``, ``headers`` (one string per name,
  repeats comma-joined) and ``cookies`` (each ``Set-Cookie`` value). Function URLs do not document
  ``multiValueHeaders`` nor array-valued ``headers`` (protocol.md 8, open question 1), so we never send
  either there: that is the safe path.
* API Gateway REST ``STREAM``: the same, plus ``multiValueHeaders`` for names that repeat (the docs
  format block lists ``headers``, ``multiValueHeaders`` and ``cookies``; Go's
  ``APIGatewayProxyStreamingResponse``).

``Set-Cookie`` is never comma-joined: ``Expires=Wed, 21 Oct ...`` holds a comma (lessons.md 3.5).

Buffered: the Mangum-compatible response dicts (``cookies`` for payload 2.0, ``multiValueHeaders`` for
REST, ``headers`` or ``multiValueHeaders`` for ALB as the target group is configured), base64 for bodies
that are not text.

Errors: :func:`error_trailers` builds the ``Lambda-Runtime-Function-Error-Type`` / ``-Body`` pair sent as
HTTP trailers after the last chunk (protocol.md 2.4): base64 of a JSON error object, because raw CR/LF in a
trailer would break the framing.
"""

from __future__ import annotations

import base64
import json
import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from ._errors import LambdaAsgiStreamError, PreludeTooLargeError, ResponseTooLargeError
from ._types import Headers, Integration

DELIMITER = b"\x00" * 8
MAX_PRELUDE_BYTES = 16 * 1024
# Lambda's invocation payload limit for buffered responses: 6 MB (docs "Lambda quotas").
MAX_BUFFERED_RESPONSE_BYTES = 6 * 1024 * 1024

ERROR_TYPE_TRAILER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
PRELUDE_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"

# RFC 9110 7.6.1 hop-by-hop fields, plus content-length: a streamed response is chunked by Lambda, and a
# length that disagrees with the bytes sent would corrupt the client's framing (lessons.md 3.11).
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
_MAX_ERROR_MESSAGE = 4096
_MAX_STACK_LINES = 50


def _decode_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(bytes(k).decode("latin-1").lower(), _value_text(bytes(v))) for k, v in headers]


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


def _group(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped


def _connection_tokens(pairs: list[tuple[str, str]]) -> set[str]:
    # Fields named in `Connection` are hop-by-hop too (RFC 9110 7.6.1).
    return {
        token.strip().lower()
        for name, value in pairs
        if name == "connection"
        for token in value.split(",")
        if token.strip()
    }


@dataclass(frozen=True, slots=True)
class Prelude:
    """A decoded streaming prelude, as a reader (emulator, test transport) sees it."""

    status: int
    headers: list[tuple[str, str]]
    cookies: list[str]
    raw: dict[str, Any] = field(repr=False)


def build_prelude(status: int, headers: Iterable[tuple[bytes, bytes]], integration: Integration) -> bytes:
    """Encode ``http.response.start`` as the streaming prelude, delimiter included.

    >>> build_prelude(200, [(b"content-type", b"text/plain")], "function-url")
    b'{"statusCode":200,"headers":{"content-type":"text/plain"}}\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'

    Raises :class:`PreludeTooLargeError` when it would not fit in Lambda's 16 KiB.
    """
    pairs = _decode_headers(headers)
    dropped = HOP_BY_HOP | _connection_tokens(pairs)
    grouped = _group([(k, v) for k, v in pairs if k not in dropped])
    cookies = grouped.pop("set-cookie", [])
    prelude: dict[str, Any] = {"statusCode": status}
    if integration == "rest":
        prelude["headers"] = {k: v[0] for k, v in grouped.items() if len(v) == 1}
        multi = {k: v for k, v in grouped.items() if len(v) > 1}
        if multi:
            prelude["multiValueHeaders"] = multi
    else:
        prelude["headers"] = {k: ", ".join(v) for k, v in grouped.items()}
    if cookies:
        prelude["cookies"] = cookies
    encoded = json.dumps(prelude, separators=(",", ":")).encode("ascii")
    if len(encoded) + len(DELIMITER) > MAX_PRELUDE_BYTES:
        raise PreludeTooLargeError(_too_large_message(len(encoded), grouped, cookies))
    return encoded + DELIMITER


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
    """The ``Function.<Name>`` value for an exception, letters only (protocol.md 1.2).

    >>> function_error_type(ValueError("x"))
    'Function.ValueError'
    """
    own = getattr(exc, "error_type", None)
    if isinstance(own, str) and re.fullmatch(r"(Runtime|Function)\.[A-Z][a-zA-Z]+", own):
        return own
    name = _ERROR_NAME_CHARS.sub("", type(exc).__name__)
    name = name[:1].upper() + name[1:]
    return f"Function.{name}" if len(name) >= 2 else "Function.Unhandled"


def error_payload(exc: BaseException) -> dict[str, Any]:
    """The JSON error object Lambda expects (``errorMessage``, ``errorType``, ``stackTrace``)."""
    stack = traceback.format_exception(type(exc), exc, exc.__traceback__)
    lines = [line.rstrip("\n") for chunk in stack for line in chunk.splitlines()]
    return {
        "errorMessage": str(exc)[:_MAX_ERROR_MESSAGE],
        "errorType": type(exc).__name__,
        "stackTrace": lines[-_MAX_STACK_LINES:],
    }


def error_trailers(exc: BaseException) -> Headers:
    """The two trailers that mark a streamed invocation as failed (protocol.md 2.4)."""
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


def buffered_response(
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    integration: Integration,
    *,
    multi_value_headers: bool,
    text_mime_types: Iterable[str] = DEFAULT_TEXT_MIME_TYPES,
) -> dict[str, Any]:
    """The response dict a buffered Lambda returns, in the shape the integration expects.

    >>> buffered_response(200, [(b"content-type", b"text/plain")], b"hi", "function-url",
    ...                   multi_value_headers=False)["body"]
    'hi'

    Raises :class:`ResponseTooLargeError` over Lambda's 6 MB limit, instead of letting Lambda fail
    the invocation with a less helpful message.
    """
    grouped = _buffered_headers(headers)
    text, is_base64 = _encode_body(body, grouped, tuple(text_mime_types))
    out: dict[str, Any] = {"statusCode": status}
    if integration in ("function-url", "http-api"):
        cookies = grouped.pop("set-cookie", [])
        out["headers"] = {k: ",".join(v) for k, v in grouped.items()}
        if cookies:
            out["cookies"] = cookies
    elif integration == "rest" or multi_value_headers:
        single = {k: v[0] for k, v in grouped.items() if len(v) == 1}
        multi = {k: v for k, v in grouped.items() if len(v) > 1}
        if integration == "alb":
            # ALB with multi-value headers on wants every header in multiValueHeaders and no `headers`
            # (ALB docs "Enable multi-value headers"; Mangum PR #187).
            out["multiValueHeaders"] = grouped
            out["statusDescription"] = _status_description(status)
        else:
            out["headers"] = single
            out["multiValueHeaders"] = multi
    else:
        out["headers"] = _alb_single_value_headers(grouped)
        out["statusDescription"] = _status_description(status)
    out["body"] = text
    out["isBase64Encoded"] = is_base64
    if len(text) > MAX_BUFFERED_RESPONSE_BYTES:
        raise ResponseTooLargeError(
            f"buffered response body is {len(text)} bytes after encoding; Lambda returns at most "
            f"{MAX_BUFFERED_RESPONSE_BYTES}. Stream it instead (invoke mode RESPONSE_STREAM)."
        )
    return out


# Response header names already seen, decoded and lower-cased (apps send the same few names every time).
_response_names: dict[bytes, str] = {}
_RESPONSE_NAMES_MAX = 256


def _buffered_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    """Decoded names (lower-case) -> values, in order, without the two fields Lambda sets itself.

    The same as ``_group(_decode_headers(headers))`` minus those, in one pass and without re-decoding
    a name seen before.
    """
    grouped: dict[str, list[str]] = {}
    names = _response_names
    for key, value in headers:
        if type(key) is not bytes:  # ASGI allows any bytes-like; the cycle always passes bytes
            key = bytes(key)
        name = names.get(key)
        if name is None:
            name = key.decode("latin-1").lower()
            if len(names) < _RESPONSE_NAMES_MAX:
                names[key] = name
        if name == "transfer-encoding" or name == "connection":
            continue
        text = _value_text(value if type(value) is bytes else bytes(value))
        values = grouped.get(name)
        if values is None:
            grouped[name] = [text]
        else:
            values.append(text)
    return grouped


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
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def decode_buffered_response(payload: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """What an HTTP client receives for a buffered response dict (for the emulator and test transport).

    Payload 2.0 rules (Function URL and HTTP API docs, "Response payload"): a value that is not an
    object with ``statusCode`` is sent as a ``200`` JSON body.
    """
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
