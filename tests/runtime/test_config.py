"""Config.from_env: every variable the loop reads, its default, and a clear ConfigError for bad values."""

from __future__ import annotations

import pytest

from lambda_asgi_stream import ConfigError
from lambda_asgi_stream.config import Config
from lambda_asgi_stream.padding import PaddingPolicy
from lambda_asgi_stream.sse import SSEOptions


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


# Config and its parts were frozen dataclasses; they are plain classes now (no `exec` at import on the
# cold path) and must still behave as those did: keywords and positions, equality, hash, repr, immutable.
def test_config_is_a_value() -> None:
    config = Config(runtime_api="127.0.0.1:9001", log_level="DEBUG", exclude_headers=frozenset({"x-a"}))
    same = Config("127.0.0.1:9001", "RESPONSE_STREAM", "auto", "", 500, 1, False, "DEBUG")
    assert config != same  # exclude_headers differs
    assert config == same.replace(exclude_headers=frozenset({"x-a"}))
    assert hash(config) == hash(same.replace(exclude_headers=frozenset({"x-a"})))
    assert Config() == Config() and Config().padding == PaddingPolicy(mode="idle")
    assert Config() != Config(max_concurrency=2) and Config() != object()
    assert repr(Config(end_record=frozenset({"sse"}))) == (
        "Config(runtime_api='', invoke_mode='RESPONSE_STREAM', lifespan='auto', base_path='', "
        "timeout_margin_ms=500, max_concurrency=1, snap_start=False, log_level='INFO', "
        f"padding={PaddingPolicy(mode='idle')!r}, sse=SSEOptions(heartbeat_s=20.0, error_event=False, "
        "error_detail=False), exclude_headers=frozenset(), end_record=frozenset({'sse'}))"
    )
    assert repr(PaddingPolicy()) == (
        "PaddingPolicy(mode='none', idle_ms=5.0, threshold=102400, budget=4194304, rate=524288, pad=None, "
        "latency_ms=200.0)"
    )


@pytest.mark.parametrize(
    "value", [Config(), PaddingPolicy(mode="idle"), SSEOptions()], ids=lambda v: type(v).__name__
)
def test_settings_are_immutable(value: object) -> None:
    name = type(value).__slots__[0]  # type: ignore[attr-defined]
    before = getattr(value, name)
    with pytest.raises(AttributeError):
        setattr(value, name, before)
    with pytest.raises(AttributeError):
        delattr(value, name)
    with pytest.raises(AttributeError):
        value.unknown = 1  # type: ignore[attr-defined]
    assert getattr(value, name) == before


@pytest.mark.parametrize(
    "value",
    [Config(log_level="DEBUG", exclude_headers=frozenset({"x-a"})), PaddingPolicy(mode="idle"), SSEOptions()],
    ids=lambda v: type(v).__name__,
)
def test_settings_copy_and_pickle(value: object) -> None:
    import copy
    import pickle

    for twin in (copy.copy(value), copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
        assert twin == value and type(twin) is type(value)


def test_replace_gives_a_checked_copy() -> None:
    config = Config(log_level="DEBUG")
    changed = config.replace(runtime_api="127.0.0.1:1", max_concurrency=3)
    assert (changed.runtime_api, changed.max_concurrency, changed.log_level) == ("127.0.0.1:1", 3, "DEBUG")
    assert (config.runtime_api, config.max_concurrency) == ("", 1)
    with pytest.raises(TypeError, match="no field runtime"):
        config.replace(runtime="x")
    with pytest.raises(ValueError, match="padding must be one of"):
        PaddingPolicy(mode="idle").replace(mode="always")
    assert SSEOptions().replace(error_event=True) == SSEOptions(error_event=True)
