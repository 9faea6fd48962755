"""One exception tree for everything lambda-asgi-stream raises on purpose.

    LambdaAsgiStreamError
    ├── EventError                  an invocation event cannot become an HTTP request
    │   ├── UnsupportedEventError   not an HTTP event at all (an SQS batch, a scheduled event, ...)
    │   └── MalformedEventError     an HTTP event with a missing or ill-typed field
    ├── ResponseError               the app's response cannot be put on the wire
    │   ├── ASGIProtocolError       messages out of ASGI order, or a response never finished
    │   ├── PreludeTooLargeError    status + headers + cookies over the 16 KiB prelude limit
    │   └── ResponseTooLargeError   a buffered response over Lambda's 6 MB payload limit
    ├── DeadlineExceeded            the invocation's deadline (minus the safety margin) passed
    ├── StreamTruncatedError        a reader saw a stream end with error trailers (testing, emulator)
    ├── InvocationError             an Invoke API call reported a function error (client: ErrorCode ...)
    │   └── IncompleteStreamError   an InvokeWithResponseStream stream ended without InvokeComplete
    ├── EventStreamFormatError      bytes that are not a valid application/vnd.amazon.eventstream
    ├── EndRecordError              a body's end record is missing or wrong: the body is not whole
    ├── ProbeError                  `lambda-asgi-stream probe`: a bad plan, or no probe answered
    ├── ConfigError                 bad configuration: app import string, environment variables
    │   └── AppImportError          the app's module or attribute cannot be imported
    ├── StartupError                the app's lifespan startup failed
    └── RuntimeAPIError             talking to the Lambda Runtime API failed
        └── RuntimeAPIStatusError   it answered with an unexpected HTTP status

Each error that is reported to Lambda carries ``error_type``: the value sent in
``Lambda-Runtime-Function-Error-Type``. Lambda Managed Instances accept only values matching
``(Runtime|Function)\\.[A-Z][a-zA-Z]+`` and record anything else as ``Runtime.Unknown``
(docs/wire-format.md, "Reporting errors"), so every type here is letters only. The list of types and
what each means: docs/failure-policy.md, "Error types".
"""

from __future__ import annotations

from collections.abc import Iterable


class LambdaAsgiStreamError(Exception):
    """Base class of every error this package raises on purpose."""

    error_type = "Function.LambdaAsgiStreamError"


class EventError(LambdaAsgiStreamError, ValueError):
    """An invocation event cannot be turned into an HTTP request."""

    error_type = "Function.InvalidEvent"


class UnsupportedEventError(EventError):
    """The event is not from Function URLs, API Gateway or ALB. Names the keys it saw."""

    error_type = "Function.UnsupportedEvent"

    def __init__(self, message: str, keys: Iterable[str] = ()) -> None:
        self.keys = sorted(keys)
        if self.keys:
            message = f"{message} (top-level keys: {', '.join(self.keys)})"
        super().__init__(message)


class MalformedEventError(EventError):
    """An HTTP event with a field that is missing or of the wrong type. Names the field."""

    error_type = "Function.MalformedEvent"

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"event field {field!r}: {problem}")


class ResponseError(LambdaAsgiStreamError):
    """The app's response cannot be encoded for Lambda."""

    error_type = "Function.ResponseError"


class ASGIProtocolError(ResponseError, RuntimeError):
    """The app broke ASGI message order, or returned without finishing its response."""

    error_type = "Function.ASGIProtocolError"


class PreludeTooLargeError(ResponseError):
    """The streaming prelude (status, headers, cookies) is over the 16 KiB Lambda accepts."""

    error_type = "Function.PreludeTooLarge"


class ResponseTooLargeError(ResponseError):
    """A buffered response is over Lambda's 6 MB invocation payload limit."""

    error_type = "Function.ResponseSizeTooLarge"


class DeadlineExceeded(LambdaAsgiStreamError, TimeoutError):
    """The app ran into the invocation deadline minus the configured safety margin."""

    error_type = "Function.Timeout"


class StreamTruncatedError(LambdaAsgiStreamError):
    """A streamed response ended with error trailers: the body a reader holds is incomplete."""

    error_type = "Function.StreamTruncated"

    def __init__(self, remote_error_type: str, remote_error: object) -> None:
        self.remote_error_type = remote_error_type
        self.remote_error = remote_error
        super().__init__(f"stream ended with {remote_error_type}: {remote_error}")


class InvocationError(LambdaAsgiStreamError):
    """An invocation through Lambda's Invoke API failed in the function (the client helpers raise it).

    ``error_code`` and ``error_details`` are ``InvokeComplete``'s ``ErrorCode`` and ``ErrorDetails`` for a
    streamed invocation, or the ``X-Amz-Function-Error`` value and the error object's message for a
    buffered one (``error_object`` holds the decoded error object when there is one).
    """

    error_type = "Function.InvocationError"

    def __init__(
        self,
        error_code: str,
        error_details: str,
        *,
        log_result: str | None = None,
        error_object: object = None,
    ) -> None:
        self.error_code = error_code
        self.error_details = error_details
        self.log_result = log_result
        self.error_object = error_object
        super().__init__(f"{error_code}: {error_details}" if error_code else error_details)


class IncompleteStreamError(InvocationError):
    """A streamed invocation ended without its ``InvokeComplete`` event: the body is not known whole."""

    error_type = "Function.IncompleteStream"

    def __init__(self, message: str) -> None:
        super().__init__("", message)


class EventStreamFormatError(LambdaAsgiStreamError, ValueError):
    """Bytes that are not valid ``application/vnd.amazon.eventstream``, or a value it cannot carry."""

    error_type = "Function.EventStreamFormat"


class EndRecordError(LambdaAsgiStreamError):
    """A streamed body's end record is missing or does not match the body: the body is not known whole.

    ``reason``: ``missing`` (cut, or never opted in), ``count`` or ``hash`` (the body was altered).
    """

    error_type = "Function.EndRecordMismatch"

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class ProbeError(LambdaAsgiStreamError, ValueError):
    """A probe of Lambda's hold-back could not be made: a malformed plan, or no probe answered."""

    error_type = "Function.ProbeError"


class ConfigError(LambdaAsgiStreamError, ValueError):
    """Bad configuration: an app import string, an environment variable."""

    error_type = "Runtime.ConfigError"


class AppImportError(ConfigError):
    """``MODULE:APP`` cannot be imported. Same type name as Lambda's own Python runtime uses."""

    error_type = "Runtime.ImportModuleError"


class StartupError(LambdaAsgiStreamError):
    """The app's ASGI lifespan startup failed (``lifespan.startup.failed`` or an exception)."""

    error_type = "Function.StartupError"


class RuntimeAPIError(LambdaAsgiStreamError, OSError):
    """The Lambda Runtime API could not be reached or spoke nonsense."""

    error_type = "Runtime.RuntimeAPIError"


class RuntimeAPIStatusError(RuntimeAPIError):
    """The Runtime API answered a request with an unexpected status."""

    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        text = body[:300].decode("utf-8", "replace")
        super().__init__(f"{method} {path} answered {status}: {text}")
