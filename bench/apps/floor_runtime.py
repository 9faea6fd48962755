"""``python-floor`` of ``invocation_cost.py``: the least a Python runtime loop can do per invocation.

Two HTTP/1.1 exchanges with the Runtime API on one blocking keep-alive socket (``next``, then a buffered
``POST .../response``), the event read with ``json.loads`` and the response written with ``json.dumps``,
and nothing else: no ASGI app, no event parsing, no checks, no error handling. It answers every event with
the bench app's ``/hello`` response. Not a runtime anyone should use: it shows how much of a real loop's
cost is the two exchanges themselves, which no Python runtime can avoid.
"""

import json
import os
import socket

from bench_app import BODY

HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
NEXT = f"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: {HOST}:{PORT}\r\n\r\n".encode()
RESPONSE = {
    "statusCode": 200,
    "headers": {"content-type": "text/plain; charset=utf-8", "content-length": str(len(BODY))},
    "body": BODY.decode(),
    "isBase64Encoded": False,
}


def read_reply(sock: socket.socket) -> tuple[bytes, bytes]:
    """(lower-case head, body) of one Content-Length reply."""
    data = sock.recv(65536)
    while (end := data.find(b"\r\n\r\n")) < 0:
        data += sock.recv(65536)
    head = data[:end].lower()
    start = head.index(b"content-length:") + 15
    line_end = head.find(b"\r\n", start)  # -1: Content-Length is the last field
    length = int(head[start:] if line_end < 0 else head[start:line_end])
    while len(data) < end + 4 + length:
        data += sock.recv(65536)
    return head, data[end + 4 : end + 4 + length]


def main() -> None:
    sock = socket.create_connection((HOST, int(PORT)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        sock.sendall(NEXT)
        head, event = read_reply(sock)
        start = head.index(b"lambda-runtime-aws-request-id:") + 30
        request_id = head[start : head.index(b"\r\n", start)].strip().decode()
        json.loads(event)
        out = json.dumps(RESPONSE).encode()
        path = f"/2018-06-01/runtime/invocation/{request_id}/response"
        head = f"POST {path} HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nContent-Length: {len(out)}\r\n\r\n"
        sock.sendall(head.encode() + out)
        read_reply(sock)


if __name__ == "__main__":
    main()
