"""Configuration from the environment, read once at start-up. Every variable is documented in README.md.

The invoke mode is configured, never guessed: Lambda does not tell a function whether its Function URL or
API Gateway integration streams (aws-lambda-go PR #503), and a mismatch fails in confusing ways
(docs/failure-policy.md). The values mirror the Function URL ``InvokeMode`` names so the two read alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from ._errors import ConfigError
from ._types import LIFESPAN_MODES, FrozenRecord, LifespanMode
from .encoder import header_names
from .end_record import EndRecordFormat, parse_formats
from .events.base_path import normalize_base_path
from .padding import (
    DEFAULT_BUDGET,
    DEFAULT_IDLE_MS,
    DEFAULT_LATENCY_MS,
    DEFAULT_RATE,
    DEFAULT_THRESHOLD,
    PADDING_MODES,
    PaddingPolicy,
)
from .sse import DEFAULT_HEARTBEAT_S, SSEOptions

InvokeMode = Literal["RESPONSE_STREAM", "BUFFERED"]

ENV_INVOKE_MODE = "LAMBDA_ASGI_STREAM_INVOKE_MODE"
ENV_LIFESPAN = "LAMBDA_ASGI_STREAM_LIFESPAN"
ENV_BASE_PATH = "LAMBDA_ASGI_STREAM_BASE_PATH"
ENV_TIMEOUT_MARGIN_MS = "LAMBDA_ASGI_STREAM_TIMEOUT_MARGIN_MS"
ENV_LOG_LEVEL = "LAMBDA_ASGI_STREAM_LOG_LEVEL"
ENV_PADDING = "LAMBDA_ASGI_STREAM_PADDING"
ENV_PADDING_IDLE_MS = "LAMBDA_ASGI_STREAM_PADDING_IDLE_MS"
ENV_PADDING_THRESHOLD = "LAMBDA_ASGI_STREAM_PADDING_THRESHOLD"
ENV_PADDING_BUDGET = "LAMBDA_ASGI_STREAM_PADDING_BUDGET"
ENV_PADDING_RATE = "LAMBDA_ASGI_STREAM_PADDING_RATE"
ENV_PADDING_LATENCY_MS = "LAMBDA_ASGI_STREAM_PADDING_LATENCY_MS"
#: Read by probe_endpoint.wrap when the runtime starts (not part of Config: it only gates probe requests).
ENV_PROBE_TOKEN = "LAMBDA_ASGI_STREAM_PROBE_TOKEN"
ENV_SSE_HEARTBEAT_S = "LAMBDA_ASGI_STREAM_SSE_HEARTBEAT_S"
ENV_SSE_ERROR_EVENT = "LAMBDA_ASGI_STREAM_SSE_ERROR_EVENT"
ENV_SSE_ERROR_DETAIL = "LAMBDA_ASGI_STREAM_SSE_ERROR_DETAIL"
ENV_EXCLUDE_HEADERS = "LAMBDA_ASGI_STREAM_EXCLUDE_HEADERS"
ENV_END_RECORD = "LAMBDA_ASGI_STREAM_END_RECORD"

_MODE_ALIASES: dict[str, InvokeMode] = {
    "response_stream": "RESPONSE_STREAM",
    "stream": "RESPONSE_STREAM",
    "streaming": "RESPONSE_STREAM",
    "buffered": "BUFFERED",
}


# Defaults shared by every Config: both are immutable.
_IDLE_PADDING = PaddingPolicy(mode="idle")
_DEFAULT_SSE = SSEOptions()


class Config(FrozenRecord):
    """Settings of the runtime loop. Build with :meth:`from_env` or directly in code.

    Immutable and compared by value; ``config.replace(log_level="DEBUG")`` gives a changed copy. A plain
    class, not a dataclass: building a dataclass runs ``exec`` at import, on Lambda's cold path.
    """

    # In the order of the constructor's parameters, which repr follows.
    __slots__ = (  # noqa: RUF023
        "runtime_api",
        "invoke_mode",
        "lifespan",
        "base_path",
        "timeout_margin_ms",
        "max_concurrency",
        "snap_start",
        "log_level",
        "padding",
        "sse",
        "exclude_headers",
        "end_record",
    )

    runtime_api: str
    invoke_mode: InvokeMode
    lifespan: LifespanMode
    base_path: str
    # The app is cancelled this long before Lambda's deadline, so the stream can still be ended with a
    # Function.Timeout trailer instead of being cut by the sandbox being stopped.
    timeout_margin_ms: int
    max_concurrency: int
    snap_start: bool
    log_level: str
    padding: PaddingPolicy
    sse: SSEOptions
    # Response headers never sent, lower-case (Mangum's exclude_headers), in the prelude and buffered dict.
    exclude_headers: frozenset[str]
    #: formats whose responses end with an end record (end_record.py); empty: only by response header
    end_record: frozenset[EndRecordFormat]

    def __init__(
        self,
        runtime_api: str = "",
        invoke_mode: InvokeMode = "RESPONSE_STREAM",
        lifespan: LifespanMode = "auto",
        base_path: str = "",
        timeout_margin_ms: int = 500,
        max_concurrency: int = 1,
        snap_start: bool = False,
        log_level: str = "INFO",
        padding: PaddingPolicy = _IDLE_PADDING,
        sse: SSEOptions = _DEFAULT_SSE,
        exclude_headers: frozenset[str] = frozenset(),
        end_record: frozenset[EndRecordFormat] = frozenset(),
    ) -> None:
        self._assign(
            runtime_api,
            invoke_mode,
            lifespan,
            base_path,
            timeout_margin_ms,
            max_concurrency,
            snap_start,
            log_level,
            padding,
            sse,
            exclude_headers,
            end_record,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read ``AWS_LAMBDA_*`` and ``LAMBDA_ASGI_STREAM_*`` variables; raise ConfigError on bad values."""
        env = os.environ if environ is None else environ
        return cls(
            runtime_api=env.get("AWS_LAMBDA_RUNTIME_API", ""),
            invoke_mode=_invoke_mode(env.get(ENV_INVOKE_MODE, "RESPONSE_STREAM")),
            lifespan=_lifespan(env.get(ENV_LIFESPAN, "auto")),
            base_path=normalize_base_path(env.get(ENV_BASE_PATH, ""), ENV_BASE_PATH),
            timeout_margin_ms=_int(env, ENV_TIMEOUT_MARGIN_MS, 500, minimum=0),
            max_concurrency=_int(env, "AWS_LAMBDA_MAX_CONCURRENCY", 1, minimum=1),
            snap_start=env.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start",
            log_level=_log_level(env.get(ENV_LOG_LEVEL, "INFO")),
            padding=_padding(env),
            sse=SSEOptions(
                heartbeat_s=_float(env, ENV_SSE_HEARTBEAT_S, DEFAULT_HEARTBEAT_S),
                error_event=_bool(env, ENV_SSE_ERROR_EVENT),
                error_detail=_bool(env, ENV_SSE_ERROR_DETAIL),
            ),
            exclude_headers=header_names(
                [name.strip() for name in env.get(ENV_EXCLUDE_HEADERS, "").split(",") if name.strip()],
                ENV_EXCLUDE_HEADERS,
            ),
            end_record=_end_record(env.get(ENV_END_RECORD, "")),
        )


