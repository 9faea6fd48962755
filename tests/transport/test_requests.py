"""Requests and responses round-trip through each integration's event and response format."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from lambda_asgi_stream.testing import LambdaInfo, LambdaTransport

from .apps import Probe, fastapi_app, starlette_app
from .conftest import BASE_URL, LIMIT

pytestmark = pytest.mark.anyio

# (integration, invoke mode): every integration in its default mode, plus the other mode where Lambda
# offers both (a buffered Function URL, a buffered REST API).
MODES = [
    ("function-url", "RESPONSE_STREAM"),
    ("rest", "RESPONSE_STREAM"),
    ("http-api", "BUFFERED"),
    ("alb", "BUFFERED"),
    ("function-url", "BUFFERED"),
    ("rest", "BUFFERED"),
]


async def _call(transport: LambdaTransport, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        with anyio.fail_after(LIMIT):
            return await client.request(method, url, **kwargs)


def _info(response: httpx.Response) -> LambdaInfo:
    info = response.extensions["lambda"]
    assert isinstance(info, LambdaInfo)
    return info


@pytest.mark.parametrize(("integration", "mode"), MODES)
async def test_json(integration: Any, mode: Any) -> None:
    transport = LambdaTransport(fastapi_app(Probe()), integration=integration, invoke_mode=mode)
    response = await _call(transport, "GET", "/json", params={"q": "x y"})
    assert response.status_code == 200
    assert response.json() == {"hello": "lambda", "q": "x y"}
    assert response.headers["content-type"] == "application/json"
    info = _info(response)
    assert info.invoke_mode == mode
    if mode == "RESPONSE_STREAM":
        assert info.prelude is not None and info.prelude.raw["statusCode"] == 200
        assert info.buffered is None
    else:
        assert info.buffered is not None and info.buffered["statusCode"] == 200
        assert info.raw_prelude == b"" and info.writes == []


def test_default_invoke_mode_streams_only_where_lambda_can() -> None:
    app = fastapi_app(Probe())
    modes = {
        i: LambdaTransport(app, integration=i).invoke_mode
        for i in ("function-url", "rest", "http-api", "alb")
    }
    assert modes == {
        "function-url": "RESPONSE_STREAM",
        "rest": "RESPONSE_STREAM",
        "http-api": "BUFFERED",
        "alb": "BUFFERED",
    }
    with pytest.raises(ValueError, match="invoke_mode"):
        LambdaTransport(app, invoke_mode="STREAM")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="buffering"):
        LambdaTransport(app, buffering="on")
    with pytest.raises(ValueError, match="integration"):
        LambdaTransport(app, integration="lambda")  # type: ignore[arg-type]


@pytest.mark.parametrize(("integration", "mode"), MODES)
async def test_json_request_body(integration: Any, mode: Any) -> None:
    transport = LambdaTransport(fastapi_app(Probe()), integration=integration, invoke_mode=mode)
    item = {"name": "caf\u00e9 \u2615", "tags": ["a", "b"]}
    response = await _call(transport, "POST", "/items", json=item)
    assert response.status_code == 201
    assert response.json() == {"created": item}
    event = _info(response).event
    assert event["isBase64Encoded"] is False  # JSON travels as text in the event


@pytest.mark.parametrize(("integration", "mode"), MODES)
async def test_binary_request_and_response_bodies(integration: Any, mode: Any) -> None:
    import hashlib

    data = bytes(range(256)) * 64 + b"\x00\xff\r\n"
    transport = LambdaTransport(fastapi_app(Probe()), integration=integration, invoke_mode=mode)
    response = await _call(
        transport, "POST", "/binary", content=data, headers={"content-type": "application/octet-stream"}
    )
    assert response.status_code == 200
    assert response.headers["x-sha256"] == hashlib.sha256(data).hexdigest()
    assert response.headers["x-length"] == str(len(data))
    assert response.content == data[::-1]
    info = _info(response)
    assert info.event["isBase64Encoded"] is True
    if info.buffered is not None:
        assert info.buffered["isBase64Encoded"] is True


PATH = "/api/a%20b/c%2Fd/%C3%A9;x"
QUERY = [("q", "a b"), ("q", "c&d"), ("e", "\u00e9"), ("empty", ""), ("plus", "1+1")]


@pytest.mark.parametrize(("integration", "mode"), MODES)
async def test_paths_and_query_strings_round_trip(integration: Any, mode: Any) -> None:
    transport = LambdaTransport(
        starlette_app(Probe()), integration=integration, invoke_mode=mode, base_path="/api"
    )
    response = await _call(transport, "GET", PATH, params=QUERY)
    sent_query = response.request.url.query.decode()
    got = response.json()
    # What every integration agrees on: the decoded path, the base path as root_path, the query values.
    assert got["path"] == "/api/a b/c/d/\u00e9;x"
    assert got["root_path"] == "/api"
    assert [tuple(pair) for pair in got["query"]] == QUERY
    assert got["scheme"] == "https" and got["server"] == ["lambda", 443]
    # Where they differ, they differ as on AWS.
    if integration == "http-api":
        assert got["raw_path"] == "/api/a%20b/c/d/%C3%A9;x"  # HTTP APIs hand over the path decoded
    else:
        assert got["raw_path"] == PATH
    if integration == "rest":
        assert got["query_string"] == sent_query.replace("+", "%20")  # REST re-encodes decoded values
    else:
        assert got["query_string"] == sent_query


@pytest.mark.parametrize(("integration", "mode"), MODES)
async def test_base_path_becomes_root_path_for_routing_and_url_for(integration: Any, mode: Any) -> None:
    transport = LambdaTransport(
        fastapi_app(Probe()), integration=integration, invoke_mode=mode, base_path="/api"
    )
    response = await _call(transport, "GET", "/api/items/7")
    assert response.status_code == 200
    assert response.json() == {"id": 7, "root_path": "/api", "url": "https://lambda/api/items/7"}


@pytest.mark.parametrize(("integration", "mode"), MODES)
async def test_cookies_from_the_prelude_reach_the_cookie_jar(integration: Any, mode: Any) -> None:
    transport = LambdaTransport(fastapi_app(Probe()), integration=integration, invoke_mode=mode)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        with anyio.fail_after(LIMIT):
            response = await client.get("/cookies/set")
            assert response.status_code == 200
            set_cookies = response.headers.get_list("set-cookie")
            assert len(set_cookies) == 2  # never comma-joined, though Expires holds a comma
            assert set_cookies[0].startswith("session=abc123;") and "HttpOnly" in set_cookies[0]
            assert (
                set_cookies[1].startswith("theme=dark;") and "Wed, 21 Oct 2037 07:28:00 GMT" in set_cookies[1]
            )
            assert dict(response.cookies) == {"session": "abc123", "theme": "dark"}
            assert response.headers.get_list("x-multi", split_commas=True) == ["a", "b"]
            info = _info(response)
            if info.prelude is not None:
                assert [c.split(";")[0] for c in info.prelude.cookies] == ["session=abc123", "theme=dark"]
                assert "set-cookie" not in info.prelude.raw["headers"]
            # The jar sends them back; payload 2.0 carries them in the event's `cookies` array.
            echoed = await client.get("/cookies/echo")
    assert echoed.json() == {"session": "abc123", "theme": "dark"}
    event = _info(echoed).event
    if integration in ("function-url", "http-api"):
        assert sorted(event["cookies"]) == ["session=abc123", "theme=dark"]


@pytest.mark.parametrize(("integration", "mode"), MODES)
async def test_redirects(integration: Any, mode: Any) -> None:
    transport = LambdaTransport(fastapi_app(Probe()), integration=integration, invoke_mode=mode)
    response = await _call(transport, "GET", "/old")
    assert response.status_code == 307
    assert response.headers["location"] == "/json?q=moved"
    followed = await _call(transport, "GET", "/old", follow_redirects=True)
    assert followed.status_code == 200
    assert followed.json() == {"hello": "lambda", "q": "moved"}
    assert [r.status_code for r in followed.history] == [307]
    assert str(followed.url) == "https://lambda/json?q=moved"


@pytest.mark.parametrize(("integration", "mode"), MODES)
async def test_head_has_headers_and_no_body(integration: Any, mode: Any) -> None:
    transport = LambdaTransport(starlette_app(Probe()), integration=integration, invoke_mode=mode)
    get = await _call(transport, "GET", "/page")
    head = await _call(transport, "HEAD", "/page")
    assert get.content == b"body that HEAD must not carry"
    assert head.status_code == 200
    assert head.content == b""  # Starlette sends the body on HEAD; the HTTP layer never delivers it
    assert head.headers["x-kind"] == "page"
    assert head.headers["content-type"] == get.headers["content-type"]
    info = _info(head)
    if info.prelude is not None:  # streamed: the runtime itself drops the body (cycle.py, RFC 9110 9.3.2)
        assert [size for _, size in info.writes] == [len(info.raw_prelude)]
    else:
        assert info.buffered is not None and info.buffered["body"] == ""


async def test_streamed_responses_drop_hop_by_hop_headers() -> None:
    # A streamed response is chunked by Lambda: a content-length from the app must not reach the client.
    transport = LambdaTransport(starlette_app(Probe()))
    response = await _call(transport, "GET", "/page")
    assert response.content == b"body that HEAD must not carry"
    assert "content-length" not in response.headers
    assert _info(response).prelude is not None


@pytest.mark.parametrize("integration", ["function-url", "http-api", "rest", "alb"])
async def test_buffered_mode_decodes_the_integrations_response_dict(integration: Any) -> None:
    transport = LambdaTransport(fastapi_app(Probe()), integration=integration, invoke_mode="BUFFERED")
    response = await _call(transport, "GET", "/cookies/set")
    payload = _info(response).buffered
    assert payload is not None
    assert payload["statusCode"] == 200 and payload["body"] == "set" and payload["isBase64Encoded"] is False
    if integration in ("function-url", "http-api"):
        assert [c.split(";")[0] for c in payload["cookies"]] == ["session=abc123", "theme=dark"]
    elif integration == "rest":
        assert len(payload["multiValueHeaders"]["set-cookie"]) == 2
    else:  # ALB, multi-value target group (the event builder's default)
        assert payload["statusDescription"] == "200 OK"
        assert len(payload["multiValueHeaders"]["set-cookie"]) == 2
    assert dict(response.cookies) == {"session": "abc123", "theme": "dark"}
    assert response.text == "set"


@pytest.mark.parametrize(("integration", "mode"), MODES)
async def test_non_ascii_response_header_values(integration: Any, mode: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        value = "attachment; filename*=UTF-8''r\u00e9sum\u00e9 \u20ac.pdf".encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-disposition", value)]}
        )
        await send({"type": "http.response.body", "body": b"pdf"})

    transport = LambdaTransport(app, integration=integration, invoke_mode=mode, lifespan="off")
    response = await _call(transport, "GET", "/file")
    assert response.status_code == 200 and response.content == b"pdf"
    raw = dict(response.headers.raw)[b"content-disposition"]
    assert raw.decode() == "attachment; filename*=UTF-8''r\u00e9sum\u00e9 \u20ac.pdf"
