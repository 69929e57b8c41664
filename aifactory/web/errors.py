"""HTTP errors as exceptions: a route raises `HttpError`, Starlette's exception handler writes the body.

Every 4xx/5xx body is `{"error": <stable code>, "detail": <one human line>}`, and it is sent before any
side effect (routes parse and audit before they touch the bus).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["EXCEPTION_HANDLERS", "HttpError", "error_response"]


def error_response(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


class HttpError(Exception):
    """Refuse the request with `status`, a stable machine `code` and a one-line `detail`."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


async def _handle_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return error_response(exc.status, exc.code, exc.detail)


EXCEPTION_HANDLERS = {HttpError: _handle_http_error}
