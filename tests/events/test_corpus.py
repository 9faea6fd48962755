"""Every file in corpus/ is one quirk of a real event source, with the scope it must produce."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from lambda_asgi_stream.events import parse_event

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.json"))


def _comparable(key: str, value: Any) -> Any:
    """Scope values in the JSON spelling the corpus uses (bytes as latin-1 text, tuples as lists)."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if key == "headers":
        return [[k.decode("latin-1"), v.decode("latin-1")] for k, v in value]
    if isinstance(value, tuple):
        return list(value)
    return value


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_event_gives_expected_scope(path: Path) -> None:
    case = json.loads(path.read_text("utf-8"))
    context = object()
    request = parse_event(case["event"], context, base_path=case["base_path"])
    expected = case["expected"]

    assert request.integration == expected["integration"]
    assert request.multi_value_headers == expected["multi_value_headers"]
    if "body_base64" in expected:
        assert request.body == base64.b64decode(expected["body_base64"])
    else:
        assert request.body == expected["body"].encode("utf-8")
    for key, value in expected["scope"].items():
        assert _comparable(key, request.scope[key]) == value, key

    # What every scope has, whatever the quirk (ASGI 3 HTTP scope, spec 2.3; Mangum's keys).
    scope = request.scope
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert scope["aws.event"] is case["event"]
    assert scope["aws.context"] is context
    assert isinstance(scope["raw_path"], bytes) and scope["raw_path"].isascii()
    assert scope["path"].startswith(scope["root_path"])
    assert all(k == k.lower() for k, _ in scope["headers"])


def test_corpus_covers_every_integration_and_mode() -> None:
    cases = [json.loads(p.read_text("utf-8")) for p in CORPUS]
    seen = {(c["expected"]["integration"], c["expected"]["multi_value_headers"]) for c in cases}
    assert seen == {
        ("function-url", False),
        ("http-api", False),
        ("rest", True),
        ("alb", False),
        ("alb", True),
        ("lambda-at-edge", True),
        ("vpc-lattice", False),
    }
