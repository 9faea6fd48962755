"""The value every event parser returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._types import Integration

if TYPE_CHECKING:
    from .handlers import EventHandler


@dataclass(frozen=True, slots=True, init=False)
class Request:
    """One HTTP request taken from a Lambda event.

    ``scope`` is a complete ASGI 3 HTTP scope (without ``state``, which the caller adds) plus Mangum's
    ``aws.event`` and ``aws.context`` keys; the caller must copy it before handing it to an app, since
    apps may mutate their scope. ``multi_value_headers`` says whether responses must use
    ``multiValueHeaders`` (always for REST, for ALB when the target group has multi-value headers on).
    ``streamable`` says whether the invoker can take a streamed response at all: a Function URL or a REST
    API can; an HTTP API (either payload version), ALB, Lambda@Edge and VPC Lattice invoke buffered only.
    """

    scope: dict[str, Any]
    body: bytes
    integration: Integration
    multi_value_headers: bool
    streamable: bool = True

    # One is built per invocation. The ``__init__`` that ``frozen=True`` writes sets each field through
    # ``object.__setattr__`` (looked up per field); the slots' own setters, fetched once below, do the same
    # store in a third less time. The class stays a frozen dataclass (fields, replace, eq, hash, repr).
    def __init__(
        self,
        scope: dict[str, Any],
        body: bytes,
        integration: Integration,
        multi_value_headers: bool,
        streamable: bool = True,
    ) -> None:
        _set_scope(self, scope)
        _set_body(self, body)
        _set_integration(self, integration)
        _set_multi_value_headers(self, multi_value_headers)
        _set_streamable(self, streamable)


_fields = vars(Request)  # the slots' member descriptors
_set_scope = _fields["scope"].__set__
_set_body = _fields["body"].__set__
_set_integration = _fields["integration"].__set__
_set_multi_value_headers = _fields["multi_value_headers"].__set__
_set_streamable = _fields["streamable"].__set__


@dataclass(frozen=True, slots=True)
class HandledRequest(Request):
    """A request read by a custom :class:`~lambda_asgi_stream.events.handlers.EventHandler`, whose
    ``response`` shapes the reply. (A subclass, so that the built-in formats' requests, built for every
    event, do not pay for fields they never use.) ``extra`` is whatever the handler keeps between reading
    the event and shaping the response: a handler's ``parse`` may return a ``HandledRequest`` to set it."""

    handler: EventHandler | None = None
    extra: Any = None
