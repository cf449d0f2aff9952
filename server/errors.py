"""One error shape for every failure: `{"error": {"code": ..., "message": ...}}`.

Handlers turn library exceptions into 4xx answers so bad input never surfaces as a 500; only a
genuine bug reaches the catch-all handler, which hides the details from the client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

log = logging.getLogger("wavtok.server")


class APIError(Exception):
    """An error with its HTTP status and a stable machine-readable code."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def bad_request(message: str) -> APIError:
    return APIError(422, "invalid_request", message)


def invalid_audio(message: str) -> APIError:
    return APIError(422, "invalid_audio", message)


def invalid_codes(message: str) -> APIError:
    return APIError(422, "invalid_codes", message)


def too_large(limit: int) -> APIError:
    return APIError(413, "body_too_large", f"request body exceeds {limit} bytes")


def unsupported_media(content_type: str, allowed: list[str]) -> APIError:
    return APIError(
        415,
        "unsupported_media_type",
        f"unsupported Content-Type {content_type or '(none)'!r}; use one of {', '.join(allowed)}",
    )


def unknown_model(name: str, known: list[str]) -> APIError:
    return APIError(404, "unknown_model", f"unknown model {name!r}; served: {', '.join(known)}")


def overloaded(message: str = "server is overloaded; retry later") -> APIError:
    return APIError(503, "overloaded", message, headers={"Retry-After": "1"})


def not_ready() -> APIError:
    return APIError(503, "not_ready", "models are still loading", headers={"Retry-After": "2"})


def unauthorized() -> APIError:
    return APIError(
        401,
        "unauthorized",
        "missing or invalid API key (send 'Authorization: Bearer <key>')",
        headers={"WWW-Authenticate": "Bearer"},
    )


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(err: APIError) -> JSONResponse:
    return JSONResponse(error_body(err.code, err.message), err.status, headers=err.headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return "; ".join(parts) or "invalid request"


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", _validation_message(exc)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, __: ClientDisconnect) -> Response:
        # Nobody reads this; 499 (nginx's "client closed request") keeps the metrics honest.
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "internal server error"), 500)
