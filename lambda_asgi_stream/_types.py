"""Typed shapes of the values that cross our boundaries.

ASGI messages and scopes follow the ASGI 3 HTTP spec (asgi.readthedocs.io, "HTTP & WebSocket ASGI Message
Format", spec_version 2.3). Lambda events stay plain ``dict[str, Any]``: they are parsed field by field in
``events/`` and every field is checked there, so a TypedDict would only promise what the JSON may not keep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar

LambdaEvent = dict[str, Any]
Headers = list[tuple[bytes, bytes]]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Where the event came from. It decides the prelude shape and the buffered response shape. ``custom`` is a
# request read by a user's event handler (``events.handlers``), which shapes its own response.
Integration = Literal["function-url", "http-api", "rest", "alb", "lambda-at-edge", "vpc-lattice", "custom"]
# The built-in event sources (``events.build`` can build an event for each).
INTEGRATIONS: tuple[Integration, ...] = (
    "function-url",
    "http-api",
    "rest",
    "alb",
    "lambda-at-edge",
    "vpc-lattice",
)
# Those Lambda can stream a response through (docs/wire-format.md: HTTP APIs, ALB, CloudFront's
# Lambda@Edge and VPC Lattice invoke buffered only).
STREAMING_INTEGRATIONS: tuple[Integration, ...] = ("function-url", "rest")

# ASGI lifespan handling: `auto` uses it when the app supports it, `on` requires it, `off` skips it.
LifespanMode = Literal["auto", "on", "off"]
LIFESPAN_MODES: tuple[LifespanMode, ...] = ("auto", "on", "off")


# The ASGI message and scope shapes, for annotations only: a TypedDict turns each of its (string)
# annotations into a compiled ForwardRef when the class is built, 27 compile() calls at import on the
# Lambda cold path for these six.
if TYPE_CHECKING:

    class ASGIVersions(TypedDict):
        version: str
        spec_version: str

    class HTTPScope(TypedDict, total=False):
        type: Literal["http"]
        asgi: ASGIVersions
        http_version: str
        method: str
        scheme: str
        path: str
        raw_path: bytes
        query_string: bytes
        root_path: str
        headers: Iterable[tuple[bytes, bytes]]
        client: tuple[str, int] | None
        server: tuple[str, int | None] | None
        state: dict[str, Any]
        extensions: dict[str, dict[object, object]]

    class HTTPRequestEvent(TypedDict):
        type: Literal["http.request"]
        body: bytes
        more_body: bool

    class HTTPDisconnectEvent(TypedDict):
        type: Literal["http.disconnect"]

    class HTTPResponseStartEvent(TypedDict, total=False):
        type: Literal["http.response.start"]
        status: int
        headers: Iterable[tuple[bytes, bytes]]
        trailers: bool

    class HTTPResponseBodyEvent(TypedDict, total=False):
        type: Literal["http.response.body"]
        body: bytes
        more_body: bool


class Record:
    """A base for the small value classes on the runtime's hot and cold paths.

    Each subclass lists its fields in ``__slots__`` and writes a plain ``__init__``. ``@dataclass`` would
    write the same methods, but it builds each class with ``exec`` at import (about 0.6 ms each on the
    Lambda cold path) and a frozen one assigns through ``object.__setattr__`` (four times slower to
    build, per invocation). These are values all the same: nothing changes them after ``__init__``.
    """

    __slots__ = ()
    #: Fields left out of ``repr`` (as ``field(repr=False)``): bulky payloads.
    _unshown: tuple[str, ...] = ("event",)
    #: Every field, a base class's first (its ``__slots__`` and those of the classes it extends).
    _fields: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._fields = (*cls._fields, *cls.__dict__.get("__slots__", ()))

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __repr__(self) -> str:
        names = self._fields
        unshown = self._unshown
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names if name not in unshown)
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record) or type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())


class FrozenRecord(Record):
    """A :class:`Record` that refuses to be changed, as a frozen dataclass does, for public settings values.

    ``__slots__`` names the fields in the order of ``__init__``'s parameters (a subclass's after its
    base's), which ``repr``, ``copy`` and ``pickle`` follow. ``__init__`` sets the fields with
    :meth:`_assign`; after that, setting or deleting any attribute raises ``AttributeError`` (a
    frozen dataclass raises ``FrozenInstanceError``, a subclass of it). :meth:`replace` is
    ``dataclasses.replace`` for these classes.
    """

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is immutable")

    def _assign(self, *values: Any) -> None:
        """Set every field, in ``__slots__`` order: what an ``__init__`` does once its checks have passed."""
        for name, value in zip(self._fields, values, strict=True):
            object.__setattr__(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        # copy and pickle rebuild through __init__ (``__slots__`` lists its parameters in order): their
        # default sets each slot with setattr, which this class refuses.
        return (type(self), self._values())

    def replace(self: _Frozen, **changes: Any) -> _Frozen:
        """A copy with ``changes`` (field names as keywords) applied, checked as the constructor checks."""
        names = self._fields
        unknown = changes.keys() - set(names)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        build: Any = type(self)  # every subclass's __init__ takes its fields by name
        copy: _Frozen = build(**{name: changes.get(name, getattr(self, name)) for name in names})
        return copy


_Frozen = TypeVar("_Frozen", bound=FrozenRecord)
