"""The configured base path (``base_path``, ``LAMBDA_ASGI_STREAM_BASE_PATH``, Mangum's
``api_gateway_base_path``), checked and put in the one form the parsers compare against.

Called once, where the option is read (the Adapter, ``Config``), never per event.
"""

from __future__ import annotations

from .._errors import ConfigError


def normalize_base_path(value: str, option: str = "base_path") -> str:
    """``"v1"``, ``"/v1"`` and ``"/v1/"`` -> ``"/v1"``; ``""`` and ``"/"`` -> ``""`` (no base path).

    >>> normalize_base_path("api/v1/")
    '/api/v1'

    Mangum accepts ``v1`` without its slash; taken as it is, it would match no request path and every
    route would 404. Percent-escapes are decoded, since the parsers compare against the decoded
    ``path``. Raises :class:`ConfigError` (naming ``option``) for what cannot be a URL path prefix: a
    query or fragment (``?``, ``#``), whitespace or control characters, ``.`` or ``..`` segments,
    empty segments (``//``).
    """
    if not isinstance(value, str):
        raise ConfigError(f"{option} must be a string, not {type(value).__name__}")
    try:
        path = _unquote(value) if "%" in value else value
    except UnicodeDecodeError:
        raise ConfigError(f"{option} {value!r}: its percent-escapes are not UTF-8") from None
    for char in path:
        if char in "?#" or char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F:
            raise ConfigError(f"{option} {value!r} cannot be a URL path: it contains {char!r}")
    path = path.strip("/")
    if not path:
        return ""
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            shown = "an empty segment (//)" if not segment else f"a {segment!r} segment"
            raise ConfigError(f"{option} {value!r} cannot be a URL path prefix: it has {shown}")
    return "/" + path


def _unquote(value: str) -> str:
    # Imported here, on the rare base path with escapes: urllib.parse (with the ipaddress module it pulls
    # in) costs the Lambda cold start a few ms.
    import urllib.parse

    return urllib.parse.unquote(value, errors="strict")