def _invoke_mode(value: str) -> InvokeMode:
    mode = _MODE_ALIASES.get(value.strip().lower())
    if mode is None:
        raise ConfigError(f"{ENV_INVOKE_MODE} must be RESPONSE_STREAM or BUFFERED, not {value!r}")
    return mode


_LOG_LEVELS = ("CRITICAL", "FATAL", "ERROR", "WARNING", "WARN", "INFO", "DEBUG", "NOTSET")


def _log_level(value: str) -> str:
    # Checked here: an unknown name would make logging raise ValueError before the init error is reported.
    level = value.strip().upper() or "INFO"
    if level not in _LOG_LEVELS:
        raise ConfigError(
            f"{ENV_LOG_LEVEL} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not {value!r}"
        )
    return level


def _lifespan(value: str) -> LifespanMode:
    for mode in LIFESPAN_MODES:
        if value.strip().lower() == mode:
            return mode
    raise ConfigError(f"{ENV_LIFESPAN} must be one of {', '.join(LIFESPAN_MODES)}, not {value!r}")


def _padding(env: Mapping[str, str]) -> PaddingPolicy:
    mode = env.get(ENV_PADDING, "idle").strip().lower()
    if mode not in PADDING_MODES:
        raise ConfigError(f"{ENV_PADDING} must be one of {', '.join(PADDING_MODES)}, not {mode!r}")
    return PaddingPolicy(
        mode=mode,
        idle_ms=_int(env, ENV_PADDING_IDLE_MS, int(DEFAULT_IDLE_MS), minimum=0),
        threshold=_int(env, ENV_PADDING_THRESHOLD, DEFAULT_THRESHOLD, minimum=1),
        budget=_int(env, ENV_PADDING_BUDGET, DEFAULT_BUDGET, minimum=0),
        rate=_int(env, ENV_PADDING_RATE, DEFAULT_RATE, minimum=0),
        latency_ms=_int(env, ENV_PADDING_LATENCY_MS, int(DEFAULT_LATENCY_MS), minimum=0),
    )


def _end_record(value: str) -> frozenset[EndRecordFormat]:
    try:
        return parse_formats(value)
    except ValueError as exc:
        raise ConfigError(f"{ENV_END_RECORD}: {exc}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, not {value}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name, "")
    if not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value
