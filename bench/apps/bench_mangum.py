"""awslambdaric handler: Mangum over the raw bench app (``_HANDLER=bench_mangum.handler``)."""

from bench_app import app
from mangum import Mangum

handler = Mangum(app, lifespan="off")
