"""The base path option (Mangum's ``api_gateway_base_path``) in the one form the parsers compare against."""

from __future__ import annotations

import pytest

from lambda_asgi_stream import ConfigError
from lambda_asgi_stream.events import normalize_base_path, parse_event
from lambda_asgi_stream.events.build import build_event


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", ""),
        ("/", ""),
        ("//", ""),
        ("v1", "/v1"),  # Mangum accepts it without the slash
        ("/v1", "/v1"),
        ("/v1/", "/v1"),
        ("api/v1/", "/api/v1"),
        ("/caf%C3%A9", "/caf\u00e9"),  # compared against the decoded path
        ("/~user/a-b_c.d", "/~user/a-b_c.d"),
    ],
)
def test_normalised(given: str, expected: str) -> None:
    assert normalize_base_path(given) == expected


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("/v1?x=1", "'?'"),
        ("/v1#top", "'#'"),
        ("/v 1", "' '"),
        (" /v1", "' '"),
        ("/v1\n", "'\\n'"),
        ("/v1/../admin", "'..' segment"),
        ("./v1", "'.' segment"),
        ("/v1//x", "empty segment"),
        ("/%ff", "not UTF-8"),
        ("/a%3Fb", "'?'"),  # an escaped "?" decodes to one
    ],
)
def test_what_cannot_be_a_path_is_a_config_error(given: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        normalize_base_path(given, "api_gateway_base_path")
    assert says in str(info.value)
    assert "api_gateway_base_path" in str(info.value)


def test_not_a_string() -> None:
    with pytest.raises(ConfigError, match="must be a string"):
        normalize_base_path(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("integration", ["function-url", "rest", "alb", "lambda-at-edge", "vpc-lattice"])
def test_base_path_without_its_slash_still_matches(integration: str) -> None:
    # Before: base_path="v1" matched no request path at all, and every route of a mounted app 404'd.
    event = build_event(integration, method="GET", path="/v1/users")  # type: ignore[arg-type]
    scope = parse_event(event, base_path="v1").scope
    assert (scope["root_path"], scope["path"]) == ("/v1", "/v1/users")
    other = parse_event(build_event(integration, method="GET", path="/v10/users"), base_path="v1")  # type: ignore[arg-type]
    assert other.scope["root_path"] == ""
