"""The models of Lambda's hold-back and bandwidth that the emulator and the test transport apply."""

from __future__ import annotations

import pytest

from lambda_asgi_stream.buffering import Bandwidth, HoldBack, PassThrough, make_release


def test_hold_back_releases_everything_pending_once_the_threshold_is_reached() -> None:
    hold = HoldBack(threshold=10)
    assert hold.feed(b"abcd") == b""
    assert hold.feed(b"efgh") == b""
    assert hold.pending == 8
    assert hold.feed(b"ijk") == b"abcdefghijk"  # 11 >= 10: all of it, not just the threshold
    assert hold.pending == 0
    assert hold.feed(b"lm") == b""
    assert hold.end() == b"lm"
    assert hold.end() == b""


def test_a_single_large_write_passes_at_once() -> None:
    assert HoldBack(threshold=10).feed(b"x" * 10) == b"x" * 10


def test_make_release() -> None:
    assert isinstance(make_release("off"), PassThrough)
    assert isinstance(make_release("lambda", 5), HoldBack)
    with pytest.raises(ValueError, match="lambda, off"):
        make_release("sometimes")
    with pytest.raises(ValueError, match="at least 1"):
        HoldBack(0)


def test_bandwidth_burst_then_rate() -> None:
    bandwidth = Bandwidth(burst=100, rate=10)
    assert bandwidth.delay(100, now=0.0) == 0.0  # the burst is free
    assert bandwidth.delay(20, now=0.0) == pytest.approx(2.0)  # then 10 bytes/s
    assert bandwidth.delay(10, now=2.0) == pytest.approx(1.0)  # the debt was paid by t=2; 10 more: 1 s


def test_bandwidth_defaults_are_lambdas() -> None:
    bandwidth = Bandwidth()
    assert bandwidth.delay(6 * 1024 * 1024, now=0.0) == 0.0
    assert bandwidth.delay(2 * 1024 * 1024, now=0.0) == pytest.approx(1.0)
