"""Errors of the OpenAI-compatible API in OpenAI's shape, with our codes.

OpenAI's clients read ``{"error": {"message", "type", "param", "code"}}``; the official SDK turns
the HTTP status into its exception class (400 ``BadRequestError``, 401 ``AuthenticationError``,
413 ``APIStatusError``, ...) and keeps the body. ``code`` carries our codes (``EMPTY_FILE``,
``NOT_AUDIO``, ``FILE_TOO_LARGE``, ...), the same as the rest of our API uses.

Every error but a throttle says ``x-should-retry: false``: the SDK retries 408, 409, 429 and 5xx
by itself, and each retry of a transcription would upload the file again as one more job.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response

from sessions_app.api.errors import api_exception_handler

__all__ = ["OpenAIError", "error_body", "error_response", "openai_exception_handler"]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


class OpenAIError(exceptions.APIException):
    """An error a /v1 view raises; the handler answers it as OpenAI's error object."""

    def __init__(
        self, code: str, message: str, http_status: int = status.HTTP_400_BAD_REQUEST, *, param: str | None = None,
        **extra: Any,
    ) -> None:  # fmt: skip
        super().__init__(detail=message, code=code)
        self.status_code = http_status
        self.code = code
        self.message = message
        self.param = param
        self.extra = extra


def error_body(code: str, message: str, http_status: int, param: str | None = None, **extra: Any) -> dict[str, Any]:
    """OpenAI's error object; ``extra`` adds fields of ours (such as ``job_id``) beside the standard ones."""
    kind = _TYPES.get(http_status, "server_error" if http_status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code, **extra}}


def error_response(
    code: str, message: str, http_status: int = status.HTTP_400_BAD_REQUEST, *, param: str | None = None, **extra: Any
) -> Response:
    response = Response(error_body(code, message, http_status, param, **extra), status=http_status)
    if http_status != status.HTTP_429_TOO_MANY_REQUESTS:
        response["x-should-retry"] = "false"
    return response


def openai_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's errors (bad token, throttle, parse errors...) reshaped from our REST shape into OpenAI's."""
    if isinstance(exc, OpenAIError):
        return error_response(exc.code, exc.message, exc.status_code, param=exc.param, **exc.extra)
    ours = api_exception_handler(exc, context)
    if ours is None:
        return None  # not an API error: Django's 500
    body = ours.data
    response = error_response(str(body["code"]), str(body["error"]), ours.status_code)
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if header in ours:
            response[header] = ours[header]
    return response
