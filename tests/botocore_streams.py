"""boto3's own ``EventStream`` over bytes, built as botocore builds ``response["EventStream"]``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import botocore.session
from botocore.eventstream import EventStream
from botocore.parsers import create_parser


def lambda_event_stream(pieces: Iterable[bytes], on_close: Callable[[], None] | None = None) -> EventStream:
    """The ``EventStream`` that ``invoke_with_response_stream`` returns, reading ``pieces`` off the wire."""
    model = botocore.session.get_session().get_service_model("lambda")
    shape = model.operation_model("InvokeWithResponseStream").output_shape.members["EventStream"]

    class Raw:  # the part of urllib3's response botocore uses
        def stream(self) -> Iterator[bytes]:
            yield from pieces

        def close(self) -> None:
            if on_close is not None:
                on_close()

    # botocore's rest-json parser makes the EventStream with its event stream parser, as here.
    parser = create_parser(model.protocol)
    stream = parser._create_event_stream(  # type: ignore[attr-defined]
        {"body": Raw(), "context": {"operation_name": "InvokeWithResponseStream"}}, shape
    )
    assert isinstance(stream, EventStream)
    return stream
