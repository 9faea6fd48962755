"""HTTP/1.1 client framing for the Lambda Runtime API, sans-IO: request bytes out, reply values in.

The Runtime API is one fixed, trusted peer on loopback, and the runtime loop talks to it twice per
invocation, so a general HTTP library's per-event state machine is pure overhead there (AWS's own Go, Rust
and C++ runtime clients are small purpose-built ones too). This module does only what that conversation
needs:

* request heads built once per call shape (:func:`request_head`), chunk frames and the last chunk with
  trailers written directly (RFC 9112 7.1, 7.1.2);
* one reply at a time parsed by :class:`ReplyParser`: status line, header fields, and a body framed by
  ``Content-Length``, ``Transfer-Encoding: chunked`` (trailers read and kept) or the end of the connection
  (RFC 9112 6.3). Informational (1xx) replies are skipped.

It accepts what h11 accepts and rejects what h11 rejects, with the same ABNF (h11's ``_abnf.py``, from
RFC 9110/9112): ``tests/test_http1.py`` runs every exchange through h11 as the oracle. A malformed reply
raises :class:`~lambda_asgi_stream.RuntimeAPIError`; the caller drops the connection.
"""

from __future__ import annotations

import re

from ._errors import RuntimeAPIError
from ._types import Record

# RFC 9110 5.6.2 token, 5.5 field-value (obs-text allowed, as h11 does); RFC 9112 4 status-line with an
# optional reason phrase (h11 accepts "HTTP/1.1 200" too, as many servers send it).
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD_CONTENT = rb"[^\x00\s]+(?:[ \t]+[^\x00\s]+)*"
_HEADER_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:" + _FIELD_CONTENT + rb")?)[ \t]*")
_TOKEN_RE = re.compile(_TOKEN)
_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS_LINE = re.compile(rb"HTTP/([0-9]\.[0-9]) ([0-9]{3})(?: (?:[ \t]|[^\x00\s])*)?")
_CHUNK_HEADER = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*")
_CONTENT_LENGTH = re.compile(rb"[0-9]+")
_CONTENT_LENGTH_MAX_DIGITS = 20
_FRAMING_FIELDS = (b"content-length", b"transfer-encoding", b"connection")
# ReplyParser._remaining in a chunked body: > 0 bytes of chunk data to come, 0 a chunk header, or these
_TRAILERS = -1
_CHUNK_FOOTER = -2
# The end of a head: h11 (and RFC 9112 2.2's robustness rule) accept a bare LF as a line terminator.
_BLANK_LINE = re.compile(rb"\n\r?\n")
_OBS_FOLD = re.compile(rb"[ \t]+")

#: The last chunk of a body without trailers (RFC 9112 7.1).
LAST_CHUNK = b"0\r\n\r\n"
# h11 refuses an incomplete head past its max_incomplete_event_size, 16 KiB; the Runtime API sends ~400 B.
_MAX_HEAD = 16 * 1024


def request_head(
    method: str, target: str, host: str, headers: tuple[tuple[str, str], ...], body_length: int | None
) -> bytes:
    """The request line and header block; ``body_length=None`` means the caller sends a chunked body.

    >>> request_head("GET", "/next", "127.0.0.1:9001", (), 0)
    b'GET /next HTTP/1.1\\r\\nHost: 127.0.0.1:9001\\r\\n\\r\\n'
    """
    return request_line(method, target) + header_fields(host, headers) + length_field(method, body_length)


def request_line(method: str, target: str) -> bytes:
    # Printable ASCII without a space is what _UNSAFE_TARGET allows: checked first, with str methods (a
    # target is built per invocation, with the request id in it).
    plain = target.isascii() and target.isprintable() and " " not in target
    if (
        not _TOKEN_RE.fullmatch(method.encode("latin-1"))
        or not target
        or (not plain and _UNSAFE_TARGET.search(target))
    ):
        raise ValueError(f"not a request line: {method!r} {target!r}")
    return f"{method} {target} HTTP/1.1\r\n".encode("latin-1")


def header_fields(host: str, headers: tuple[tuple[str, str], ...]) -> bytes:
    """The header lines (``Host`` first) of a request, each ending in CRLF; the same for every call of a
    kind, so callers may keep them."""
    block = "".join(f"{name}: {value}\r\n" for name, value in (("Host", host), *headers))
    for name, value in (("Host", host), *headers):
        if not _TOKEN_RE.fullmatch(name.encode("latin-1")) or _UNSAFE_VALUE.search(value):
            raise ValueError(f"not a header field: {name!r}: {value!r}")
    return block.encode("latin-1")


def length_field(method: str, body_length: int | None) -> bytes:
    """``Content-Length`` (and the blank line that ends the head), unless the body is chunked or a
    GET/HEAD has none."""
    if body_length is None or (not body_length and method in ("GET", "HEAD")):
        return b"\r\n"
    return b"Content-Length: %d\r\n\r\n" % body_length


