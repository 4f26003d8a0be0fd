"""Request bodies as the HTTP routes take them from anyone: capped before they are read whole, and
JSON only where a page of another site could otherwise post a form (text/plain) without asking."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response


async def read_capped_body(request: Request, limit: int, what: str = "body") -> bytes | Response:
    """A request's body, at most `limit` bytes: 413 for more, refused before reading it all (on its
    declared length, else as soon as it passes the limit)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return JSONResponse({"detail": f"{what} too large: {declared} bytes (at most {limit})"}, status_code=413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return JSONResponse({"detail": f"{what} too large (at most {limit} bytes)"}, status_code=413)
    return bytes(body)


async def read_json_body(request: Request, limit: int) -> bytes | Response:
    """The body of a JSON request, at most `limit` bytes: 415 for any other content type (a cross-site
    form posts text/plain without asking), 413 for more."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        return JSONResponse({"detail": "Content-Type must be application/json"}, status_code=415)
    return await read_capped_body(request, limit)
