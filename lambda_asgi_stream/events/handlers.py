"""Your own event sources: the equivalent of Mangum's ``custom_handlers``.

An :class:`EventHandler` recognises an event, turns it into a :class:`Request`, and shapes the buffered
response for it. Handlers given to :func:`parse_event` (or to ``Adapter(custom_handlers=[...])``) are
tried in order before the built-in formats, so one can also take over a built-in source::

    class KongHandler:
        def matches(self, event, context):
            return "kong" in event

        def parse(self, event, context, base_path):
            scope = {...}  # a complete ASGI HTTP scope
            return Request(scope, b"", "custom", multi_value_headers=False, streamable=False)

        def response(self, request, status, headers, body, text_mime_types):
            return {"code": status, "body": body.decode()}

A handler's requests are always answered buffered (its ``response`` shapes a dict). Handlers written
for Mangum (classes with ``infer``, ``scope``, ``body`` and ``__call__``) work too: see
:func:`event_handlers`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from .._errors import ConfigError
from .._types import Headers
from .request import HandledRequest, Request


@runtime_checkable
class EventHandler(Protocol):
    """Reads one kind of event and shapes its responses."""

    def matches(self, event: dict[str, Any], context: Any) -> bool:
        """Whether this handler reads ``event``. Must be cheap: it runs for every event."""
        ...

    def parse(self, event: dict[str, Any], context: Any, base_path: str) -> Request:
        """The request the event carries. ``base_path`` is the configured one (``""``: none), normalised.

        Raise :class:`~lambda_asgi_stream.MalformedEventError` for a broken event.
        """
        ...

    def response(
        self, request: Request, status: int, headers: Headers, body: bytes, text_mime_types: tuple[str, ...]
    ) -> dict[str, Any]:
        """The value the function returns for the app's response.

        ``headers`` are the app's, minus the configured ``exclude_headers``; ``text_mime_types`` are the
        configured content types whose bodies may travel as text (``encoder.buffered_response`` shows
        one way to use them).
        """
        ...


def event_handlers(
    handlers: Iterable[Any] | None,
    *,
    base_path: str = "",
    text_mime_types: Sequence[str] = (),
    exclude_headers: Iterable[str] = (),
) -> tuple[EventHandler, ...]:
    """Check a ``custom_handlers`` list once, at construction, wrapping Mangum-style handler classes.

    The keyword arguments are what a Mangum handler reads from its ``config``. Raises
    :class:`ConfigError` for an entry that is neither kind.
    """
    config = {
        "api_gateway_base_path": base_path or "/",
        "text_mime_types": list(text_mime_types),
        "exclude_headers": [name.lower() for name in exclude_headers],
    }
    checked: list[EventHandler] = []
    for handler in handlers or ():
        if isinstance(handler, type) and callable(getattr(handler, "infer", None)):
            checked.append(MangumHandler(handler, config))
        elif isinstance(handler, EventHandler) and not isinstance(handler, type):
            checked.append(handler)
        else:
            raise ConfigError(
                f"custom handler {handler!r} is neither an EventHandler (an object with matches, parse "
                "and response) nor a Mangum handler class (with infer, scope, body and __call__)"
            )
    return tuple(checked)


class MangumHandler:
    """A handler class written for Mangum 0.17+ (``mangum.types.LambdaHandler``), as an EventHandler.

    Mangum builds one instance per event with ``cls(event, context, config)``, reads ``.scope`` and
    ``.body``, and calls the instance with ``{"status", "headers", "body"}`` for the response dict.
    """

    def __init__(self, cls: type[Any], config: dict[str, Any]) -> None:
        self.cls = cls
        self.config = config

    def __repr__(self) -> str:
        return f"MangumHandler({self.cls.__qualname__})"

    def matches(self, event: dict[str, Any], context: Any) -> bool:
        return bool(self.cls.infer(event, context, self.config))

    def parse(self, event: dict[str, Any], context: Any, base_path: str) -> Request:
        instance = self.cls(event, context, self.config)
        scope = dict(instance.scope)
        scope.setdefault("aws.event", event)
        scope.setdefault("aws.context", context)
        body = bytes(instance.body or b"")
        return HandledRequest(scope, body, "custom", False, False, handler=None, extra=instance)

    def response(
        self, request: Request, status: int, headers: Headers, body: bytes, text_mime_types: tuple[str, ...]
    ) -> dict[str, Any]:
        response = {"status": status, "headers": [[k, v] for k, v in headers], "body": body}
        assert isinstance(request, HandledRequest)
        result: dict[str, Any] = request.extra(response)
        return result
