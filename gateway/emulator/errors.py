"""Clerk's error envelope and the exception that carries it out of any handler.

Every failure the emulator reports looks like Clerk's: `{"errors": [{"code", "message",
"long_message"}], "clerk_trace_id"}` with a 4xx status. Unexpected exceptions are logged and
answered with a 500 envelope, never a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

log = logging.getLogger("gateway.emulator")


class ClerkAPIError(Exception):
    def __init__(self, status: int, code: str, message: str, long_message: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.long_message = long_message or message

    def envelope(self) -> dict[str, Any]:
        return error_envelope(self.code, self.message, self.long_message)


def error_envelope(code: str, message: str, long_message: str | None = None) -> dict[str, Any]:
    return {
        "errors": [{"code": code, "message": message, "long_message": long_message or message}],
        "clerk_trace_id": "emulator",
    }


def not_found(what: str = "resource") -> ClerkAPIError:
    return ClerkAPIError(404, "resource_not_found", "not found", f"The requested {what} was not found.")


def param_missing(name: str, status: int = 422) -> ClerkAPIError:
    return ClerkAPIError(status, "form_param_missing", f"{name} must be included.", f"{name} must be included.")


def param_invalid(name: str, detail: str) -> ClerkAPIError:
    return ClerkAPIError(400, "form_param_format_invalid", f"{name} is invalid.", f"{name} is invalid: {detail}")


def signed_out() -> ClerkAPIError:
    return ClerkAPIError(401, "signed_out", "Signed out", "You are signed out")


def secret_key_invalid() -> ClerkAPIError:
    return ClerkAPIError(
        401,
        "clerk_key_invalid",
        "Secret Key is invalid",
        "The provided Clerk Secret Key is invalid. Make sure that your Clerk Secret Key is correct.",
    )


def _response(status: int, body: dict[str, Any]) -> Response[dict[str, Any]]:
    return Response(body, status_code=status, headers={"Cache-Control": "no-store"})


def handle_clerk_error(_: Request[Any, Any, Any], error: ClerkAPIError) -> Response[dict[str, Any]]:
    return _response(error.status, error.envelope())


def handle_http_exception(_: Request[Any, Any, Any], error: HTTPException) -> Response[dict[str, Any]]:
    status = error.status_code
    if isinstance(error, NotFoundException) or status == 404:
        return _response(404, not_found().envelope())
    if isinstance(error, ValidationException) or status == 400:
        return _response(400, error_envelope("form_param_format_invalid", "is invalid", str(error.detail)))
    if status == 405:
        return _response(405, error_envelope("method_not_allowed", "Method not allowed", str(error.detail)))
    code = "request_invalid" if status < 500 else "internal_clerk_error"
    return _response(status, error_envelope(code, str(error.detail), str(error.detail)))


def handle_unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
    return _response(
        HTTP_500_INTERNAL_SERVER_ERROR,
        error_envelope("internal_clerk_error", "Oops, an unexpected error occurred", "Unexpected emulator error"),
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    ClerkAPIError: handle_clerk_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
