"""Config.from_env: every variable the loop reads, its default, and a clear ConfigError for bad values."""

from __future__ import annotations

import pytest

from lambda_asgi_stream import ConfigError
from lambda_asgi_stream.config import Config
from lambda_asgi_stream.padding import PaddingPolicy


def test_defaults() -> None:
    config = Config.from_env({})
    assert config == Config()
    assert (config.runtime_api, config.invoke_mode, config.lifespan) == ("", "RESPONSE_STREAM", "auto")
    assert (config.timeout_margin_ms, config.max_concurrency, config.snap_start) == (500, 1, False)
    assert config.log_level == "INFO" and config.padding.mode == "idle"


def test_every_variable_is_read() -> None:
    config = Config.from_env(
        {
            "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
            "LAMBDA_ASGI_STREAM_INVOKE_MODE": " buffered ",
            "LAMBDA_ASGI_STREAM_LIFESPAN": "OFF",
            "LAMBDA_ASGI_STREAM_BASE_PATH": "/api",
            "LAMBDA_ASGI_STREAM_TIMEOUT_MARGIN_MS": "0",
            "AWS_LAMBDA_MAX_CONCURRENCY": "4",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
            "LAMBDA_ASGI_STREAM_LOG_LEVEL": "debug",
            "LAMBDA_ASGI_STREAM_PADDING": "explicit",
            "LAMBDA_ASGI_STREAM_PADDING_IDLE_MS": "20",
            "LAMBDA_ASGI_STREAM_PADDING_THRESHOLD": "2048",
            "LAMBDA_ASGI_STREAM_PADDING_BUDGET": "0",
            "LAMBDA_ASGI_STREAM_PADDING_RATE": "1000",
            "LAMBDA_ASGI_STREAM_PADDING_LATENCY_MS": "150",
            "LAMBDA_ASGI_STREAM_SSE_HEARTBEAT_S": "2.5",
            "LAMBDA_ASGI_STREAM_SSE_ERROR_EVENT": "yes",
        }
    )
    assert config.runtime_api == "127.0.0.1:9001"
    assert config.invoke_mode == "BUFFERED" and config.lifespan == "off" and config.base_path == "/api"
    assert (config.timeout_margin_ms, config.max_concurrency, config.snap_start) == (0, 4, True)
    assert config.log_level == "DEBUG"
    assert config.padding == PaddingPolicy(
        mode="explicit", idle_ms=20, threshold=2048, budget=0, rate=1000, latency_ms=150
    )
    assert config.sse.heartbeat_s == 2.5 and config.sse.error_event is True


@pytest.mark.parametrize("value", ["RESPONSE_STREAM", "stream", "Streaming", "response_stream"])
def test_streaming_mode_aliases(value: str) -> None:
    assert Config.from_env({"LAMBDA_ASGI_STREAM_INVOKE_MODE": value}).invoke_mode == "RESPONSE_STREAM"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LAMBDA_ASGI_STREAM_INVOKE_MODE", "sideways"),
        ("LAMBDA_ASGI_STREAM_LIFESPAN", "maybe"),
        ("LAMBDA_ASGI_STREAM_TIMEOUT_MARGIN_MS", "-1"),
        ("LAMBDA_ASGI_STREAM_TIMEOUT_MARGIN_MS", "half"),
        ("AWS_LAMBDA_MAX_CONCURRENCY", "0"),
        ("LAMBDA_ASGI_STREAM_PADDING", "lots"),
        ("LAMBDA_ASGI_STREAM_PADDING_THRESHOLD", "0"),
        ("LAMBDA_ASGI_STREAM_PADDING_RATE", "-5"),
        ("LAMBDA_ASGI_STREAM_PADDING_LATENCY_MS", "-1"),
        ("LAMBDA_ASGI_STREAM_SSE_HEARTBEAT_S", "-2"),
        ("LAMBDA_ASGI_STREAM_SSE_HEARTBEAT_S", "often"),
        ("LAMBDA_ASGI_STREAM_SSE_ERROR_EVENT", "perhaps"),
        ("LAMBDA_ASGI_STREAM_LOG_LEVEL", "verbose"),
    ],
)
def test_bad_values_are_config_errors_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value})
