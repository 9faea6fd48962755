"""awslambdaric handler: Mangum over the FastAPI bench app (``_HANDLER=bench_fastapi_mangum.handler``)."""

from bench_fastapi import app
from mangum import Mangum

handler = Mangum(app, lifespan="off")
