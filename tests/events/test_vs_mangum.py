"""Where Mangum 0.22 maps an event wrongly (docs/migrating-from-mangum.md), we map it right. Each test runs
the same event through both adapters and a real Starlette app, and shows the difference the app sees."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mangum import Mangum
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lambda_asgi_stream import Adapter
from lambda_asgi_stream.encoder import header_names, shape_response
from lambda_asgi_stream.events import parse_event
from lambda_asgi_stream.events.build import build_event

from .test_handlers import run

CORPUS = Path(__file__).parent / "corpus"


async def inspect(request: Request) -> JSONResponse:
    scope = request.scope
    return JSONResponse(
        {
            "path": scope["path"],
            "raw_path": None if scope.get("raw_path") is None else scope["raw_path"].decode("latin-1"),
            "root_path": scope.get("root_path", ""),
            "route": request.path_params.get("rest"),
            "query": scope["query_string"].decode("latin-1"),
            "cookies": request.cookies,
            "self_url": str(request.url_for("inspect", rest=request.path_params.get("rest", ""))),
        }
    )


async def png(request: Request) -> Response:
    return Response(b"\x89PNG\r\n", media_type="image/png", headers={"server": "uvicorn", "x-trace": "1"})


app = Starlette(
    routes=[Route("/img.png", png), Route("/{rest:path}", inspect, name="inspect", methods=["GET", "POST"])]
)


@pytest.fixture(scope="module")
def ours() -> Iterator[Adapter]:
    adapter = Adapter(app, lifespan="off")
    yield adapter
    adapter.close()


def _event(name: str) -> dict[str, Any]:
    return json.loads((CORPUS / f"{name}.json").read_text("utf-8"))["event"]  # type: ignore[no-any-return]


def _body(response: dict[str, Any]) -> dict[str, Any]:
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])  # type: ignore[no-any-return]


def test_rest_stage_kept_in_root_path_so_urls_work(ours: Adapter) -> None:
    event = _event("rest_stage_on_execute_api")
    theirs = _body(Mangum(app, lifespan="off")(event, None))
    mine = _body(ours(event, None))
    host = event["requestContext"]["domainName"]
    # Mangum loses the stage: a link the app builds points at /items/7, which API Gateway answers with 403.
    assert theirs["root_path"] == ""
    assert theirs["self_url"] == f"https://{host}/items/7"
    assert mine["root_path"] == "/prod"
    assert mine["route"] == "items/7"
    assert mine["self_url"] == f"https://{host}/prod/items/7"


def test_raw_path_is_filled_and_the_path_decoded_once(ours: Adapter) -> None:
    event = _event("url_encoded_slash_and_unicode")
    theirs = _body(Mangum(app, lifespan="off")(event, None))
    mine = _body(ours(event, None))
    # Mangum decodes too but sets raw_path to None: the app cannot tell "a%2Fb" (one segment) from "a/b".
    assert theirs["raw_path"] is None
    assert theirs["path"] == "/files/a/b/\u00e9t\u00e9 x"
    assert mine["raw_path"] == "/files/a%2Fb/%C3%A9t%C3%A9%20x"
    assert mine["path"] == "/files/a/b/\u00e9t\u00e9 x"


def test_rest_multiple_cookies_reach_the_app_as_separate_cookies(ours: Adapter) -> None:
    event = _event("rest_multiple_cookies")
    theirs = _body(Mangum(app, lifespan="off")(event, None))
    mine = _body(ours(event, None))
    # Mangum joins repeated Cookie headers with ", ": the second cookie is swallowed by the first.
    assert theirs["cookies"] == {"a": "1, b=2"}
    assert mine["cookies"] == {"a": "1", "b": "2"}


def test_alb_query_passed_as_received(ours: Adapter) -> None:
    event = _event("alb_single_value")
    event["queryStringParameters"] = {"flag": "", "q": "a%7Eb"}
    theirs = _body(Mangum(app, lifespan="off")(event, None))
    mine = _body(ours(event, None))
    # Mangum decodes and re-encodes the query, changing what the client sent.
    assert theirs["query"] == "flag=&q=a~b"
    assert mine["query"] == "flag=&q=a%7Eb"


def test_null_headers_do_not_crash(ours: Adapter) -> None:
    event = _event("url_missing_optional_fields")
    with pytest.raises(AttributeError):
        Mangum(app, lifespan="off")(event, None)
    assert _body(ours(event, None))["path"] == "/"


def test_lambda_at_edge_response_is_what_cloudfront_reads(ours: Adapter) -> None:
    event = _event("edge_origin_request_post")
    theirs = Mangum(app, lifespan="off")(event, None)
    mine = ours(event, None)
    # Mangum returns an int status and isBase64Encoded, a field CloudFront does not know.
    assert theirs["status"] == 200 and "bodyEncoding" not in theirs
    assert mine["status"] == "200" and mine["statusDescription"] == "OK" and mine["bodyEncoding"] == "text"
    # Mangum passes the uri still percent-encoded as the path, and no raw_path.
    assert json.loads(theirs["body"])["path"] == "/comments/caf%C3%A9"
    assert json.loads(mine["body"])["path"] == "/comments/caf\u00e9"
    assert json.loads(mine["body"])["raw_path"] == "/comments/caf%C3%A9"


def test_lambda_at_edge_binary_body_is_marked_base64(ours: Adapter) -> None:
    event = _event("edge_viewer_request_no_host")
    event["Records"][0]["cf"]["request"]["uri"] = "/img.png"
    event["Records"][0]["cf"]["request"]["headers"]["host"] = [{"key": "Host", "value": "example.org"}]
    theirs = Mangum(app, lifespan="off")(event, None)
    mine = ours(event, None)
    # CloudFront ignores Mangum's isBase64Encoded: the viewer gets the base64 text instead of the image.
    assert theirs["isBase64Encoded"] is True and "bodyEncoding" not in theirs
    assert mine["bodyEncoding"] == "base64" and base64.b64decode(mine["body"]) == b"\x89PNG\r\n"


def test_vpc_lattice_v2_is_served_where_mangum_crashes(ours: Adapter) -> None:
    event = _event("lattice_v2_list_values")
    event["method"] = "GET"
    with pytest.raises(KeyError):  # Mangum reads it as an HTTP API event and looks for requestContext.http
        Mangum(app, lifespan="off")(event, None)
    mine = ours(event, None)
    assert mine["statusCode"] == 200 and mine["statusDescription"] == "200 OK"
    assert json.loads(mine["body"])["query"] == "tag=a%20b&tag=c%26d&n=1"


def test_text_mime_types_replace_the_defaults_as_in_mangum() -> None:
    event = build_event("rest", method="GET", path="/page")
    theirs = Mangum(app, lifespan="off", text_mime_types=["text/html"])(event, None)
    request = parse_event(event)
    mine = shape_response(request, *run(request, app), text_mime_types=("text/html",))
    # application/json is no longer a text type for either: both send the JSON base64-encoded.
    assert theirs["isBase64Encoded"] is mine["isBase64Encoded"] is True
    assert json.loads(base64.b64decode(theirs["body"]))["path"] == "/page"
    assert json.loads(base64.b64decode(mine["body"]))["path"] == "/page"


def _names(out: dict[str, Any]) -> set[str]:
    return {k.lower() for k in {**(out.get("headers") or {}), **(out.get("multiValueHeaders") or {})}}


@pytest.mark.parametrize("integration", ["rest", "alb", "http-api", "function-url"])
def test_exclude_headers_as_in_mangum_and_for_payload_2_too(integration: Any) -> None:
    event = build_event(integration, method="GET", path="/img.png")
    theirs = Mangum(app, lifespan="off", exclude_headers=["Server"])(event, None)
    request = parse_event(event)
    mine = shape_response(request, *run(request, app), exclude_headers=header_names(["Server"]))
    assert "server" not in _names(mine) and "x-trace" in _names(mine)
    # Mangum forgets the option for payload 2.0 (its HTTPGateway never calls handle_exclude_headers).
    assert ("server" in _names(theirs)) is (integration in ("http-api", "function-url"))
