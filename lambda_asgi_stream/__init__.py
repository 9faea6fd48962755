"""Stream any ASGI app from AWS Lambda, in-process, with no sidecar.

Run it with the runtime loop (``lambda-asgi-stream run main:app``, see README), or use
``handler = Adapter(app)`` for the buffered Python managed runtime.
"""

from __future__ import annotations

from ._errors import (
    AppImportError,
    ASGIProtocolError,
    ConfigError,
    DeadlineExceeded,
    EventError,
    EventStreamFormatError,
    IncompleteStreamError,
    InvocationError,
    LambdaAsgiStreamError,
    MalformedEventError,
    PreludeTooLargeError,
    ResponseError,
    ResponseTooLargeError,
    RuntimeAPIError,
    RuntimeAPIStatusError,
    StartupError,
    StreamTruncatedError,
    UnsupportedEventError,
)
from ._version import __version__
from .config import Config
from .events import Request, parse_event
from .hooks import after_invocation, remove_after_invocation
from .padding import flush
from .runtime_api import LambdaContext

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .adapter import Adapter


def __getattr__(name: str) -> object:
    # The Adapter (a shell) loads asyncio: imported on first use, so that importing the package, and the
    # runtime loop's cold path, load no async stack they do not use.
    if name == "Adapter":
        from .adapter import Adapter

        return Adapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Adapter",
    "AppImportError",
    "ASGIProtocolError",
    "Config",
    "ConfigError",
    "DeadlineExceeded",
    "EventError",
    "EventStreamFormatError",
    "IncompleteStreamError",
    "InvocationError",
    "LambdaAsgiStreamError",
    "LambdaContext",
    "MalformedEventError",
    "PreludeTooLargeError",
    "Request",
    "ResponseError",
    "ResponseTooLargeError",
    "RuntimeAPIError",
    "RuntimeAPIStatusError",
    "StartupError",
    "StreamTruncatedError",
    "UnsupportedEventError",
    "__version__",
    "after_invocation",
    "flush",
    "parse_event",
    "remove_after_invocation",
]
