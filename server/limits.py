"""Request guards: body size (declared and actually received) and API keys.

The size guard is ASGI middleware that wraps `receive`: a declared Content-Length over the limit
is refused before the app runs, and a chunked body is counted as it arrives, so an upload
without a Content-Length cannot grow past the limit either.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import errors


class BodyTooLarge(errors.APIError):
    def __init__(self, limit: int) -> None:
        err = errors.too_large(limit)
        super().__init__(err.status, err.code, err.message)


class BodyLimitMiddleware:
    """413 for HTTP bodies over `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await errors.error_response(BodyTooLarge(self.max_bytes))(scope, receive, send)
                    return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the handler's read, so the app's APIError handler answers.
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_allowed(keys: list[str], candidate: str | None) -> bool:
    """True when no keys are configured, or `candidate` matches one (constant-time compare)."""
    if not keys:
        return True
    if not candidate:
        return False
    found = False
    for key in keys:
        # Compare against every key so the timing does not reveal which one nearly matched.
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found
