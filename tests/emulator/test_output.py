"""SandboxOutput: the child's output reaches the console unchanged, and its tail is kept for LogResult."""

from __future__ import annotations

import os

import pytest

from lambda_asgi_stream.emulator.output import TAIL_BYTES, SandboxOutput


def test_output_is_forwarded_and_the_tail_counts_from_a_mark(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    output = SandboxOutput()
    try:
        os.write(output.stdout, b"before\n")
        output.drain()
        mark = output.written
        os.write(output.stdout, b"short\n")
        # No pump runs here: since() itself takes in what was written before it was called.
        assert output.since(mark) == b"short\n"
        os.write(output.stdout, b"x" * 5000 + b"\nlast line\n")
        os.write(output.stderr, b"to stderr\n")
        tail = output.since(mark)
        assert len(tail) == TAIL_BYTES
        assert tail.endswith(b"\nlast line\nto stderr\n")
        assert output.since(output.written) == b""
        captured = capsysbinary.readouterr()
        assert captured.out == b"before\nshort\n" + b"x" * 5000 + b"\nlast line\n"
        assert captured.err == b"to stderr\n"
    finally:
        output.close()
