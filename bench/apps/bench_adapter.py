"""awslambdaric handler: our buffered Adapter over the raw bench app (``_HANDLER=bench_adapter.handler``)."""

from bench_app import app

from lambda_asgi_stream import Adapter

handler = Adapter(app)
