"""The Lambda Runtime API as values: request paths and headers, invocations, the Lambda context. No I/O.

Every call the runtime loop makes is built here as an :class:`APIRequest`, so it can be checked without a
server (the Rust runtime's ``requests.rs`` habit); the header names live here and nowhere else (the Go
runtime's ``runtime_api_client.go``). Paths and headers: docs/wire-format.md, "The Runtime API calls".
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ._errors import ResponseTooLargeError, RuntimeAPIError
from ._types import Record
from ._version import __version__
from .encoder import (
    ERROR_BODY_TRAILER,
    ERROR_TYPE_TRAILER,
    MAX_BUFFERED_RESPONSE_BYTES,
    PRELUDE_CONTENT_TYPE,
    error_payload,
    function_error_type,
)

API_VERSION = "2018-06-01"

REQUEST_ID = "lambda-runtime-aws-request-id"
DEADLINE_MS = "lambda-runtime-deadline-ms"
FUNCTION_ARN = "lambda-runtime-invoked-function-arn"
TRACE_ID = "lambda-runtime-trace-id"
CLIENT_CONTEXT = "lambda-runtime-client-context"
COGNITO_IDENTITY = "lambda-runtime-cognito-identity"
TENANT_ID = "lambda-runtime-aws-tenant-id"

RESPONSE_MODE = "Lambda-Runtime-Function-Response-Mode"
ERROR_TYPE = ERROR_TYPE_TRAILER  # a header on /error, a trailer on a streamed /response

USER_AGENT = f"lambda-asgi-stream/{__version__} (python/{sys.version_info[0]}.{sys.version_info[1]})"


class APIRequest(Record):
    """One Runtime API call. ``body is None`` means a chunked body the caller streams."""

    __slots__ = ("body", "expected_status", "headers", "method", "path")

    def __init__(
        self,
        method: str,
        path: str,
        headers: tuple[tuple[str, str], ...],
        body: bytes | None = b"",
        expected_status: int = 202,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.expected_status = expected_status


def _base_headers() -> tuple[tuple[str, str], ...]:
    return (("User-Agent", USER_AGENT),)


def next_invocation() -> APIRequest:
    """``GET .../invocation/next``: the long poll. Never put a timeout on it (runtimes-api docs)."""
    return APIRequest("GET", f"/{API_VERSION}/runtime/invocation/next", _base_headers(), b"", 200)


def restore_next() -> APIRequest:
    """``GET .../restore/next``: SnapStart's wait for the restore, before the first ``next``."""
    return APIRequest("GET", f"/{API_VERSION}/runtime/restore/next", _base_headers(), b"", 200)


_PLAIN_ID = re.compile(r"[A-Za-z0-9._~-]+")


def _invocation_path(request_id: str, action: str) -> str:
    # The Node client URL-encodes the id; ids are UUIDs today, but a path must stay a path.
    if not _PLAIN_ID.fullmatch(request_id):
        from urllib.parse import quote  # here: ~2 ms to import (with ipaddress), and ids are plain UUIDs

        request_id = quote(request_id, safe="")
    return f"/{API_VERSION}/runtime/invocation/{request_id}/{action}"


# Headers as AWS's Node client sends them (shared golden captures): the response mode, the prelude content
# type and one ``Trailer`` line per trailer.
_STREAMING_HEADERS = (
    *_base_headers(),
    (RESPONSE_MODE, "streaming"),
    ("Content-Type", PRELUDE_CONTENT_TYPE),
    ("Transfer-Encoding", "chunked"),
    ("Trailer", ERROR_TYPE_TRAILER),
    ("Trailer", ERROR_BODY_TRAILER),
)


def streaming_response(request_id: str) -> APIRequest:
    """The streaming ``POST .../response``: chunked body, error trailers declared up front."""
    return APIRequest("POST", _invocation_path(request_id, "response"), _STREAMING_HEADERS, None)


def buffered_response(request_id: str, payload: Any) -> APIRequest:
    """The buffered ``POST .../response`` with a JSON document."""
    headers = (*_base_headers(), ("Content-Type", "application/json"))
    return APIRequest("POST", _invocation_path(request_id, "response"), headers, encode_buffered(payload))


