"""A small FastAPI app for the cold-start figures: ``GET /hello`` returns a JSON object (``BODY``).

Mangum's handler for it lives in ``bench_fastapi_mangum``, so that our runtime's cold path, which imports
this module, does not import Mangum.
"""

from fastapi import FastAPI

app = FastAPI()

BODY = b'{"message":"Hello, world!"}'


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "Hello, world!"}