def chunk(data: bytes) -> tuple[bytes, bytes, bytes]:
    """One chunk of a chunked body, as three pieces for ``sendmsg`` (no copy of ``data``).

    ``data`` must not be empty: a zero-size chunk is the last chunk (RFC 9112 7.1).
    """
    size = len(data)
    line = _size_lines.get(size)
    if line is None:
        line = b"%x\r\n" % size
        if len(_size_lines) >= _SIZE_LINES_KEPT:
            _size_lines.clear()  # (the sizes a long-lived worker sends may drift)
        _size_lines[size] = line
    return line, data, b"\r\n"


# Chunk-size lines already made: a stream repeats a few sizes (an SSE token's event, a page's block),
# and a dict hit costs a tenth of the formatting. Bounded: sizes come from the app.
_size_lines: dict[int, bytes] = {}
_SIZE_LINES_KEPT = 1024


def last_chunk(trailers: list[tuple[bytes, bytes]]) -> bytes:
    """The last chunk and the trailer section (RFC 9112 7.1.2)."""
    if not trailers:
        return LAST_CHUNK
    fields = b"".join(name + b": " + value + b"\r\n" for name, value in trailers)
    if fields.count(b"\n") != len(trailers) or fields.count(b"\r") != len(trailers):
        raise ValueError("CR or LF inside a trailer field")
    return b"0\r\n" + fields + b"\r\n"


class Reply(Record):
    """One complete reply: header names lower-cased, as h11 gives them.

    ``keep_alive`` is False when the connection cannot carry another exchange (``Connection: close``,
    HTTP/1.0, a body delimited by the end of the connection, or extra bytes after the reply).
    """

    __slots__ = ("body", "headers", "keep_alive", "status", "trailers")

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool = True,
        trailers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.trailers = trailers

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header, by lower-case name."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


_names: dict[bytes, bytes] = {}  # header names already checked -> lower-case (the Runtime API sends a few)


def _remember(name: bytes) -> bytes:
    """The lower-case form of a checked header name, kept for the next replies."""
    lower = name.lower()
    if len(_names) < 64:
        _names[name] = lower
    return lower


def quick_reply(data: bytes) -> Reply | None:
    """``data`` as one whole reply of the usual shape, else None: then :class:`ReplyParser` reads it.

    The Runtime API's replies (an event, a 202) come in one read, with CRLF line ends, a final status, a
    ``Content-Length`` and no repeated field. Such a reply is checked with a few scans of the whole head
    instead of line by line; anything else (a partial reply, bytes past it, chunked, 1xx/204/304,
    HTTP/1.0, an odd but legal line) returns None and takes the general path, so the two always agree
    (``tests/test_http1.py`` checks both against h11).
    """
    end = data.find(b"\r\n\r\n")
    head = data[:end]
    # Only CRLF pairs end lines, and no NUL, VT or FF anywhere: h11's field-value rule for every value.
    lines = head.split(b"\r\n")
    breaks = len(lines) - 1
    if (
        end < 0
        or head.count(b"\r") != breaks
        or head.count(b"\n") != breaks
        # NUL, VT, FF, looked for as ints: ``b"\x00" in head`` first tries the needle as an int, and builds
        # and drops a TypeError before it searches (about 8 times the cost of the search)
        or 0 in head
        or 11 in head
        or 12 in head
    ):
        return None
    status_line = lines[0]
    code = status_line[9:12]
    if status_line[:9] != b"HTTP/1.1 " or not code.isdigit() or status_line[12:13] not in (b"", b" "):
        return None
    names = _names
    fields = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        lower = names.get(name)
        if lower is None:
            if not sep or not _TOKEN_RE.fullmatch(name):
                return None
            lower = _remember(name)
        elif not sep:
            return None
        fields.append((lower, value.strip(b" \t")))
    found = dict(fields)
    length = found.get(b"content-length")
    status = int(code)
    if (
        length is None
        or not length.isdigit()
        or len(length) > _CONTENT_LENGTH_MAX_DIGITS
        or len(found) != len(fields)
        or b"transfer-encoding" in found
        or status < 200
        or status == 204
        or status == 304
        or len(data) != end + 4 + int(length)
    ):
        return None
    connection = found.get(b"connection")
    return Reply(status, fields, data[end + 4 :], connection is None or not _says_close(connection))


def _says_close(connection: bytes) -> bool:
    """Whether a ``Connection`` value holds the ``close`` option (RFC 9112 9.6)."""
    return b"close" in [token.strip().lower() for token in connection.split(b",")]


def _fail(message: str) -> RuntimeAPIError:
    return RuntimeAPIError(f"malformed reply from the Runtime API: {message}")


