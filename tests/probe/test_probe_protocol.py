"""The probe's search and plan, sans-IO: models of the service stand in for the network."""

from __future__ import annotations

import pytest

from lambda_asgi_stream._errors import ProbeError
from lambda_asgi_stream.probe_protocol import (
    MAX_PROBE_BYTES,
    ProbeResult,
    Step,
    ThresholdSearch,
    format_plan,
    parse_plan,
    token_matches,
)


def model(threshold: int | None, release_after: float | None = None):  # type: ignore[no-untyped-def]
    """Gap between first bytes and the end for a service that forwards at ``threshold`` pending bytes
    (None: never) or, for smaller writes, after ``release_after`` seconds (None: only at the end)."""

    def gap(step: Step) -> float:
        if threshold is not None and step.size >= threshold:
            return step.pause
        if release_after is not None and release_after < step.pause:
            return step.pause - release_after
        return 0.0

    return gap


def run(search: ThresholdSearch, service) -> ProbeResult:  # type: ignore[no-untyped-def]
    while (step := search.next_step()) is not None:
        search.observe(service(step))
    return search.result()


@pytest.mark.parametrize(
    "threshold", [2, 100, 4096, 16 * 1024, 32 * 1024, 100 * 1024, 999_999, MAX_PROBE_BYTES]
)
def test_search_brackets_the_threshold_within_the_ratio(threshold: int) -> None:
    result = run(ThresholdSearch(pause=1.0, time_pause=4.0), model(threshold))
    assert result.threshold_bytes is not None
    assert result.held_bytes < threshold <= result.threshold_bytes <= threshold * 1.04 + 1
    assert len(result.measurements) <= 12
    assert result.settings() == {"LAMBDA_ASGI_STREAM_PADDING_THRESHOLD": str(result.threshold_bytes)}


def test_search_sees_a_time_based_release() -> None:
    result = run(ThresholdSearch(pause=1.0, time_pause=4.0), model(16384, release_after=1.7))
    assert result.time_release_s == pytest.approx(1.7)
    assert 16384 <= (result.threshold_bytes or 0) <= 16384 * 1.04  # the 1 s checks are not fooled
    assert "after about 1.70 s" in result.report()


def test_search_reports_no_hold_back_after_one_request() -> None:
    result = run(ThresholdSearch(pause=1.0, time_pause=4.0), model(1))
    assert not result.hold_back and len(result.measurements) == 1
    assert result.settings() == {"LAMBDA_ASGI_STREAM_PADDING": "none"}


def test_search_says_when_the_threshold_is_beyond_a_probe() -> None:
    result = run(ThresholdSearch(pause=1.0, time_pause=4.0), model(None))
    assert result.threshold_bytes is None and result.settings() == {}
    assert "threshold unknown" in result.report()


def test_plans_round_trip_and_are_bounded() -> None:
    steps = (Step(65536, 1.0), Step(1, 0.0))
    assert parse_plan(format_plan(steps)) == steps
    for bad in ["", "12", "a:1", "1:-1", "1:1," * 9 + "1:1", f"{MAX_PROBE_BYTES + 1}:0", "1:10001"]:
        with pytest.raises(ProbeError):
            parse_plan(bad)


def test_token_compare() -> None:
    assert token_matches("s3cret", b"s3cret")
    assert not token_matches("s3cret", b"s3cre")
    assert not token_matches("", b"")  # no token configured: nothing matches


def test_search_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        ThresholdSearch(pause=2.0, time_pause=1.0)
    with pytest.raises(ValueError):
        ThresholdSearch(ratio=1.0)


def test_without_a_token_the_runtime_serves_the_app_itself() -> None:
    from lambda_asgi_stream.probe_endpoint import ProbeEndpoint, wrap

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        return None

    assert wrap(app, {}) is app  # zero cost when probing is off
    assert wrap(app, {"LAMBDA_ASGI_STREAM_PROBE_TOKEN": ""}) is app
    assert isinstance(wrap(app, {"LAMBDA_ASGI_STREAM_PROBE_TOKEN": "t"}), ProbeEndpoint)
