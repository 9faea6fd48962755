"""Where Mangum 0.22 maps an event wrongly (lessons.md 5-9), we map it right. Each test runs the same
event through both adapters and a real Starlette app, and shows the difference the app sees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mangum import Mangum
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lambda_asgi_stream import Adapter

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


app = Starlette(routes=[Route("/{rest:path}", inspect, name="inspect")])


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
