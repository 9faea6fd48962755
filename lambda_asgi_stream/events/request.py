"""The value every event parser returns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._types import FrozenRecord, Integration

if TYPE_CHECKING:
    from .handlers import EventHandler


class Request(FrozenRecord):
    """One HTTP request taken from a Lambda event.

    ``scope`` is a complete ASGI 3 HTTP scope (without ``state``, which the caller adds) plus Mangum's
    ``aws.event`` and ``aws.context`` keys; the caller must copy it before handing it to an app, since
    apps may mutate their scope. ``multi_value_headers`` says whether responses must use
    ``multiValueHeaders`` (always for REST, for ALB when the target group has multi-value headers on).
    ``streamable`` says whether the invoker can take a streamed response at all: a Function URL or a REST
    API can; an HTTP API (either payload version), ALB, Lambda@Edge and VPC Lattice invoke buffered only.

    An immutable value (equality, hash, ``repr``, :meth:`replace`), built once per invocation: a plain
    slotted class rather than a dataclass, whose creation at import costs the cold start a few ms.
    """

    __slots__ = ("scope", "body", "integration", "multi_value_headers", "streamable")  # noqa: RUF023
    _unshown = ()

    scope: dict[str, Any]
    body: bytes
    integration: Integration
    multi_value_headers: bool
    streamable: bool

    def __init__(
        self,
        scope: dict[str, Any],
        body: bytes,
        integration: Integration,
        multi_value_headers: bool,
        streamable: bool = True,
    ) -> None:
        # The slots' own setters, fetched once below: FrozenRecord refuses plain assignment.
        _set_scope(self, scope)
        _set_body(self, body)
        _set_integration(self, integration)
        _set_multi_value_headers(self, multi_value_headers)
        _set_streamable(self, streamable)


_slots = vars(Request)  # the slots' member descriptors
_set_scope = _slots["scope"].__set__
_set_body = _slots["body"].__set__
_set_integration = _slots["integration"].__set__
_set_multi_value_headers = _slots["multi_value_headers"].__set__
_set_streamable = _slots["streamable"].__set__


class HandledRequest(Request):
    """A request read by a custom :class:`~lambda_asgi_stream.events.handlers.EventHandler`, whose
    ``response`` shapes the reply. (A subclass, so that the built-in formats' requests, built for every
    event, do not pay for fields they never use.) ``extra`` is whatever the handler keeps between reading
    the event and shaping the response: a handler's ``parse`` may return a ``HandledRequest`` to set it."""

    __slots__ = ("handler", "extra")  # noqa: RUF023

    handler: EventHandler | None
    extra: Any

    def __init__(
        self,
        scope: dict[str, Any],
        body: bytes,
        integration: Integration,
        multi_value_headers: bool,
        streamable: bool = True,
        handler: EventHandler | None = None,
        extra: Any = None,
    ) -> None:
        self._assign(scope, body, integration, multi_value_headers, streamable, handler, extra)