def _head_lines(head: bytes) -> list[bytes]:
    lines = head.split(b"\n")
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _fields(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Header (or trailer) lines -> (lower-case name, value), unfolding obs-fold lines as h11 does."""
    if lines and _OBS_FOLD.match(lines[0]):
        raise _fail("continuation line at start of headers")
    if any(line[:1] in (b" ", b"\t") for line in lines):
        unfolded: list[bytes] = []
        for line in lines:
            if line[:1] in (b" ", b"\t"):
                unfolded[-1] = unfolded[-1] + b" " + line.lstrip(b" \t")
            else:
                unfolded.append(line)
        lines = unfolded
    fields = []
    for line in lines:
        match = _HEADER_FIELD.fullmatch(line)
        if match is None:
            raise _fail(f"illegal header line {line[:100]!r}")
        fields.append((match.group(1).lower(), match.group(2)))
    return fields


def _header_block(block: bytes) -> list[tuple[bytes, bytes]]:
    """A header block, each line ending in LF or CRLF -> (lower-case name, value) pairs.

    The common case in one pass of cheap checks; anything unusual (obs-fold, an illegal line) goes to the
    line-by-line path, which unfolds or names the bad line. The checks are h11's field rules: a token name,
    and a value of no NUL, CR, LF, VT or FF (``[^\\x00\\s]`` words joined by spaces and tabs).
    """
    if 0 in block or 11 in block or 12 in block:  # NUL, VT, FF
        return _fields(_head_lines(block[:-1]))
    fields = []
    names = _names
    for line in block.split(b"\n")[:-1]:
        if line[-1:] == b"\r":
            line = line[:-1]
        name, sep, value = line.partition(b":")
        if not sep:
            return _fields(_head_lines(block[:-1]))
        lower = names.get(name)
        if lower is None:
            if not _TOKEN_RE.fullmatch(name):
                return _fields(_head_lines(block[:-1]))
            lower = _remember(name)
        value = value.strip(b" \t")
        if 13 in value:  # CR (an int needle, as in quick_reply)
            return _fields(_head_lines(block[:-1]))
        fields.append((lower, value))
    return fields


class ReplyParser:
    """Parses one reply from bytes as they arrive.

    >>> parser = ReplyParser()
    >>> parser.feed(b"HTTP/1.1 202 Accepted\\r\\nContent-Length: 2\\r\\n\\r\\nOK").status
    202

    ``feed`` returns None until the reply is complete. A body delimited by the end of the connection
    completes only at :meth:`eof`. ``head_request`` is True when the request was ``HEAD`` (no body follows).
    ``quick=False``: the caller has tried :func:`quick_reply` on the first bytes already.
    """

    def __init__(self, *, head_request: bool = False, quick: bool = True) -> None:
        self._quick = quick and not head_request
        self._buffer = b""
        self._head_request = head_request
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._keep_alive = True
        self._framing: str | None = None  # "length", "chunked" or "eof", once the head is read
        self._remaining = 0
        self._body: list[bytes] = []
        self._trailers: list[tuple[bytes, bytes]] | None = None

    def feed(self, data: bytes) -> Reply | None:
        if self._quick:
            self._quick = False
            reply = quick_reply(data)  # the whole reply in the first read: the common case
            if reply is not None:
                return reply
        buffer = self._buffer + data if self._buffer else data
        self._buffer = b""
        if self._framing is None:
            buffer = self._read_head(buffer)
            if self._framing is None:
                return None
        if self._framing == "length":
            return self._read_fixed(buffer)
        if self._framing == "chunked":
            return self._read_chunked(buffer)
        self._body.append(buffer)
        return None

    def eof(self) -> Reply:
        """The peer closed the connection: the reply ends here, or was cut (then this raises)."""
        if self._framing == "eof":
            return self._reply(b"".join(self._body), keep_alive=False)
        if self._framing is None and not self._buffer:
            raise RuntimeAPIError("the Runtime API closed the connection before replying")
        raise RuntimeAPIError("the Runtime API closed the connection mid-reply")

    def _read_head(self, buffer: bytes) -> bytes:
        while True:
            end = _BLANK_LINE.search(buffer)
            if end is None:
                if len(buffer) > _MAX_HEAD:
                    raise _fail("reply head too long")
                if buffer[:1] == b"\n" or buffer[:2] == b"\r\n":
                    raise _fail("no status line")  # h11: an empty line where the status line goes
                self._buffer = buffer
                return b""
            head, buffer = buffer[: end.start() + 1], buffer[end.end() :]
            line_end = head.index(b"\n")
            status_line = head[: line_end - 1] if head[line_end - 1 : line_end] == b"\r" else head[:line_end]
            match = _STATUS_LINE.fullmatch(status_line)
            if match is None:
                raise _fail(f"illegal status line {status_line[:100]!r}")
            status = int(match.group(2))
            headers = _header_block(head[line_end + 1 :])
            if status < 100:
                raise _fail(f"status {status}")
            if status < 200:
                if status == 101:
                    raise _fail("the Runtime API switched protocols")
                continue  # informational: the final reply follows (RFC 9110 15.2)
            self._start(status, headers, match.group(1) == b"1.0")
            return buffer

    def _start(self, status: int, headers: list[tuple[bytes, bytes]], http10: bool) -> None:
        self._status, self._headers = status, headers
        found = dict(headers)
        if len(found) == len(headers):  # no name repeated (the Runtime API's replies): three look-ups
            framing = [(n, found[n]) for n in _FRAMING_FIELDS if n in found]
        else:
            framing = [(n, v) for n, v in headers if n in _FRAMING_FIELDS]
        lengths: set[bytes] = set()
        encodings: list[bytes] = []
        for name, value in framing:
            if name == b"content-length":
                lengths.update(part.strip() for part in value.split(b","))
            elif name == b"transfer-encoding":
                encodings.append(value.lower())
            elif _says_close(value):  # Connection
                self._keep_alive = False
        if http10:
            self._keep_alive = False
        if len(encodings) > 1:
            raise _fail("multiple Transfer-Encoding headers")
        if encodings and encodings[0] != b"chunked":
            raise _fail("only Transfer-Encoding: chunked is supported")
        if len(lengths) > 1:
            raise _fail("conflicting Content-Length headers")
        length = lengths.pop() if lengths else None
        if length is not None and (
            not _CONTENT_LENGTH.fullmatch(length) or len(length) > _CONTENT_LENGTH_MAX_DIGITS
        ):
            raise _fail("bad Content-Length")
        # RFC 9112 6.3: no body for HEAD, 204 and 304; chunked beats Content-Length; else the length;
        # else the body runs to the end of the connection.
        if self._head_request or status in (204, 304):
            self._framing, self._remaining = "length", 0
        elif encodings:
            self._framing = "chunked"
        elif length is not None:
            self._framing, self._remaining = "length", int(length)
        else:
            self._framing, self._keep_alive = "eof", False

    def _read_fixed(self, buffer: bytes) -> Reply | None:
        if len(buffer) < self._remaining:  # a large body: keep the pieces, join them once at the end
            self._body.append(buffer)
            self._remaining -= len(buffer)
            return None
        body, extra = buffer[: self._remaining], buffer[self._remaining :]
        if self._body:
            self._body.append(body)
            body = b"".join(self._body)
        # Nothing was asked for beyond this reply: bytes after it mean the peer and we disagree on framing.
        return self._reply(body, keep_alive=self._keep_alive and not extra)

    def _read_chunked(self, buffer: bytes) -> Reply | None:
        position = 0
        while True:
            if self._remaining > 0:  # inside a chunk's data: take what has come (no re-copy later)
                take = min(self._remaining, len(buffer) - position)
                if not take:
                    break
                self._body.append(buffer[position : position + take])
                position += take
                self._remaining -= take
                if not self._remaining:
                    self._remaining = _CHUNK_FOOTER
            elif self._remaining == _CHUNK_FOOTER:  # the CRLF after a chunk's data
                if len(buffer) - position < 2:
                    if buffer[position:] not in (b"", b"\r"):
                        raise _fail("malformed chunk footer")
                    break
                if buffer[position : position + 2] != b"\r\n":
                    raise _fail("malformed chunk footer")
                position, self._remaining = position + 2, 0
            elif self._remaining == 0:  # a chunk header line
                end = buffer.find(b"\r\n", position)
                if end < 0:
                    if len(buffer) - position > _MAX_HEAD:
                        raise _fail("chunk header too long")
                    break
                match = _CHUNK_HEADER.fullmatch(buffer, position, end)
                if match is None:
                    raise _fail(f"illegal chunk header {buffer[position:end][:100]!r}")
                position = end + 2
                self._remaining = int(match.group(1), 16) or _TRAILERS  # 0: the last chunk came
            else:  # _TRAILERS: the trailer section, field lines, then an empty line
                for blank in (b"\r\n", b"\n"):
                    if buffer.startswith(blank, position):
                        trailers: list[tuple[bytes, bytes]] = []
                        end = position + len(blank)
                        break
                else:
                    found = _BLANK_LINE.search(buffer, position)
                    if found is None:
                        if len(buffer) - position > _MAX_HEAD:
                            raise _fail("trailer section too long")
                        break
                    trailers, end = _header_block(buffer[position : found.start() + 1]), found.end()
                self._trailers = trailers
                return self._reply(b"".join(self._body), keep_alive=self._keep_alive and end == len(buffer))
        self._buffer = buffer[position:]
        return None

    def _reply(self, body: bytes, *, keep_alive: bool) -> Reply:
        return Reply(self._status, self._headers, body, keep_alive, self._trailers)