# One encoder for every buffered response: ``json.dumps`` with options builds a new one on each call.
_utf8_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_buffered(payload: Any) -> bytes:
    """A buffered response document as Lambda receives it, checked against its 6 MB limit.

    The limit is on this serialized document, not on the body inside it (JSON escaping and base64 both
    grow it); over the limit Lambda answers 413 and the client gets a bare 502, so it is refused here
    with an error that says why.
    """
    # ensure_ascii=False: "\uXXXX" escapes would triple non-ASCII text and push valid responses over
    # the limit (AWS's own Python runtime sends UTF-8 JSON too).
    body = _utf8_json(payload).encode("utf-8")
    if len(body) > MAX_BUFFERED_RESPONSE_BYTES:
        raise ResponseTooLargeError(
            f"the buffered response is {len(body)} bytes as JSON; Lambda accepts at most "
            f"{MAX_BUFFERED_RESPONSE_BYTES} (6 MB). Stream it instead (invoke mode RESPONSE_STREAM)."
        )
    return body


def _error_request(path: str, exc: BaseException) -> APIRequest:
    body = json.dumps(error_payload(exc), separators=(",", ":")).encode("utf-8")
    headers = (
        *_base_headers(),
        ("Content-Type", "application/json"),
        (ERROR_TYPE, function_error_type(exc)),
    )
    return APIRequest("POST", path, headers, body)


def invocation_error(request_id: str, exc: BaseException) -> APIRequest:
    """``POST .../error``: the invocation failed before any response was sent."""
    return _error_request(_invocation_path(request_id, "error"), exc)


def init_error(exc: BaseException) -> APIRequest:
    """``POST /runtime/init/error``: the app could not be imported or its lifespan startup failed."""
    return _error_request(f"/{API_VERSION}/runtime/init/error", exc)


EXTENSION_API_VERSION = "2020-01-01"


def register_extension(name: str) -> APIRequest:
    """``POST /2020-01-01/extension/register`` for an internal extension that takes no events.

    Lambda sends SIGTERM to the runtime at shutdown only when an extension is registered; without one the
    process gets SIGKILL and lifespan shutdown never runs (aws-lambda-go ``lambda/sigterm.go`` registers
    ``GoLangEnableSIGTERM`` the same way; runtimes-extensions-api docs, "Shutdown phase").
    """
    headers = (*_base_headers(), ("Lambda-Extension-Name", name), ("Content-Type", "application/json"))
    return APIRequest("POST", f"/{EXTENSION_API_VERSION}/extension/register", headers, b'{"events":[]}', 200)


def extension_next(extension_id: str) -> APIRequest:
    """``GET /2020-01-01/extension/event/next``: marks the extension initialised; with no events it never
    returns, so it is called once, in the background, and cancelled at shutdown."""
    headers = (*_base_headers(), ("Lambda-Extension-Identifier", extension_id))
    return APIRequest("GET", f"/{EXTENSION_API_VERSION}/extension/event/next", headers, b"", 200)


