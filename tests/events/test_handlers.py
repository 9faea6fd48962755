"""Custom event handlers (Mangum's ``custom_handlers``): tried before the built-in formats, their requests
answered buffered in the shape they make; Mangum-style handler classes work unchanged."""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
import pytest
from mangum.handlers import LambdaAtEdge
from mangum.handlers.api_gateway import APIGateway
from mangum.types import LambdaConfig, LambdaContext, LambdaEvent
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from lambda_asgi_stream import ConfigError, MalformedEventError
from lambda_asgi_stream._types import Headers
from lambda_asgi_stream.encoder import buffered_response, header_names, shape_response
from lambda_asgi_stream.events import EventHandler, Request, event_handlers, parse_event
from lambda_asgi_stream.events.build import build_event
from lambda_asgi_stream.events.request import HandledRequest


async def echo(request: StarletteRequest) -> JSONResponse:
    body = await request.body()
    headers = {"x-powered-by": "starlette", "server": "uvicorn"}
    return JSONResponse(
        {"method": request.method, "path": request.url.path, "body": body.decode(), "q": request.url.query},
        headers=headers,
    )


app = Starlette(routes=[Route("/{rest:path}", echo, methods=["GET", "POST"])])


def run(request: Request, asgi_app: Any = app) -> tuple[int, Headers, bytes]:
    """Serve ``request`` with an app: the status, headers and body it answers."""
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": request.body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"], out["headers"] = message["status"], list(message["headers"])
        else:
            out["body"] += message.get("body", b"")

    anyio.run(asgi_app, dict(request.scope), receive, send)
    return out["status"], out["headers"], out["body"]


class StepFunctionsHandler:
    """A task state that sends ``{"task": {"verb", "route", "payload"}}`` and wants ``{"code", "result"}``."""

    def matches(self, event: Any, context: Any) -> bool:
        return isinstance(event, dict) and "task" in event

    def parse(self, event: dict[str, Any], context: Any, base_path: str) -> Request:
        task = event["task"]
        if not isinstance(task.get("route"), str):
            raise MalformedEventError("task.route", "is missing")
        payload = json.dumps(task.get("payload", {})).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": task.get("verb", "POST"),
            "scheme": "https",
            "path": task["route"],
            "raw_path": task["route"].encode(),
            "root_path": base_path,
            "query_string": b"",
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
            "client": None,
            "server": None,
            "extensions": {},
        }
        return Request(scope, payload, "custom", multi_value_headers=False, streamable=False)

    def response(
        self, request: Request, status: int, headers: Headers, body: bytes, text_mime_types: tuple[str, ...]
    ) -> dict[str, Any]:
        return {"code": status, "headers": [k.decode() for k, _ in headers], "result": json.loads(body)}


def test_protocol_handler_is_tried_first_and_shapes_its_response() -> None:
    handler = StepFunctionsHandler()
    assert isinstance(handler, EventHandler)
    handlers = event_handlers([handler])
    event = {"task": {"verb": "POST", "route": "/orders", "payload": {"id": 7}}}
    request = parse_event(event, None, handlers=handlers)
    assert type(request) is HandledRequest and request.handler is handler
    assert not request.streamable  # a handler's response is a dict: never streamed
    status, headers, body = run(request)
    shaped = shape_response(request, status, headers, body, exclude_headers=header_names(["X-Powered-By"]))
    assert shaped["code"] == 200
    assert shaped["result"] == {"method": "POST", "path": "/orders", "body": '{"id": 7}', "q": ""}
    assert "x-powered-by" not in shaped["headers"] and "server" in shaped["headers"]


def test_built_in_events_still_parse_when_handlers_do_not_match() -> None:
    event = build_event("function-url", method="GET", path="/x")
    request = parse_event(event, handlers=event_handlers([StepFunctionsHandler()]))
    assert type(request) is Request and request.integration == "function-url"
    with pytest.raises(MalformedEventError, match=r"task\.route"):
        parse_event({"task": {}}, handlers=event_handlers([StepFunctionsHandler()]))


class MangumStyleHandler(APIGateway):
    """What a Mangum user writes: an existing handler class told to take events tagged by their own
    gateway (Mangum docs, "Custom handlers")."""

    @classmethod
    def infer(cls, event: LambdaEvent, context: LambdaContext, config: LambdaConfig) -> bool:
        return event.get("source") == "internal-gateway"


def test_mangum_handler_class_works_unchanged() -> None:
    handlers = event_handlers(
        [MangumStyleHandler], text_mime_types=["application/json"], exclude_headers=["Server"]
    )
    event = build_event("rest", method="GET", path="/items", query_string="a=1")
    event["source"] = "internal-gateway"
    request = parse_event(event, "ctx", handlers=handlers)
    assert request.integration == "custom" and request.scope["aws.context"] == "ctx"
    status, headers, body = run(request)
    shaped = shape_response(request, status, headers, body)
    # Mangum's own response shape, with Mangum's own config applied (text types, excluded headers).
    assert shaped["statusCode"] == 200 and shaped["isBase64Encoded"] is False
    assert json.loads(shaped["body"])["path"] == "/items"
    assert "server" not in shaped["headers"] and shaped["headers"]["x-powered-by"] == "starlette"


def test_mangum_lambda_at_edge_class_as_a_custom_handler() -> None:
    # Mangum's own handler, taking over a built-in source: custom handlers come first.
    event = build_event(
        "lambda-at-edge", method="POST", path="/e", body=b"hi", headers=[("x-forwarded-port", "443")]
    )
    request = parse_event(
        event, handlers=event_handlers([LambdaAtEdge], text_mime_types=["application/json"])
    )
    status, headers, body = run(request)
    shaped = shape_response(request, status, headers, body)
    assert shaped["status"] == 200  # Mangum's int; the built-in Lambda@Edge shape sends "200"
    assert json.loads(shaped["body"])["body"] == "hi"


@pytest.mark.parametrize("bad", [object(), StepFunctionsHandler, "mangum.handlers.ALB", 42])
def test_anything_else_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="custom handler"):
        event_handlers([bad])


def test_no_handlers() -> None:
    assert event_handlers(None) == () and event_handlers([]) == ()


def test_shape_response_for_built_in_requests_is_buffered_response() -> None:
    request = parse_event(build_event("alb", method="GET", path="/"))
    headers = [(b"content-type", b"text/plain"), (b"server", b"x")]
    assert shape_response(request, 200, headers, b"ok") == buffered_response(
        200, headers, b"ok", "alb", multi_value_headers=request.multi_value_headers
    )
    dropped = shape_response(request, 200, headers, b"ok", exclude_headers=frozenset({"server"}))
    assert "server" not in dropped["multiValueHeaders"]
    assert base64.b64decode(shape_response(request, 200, headers, b"ok", text_mime_types=())["body"]) == b"ok"
