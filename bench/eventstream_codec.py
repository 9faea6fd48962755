"""Event stream codec and the emulator's InvokeWithResponseStream, measured by hand.

1. Codec: encode PayloadChunk messages, then decode the same bytes read in 64 KiB pieces with our
   ``MessageDecoder`` and with botocore's ``EventStreamBuffer`` (what boto3 uses). MiB/s of payload.
2. ``--e2e``: ``serve`` in a subprocess, boto3's ``invoke_with_response_stream`` reading ``/download`` of
   the emulator test app through ``client.stream_response``. MiB/s of body, and time to first byte.

    .venv/bin/python bench/eventstream_codec.py [--quick] [--e2e] [--size-mib 64]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from botocore.eventstream import EventStreamBuffer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lambda_asgi_stream.eventstream import MessageDecoder, payload_chunk  # noqa: E402


def _mib_s(nbytes: int, seconds: float) -> str:
    return f"{nbytes / 2**20 / seconds:8.1f} MiB/s"


def codec(size_mib: int, chunk: int, runs: int) -> None:
    data = os.urandom(chunk)
    count = size_mib * 2**20 // chunk
    payload = count * chunk
    for run in range(runs):
        started = time.perf_counter()
        wire = b"".join(payload_chunk(data) for _ in range(count))
        encode_s = time.perf_counter() - started
        pieces = [wire[i : i + 65536] for i in range(0, len(wire), 65536)]
        started = time.perf_counter()
        ours = MessageDecoder()
        got = sum(len(m.payload) for piece in pieces for m in ours.feed(piece))
        ours_s = time.perf_counter() - started
        started = time.perf_counter()
        theirs = EventStreamBuffer()
        seen = 0
        for piece in pieces:
            theirs.add_data(piece)
            seen += sum(len(m.payload) for m in theirs)
        botocore_s = time.perf_counter() - started
        assert got == seen == payload
        print(
            f"chunk {chunk:>6} B run {run + 1}: encode {_mib_s(payload, encode_s)}  "
            f"decode ours {_mib_s(payload, ours_s)}  botocore {_mib_s(payload, botocore_s)}  "
            f"(ours/botocore time {ours_s / botocore_s:.2f})"
        )


def e2e(size_mib: int, runs: int) -> None:
    import boto3

    from lambda_asgi_stream.client import stream_response
    from lambda_asgi_stream.events.build import build_event

    with tempfile.TemporaryDirectory() as signals:
        command = [
            sys.executable,
            "-m",
            "lambda_asgi_stream",
            "serve",
            "tests.emulator.apps:app",
            "--port",
            "0",
        ]
        command += ["--buffering", "off"]
        env = {**os.environ, "EMU_TEST_SIGNALS": signals, "LAMBDA_ASGI_STREAM_PADDING": "none"}
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None
            url = ""
            for line in proc.stdout:
                found = re.search(rb"serving .* on (http://\S+)", line)
                if found:
                    url = found.group(1).decode()
                    break
            lam = boto3.client(
                "lambda",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id="x",
                aws_secret_access_key="x",
            )
            size = size_mib * 2**20
            event = json.dumps(
                build_event("function-url", method="GET", path="/download", query_string=f"size={size}")
            )
            for run in range(runs):
                started = time.perf_counter()
                response = lam.invoke_with_response_stream(FunctionName="local", Payload=event)
                first = None
                total = 0
                with stream_response(response) as r:
                    for data in r.iter_bytes():
                        first = first or time.perf_counter()
                        total += len(data)
                elapsed = time.perf_counter() - started
                assert total == size
                ttfb = ((first or started) - started) * 1000
                print(f"e2e run {run + 1}: {_mib_s(total, elapsed)}  ttfb {ttfb:.1f} ms  ({size_mib} MiB)")
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--e2e", action="store_true")
    parser.add_argument("--size-mib", type=int, default=64)
    args = parser.parse_args()
    size, runs = (8, 1) if args.quick else (args.size_mib, 3)
    for chunk in (65536, 1024, 100):
        codec(max(1, size // (64 if chunk < 1024 else 1)), chunk, runs)
    if args.e2e:
        e2e(size, runs)


if __name__ == "__main__":
    main()