class Invocation(Record):
    """What ``next`` delivered: the event bytes and the per-invocation headers."""

    __slots__ = (
        "client_context",
        "cognito_identity",
        "deadline_ms",
        "event",
        "invoked_function_arn",
        "request_id",
        "tenant_id",
        "trace_id",
    )

    def __init__(
        self,
        request_id: str,
        deadline_ms: int,
        event: bytes,
        invoked_function_arn: str = "",
        trace_id: str = "",
        client_context: str = "",
        cognito_identity: str = "",
        tenant_id: str = "",
    ) -> None:
        self.request_id = request_id
        self.deadline_ms = deadline_ms
        self.event = event
        self.invoked_function_arn = invoked_function_arn
        self.trace_id = trace_id
        self.client_context = client_context
        self.cognito_identity = cognito_identity
        self.tenant_id = tenant_id

    @classmethod
    def from_next(
        cls, headers: Iterable[tuple[bytes, bytes]], body: bytes, *, lowered: bool = False
    ) -> Invocation:
        """Build from the raw ``next`` reply. A reply without a request id is a Runtime API fault.

        ``lowered``: the header names are lower-case already (as ``http1`` gives them).
        """
        found = dict(headers) if lowered else {bytes(k).lower(): v for k, v in headers}
        request_id = _text(found, _REQUEST_ID_KEY)
        if not request_id:
            raise RuntimeAPIError(f"next reply carries no {REQUEST_ID} header")
        deadline = found.get(_DEADLINE_MS_KEY, b"")
        return cls(
            request_id=request_id,
            deadline_ms=int(deadline) if deadline.isdigit() else 0,
            event=body,
            invoked_function_arn=_text(found, _FUNCTION_ARN_KEY),
            trace_id=_text(found, _TRACE_ID_KEY),
            client_context=_text(found, _CLIENT_CONTEXT_KEY),
            cognito_identity=_text(found, _COGNITO_IDENTITY_KEY),
            tenant_id=_text(found, _TENANT_ID_KEY),
        )

    def remaining_ms(self, now_ms: float | None = None) -> int:
        """Milliseconds left before Lambda stops this invocation (0 once past, or with no deadline)."""
        if not self.deadline_ms:
            return 0
        now = time.time() * 1000 if now_ms is None else now_ms
        return max(0, int(self.deadline_ms - now))


# The reply's header names as the parser gives them (lower-case bytes), encoded once.
_REQUEST_ID_KEY = REQUEST_ID.encode()
_DEADLINE_MS_KEY = DEADLINE_MS.encode()
_FUNCTION_ARN_KEY = FUNCTION_ARN.encode()
_TRACE_ID_KEY = TRACE_ID.encode()
_CLIENT_CONTEXT_KEY = CLIENT_CONTEXT.encode()
_COGNITO_IDENTITY_KEY = COGNITO_IDENTITY.encode()
_TENANT_ID_KEY = TENANT_ID.encode()


def _text(found: Mapping[bytes, bytes], name: bytes) -> str:
    value = found.get(name)
    return "" if value is None else bytes(value).decode("latin-1")


class CognitoIdentity:
    """``context.identity`` of Lambda's Python runtime."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.cognito_identity_id = raw.get("cognitoIdentityId")
        self.cognito_identity_pool_id = raw.get("cognitoIdentityPoolId")


class ClientContext:
    """``context.client_context`` of Lambda's Python runtime."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.client = raw.get("client")
        self.custom = raw.get("custom")
        self.env = raw.get("env")


def _json_object(text: str) -> Mapping[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class LambdaContext:
    """The ``context`` Lambda's Python runtime passes to handlers, built from an :class:`Invocation`.

    Apps reach it as ``scope["aws.context"]`` (Mangum's key)::

        remaining = request.scope["aws.context"].get_remaining_time_in_millis()
    """

    #: The variables a context reads: they do not change during the life of the execution environment.
    ENVIRONMENT = (
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
    )

    @classmethod
    def environment(cls, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The variables a context reads, read once (a loop passes them to every context it makes)."""
        env = os.environ if environ is None else environ
        return {name: env[name] for name in cls.ENVIRONMENT if name in env}

    def __init__(self, invocation: Invocation, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._invocation = invocation
        self.aws_request_id = invocation.request_id
        self.invoked_function_arn = invocation.invoked_function_arn
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0") or 0)
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.tenant_id = invocation.tenant_id or None
        self.xray_trace_id = invocation.trace_id or None
        identity = _json_object(invocation.cognito_identity)
        client = _json_object(invocation.client_context)
        self.identity = CognitoIdentity(identity) if identity is not None else None
        self.client_context = ClientContext(client) if client is not None else None

    @property
    def deadline_ms(self) -> int:
        return self._invocation.deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until Lambda stops this invocation, like the managed runtime's context."""
        return self._invocation.remaining_ms()

    def __repr__(self) -> str:
        return f"LambdaContext(aws_request_id={self.aws_request_id!r})"
