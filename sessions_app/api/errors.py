"""Every error of the REST API in one shape: ``{"code": "...", "error": "..."}``.

DRF's own errors (404, 403, validation, throttling) come as ``{"detail": ...}`` or
``{field: [...]}``; clients of this API read ``code`` and ``error``, so they are reshaped here.
Validation errors keep their per-field messages under ``fields``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

_CODES = {
    exceptions.NotFound: "NOT_FOUND",
    exceptions.PermissionDenied: "FORBIDDEN",
    exceptions.NotAuthenticated: "NOT_AUTHENTICATED",
    exceptions.AuthenticationFailed: "NOT_AUTHENTICATED",
    exceptions.ValidationError: "BAD_REQUEST",
    exceptions.ParseError: "BAD_REQUEST",
    exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    exceptions.Throttled: "THROTTLED",
}


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        field, problems = next(iter(detail.items()), ("", ""))
        text = _first_message(problems)
        return f"{field}: {text}" if field not in ("", "non_field_errors") else text
    if isinstance(detail, list):
        return " ".join(_first_message(item) for item in detail)
    return str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):  # e.g. a malformed UUID in the URL: no such object
        exc = Http404()
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = next((name for kind, name in _CODES.items() if isinstance(exc, kind)), None)
    if code is None:
        code = "NOT_FOUND" if response.status_code == status.HTTP_404_NOT_FOUND else "ERROR"
    detail = getattr(exc, "detail", None)
    body: dict[str, Any] = {"code": code, "error": _first_message(detail) if detail is not None else "Not found."}
    if isinstance(exc, exceptions.ValidationError) and isinstance(detail, dict):
        body["fields"] = {field: [str(p) for p in problems] if isinstance(problems, list) else [str(problems)]
                          for field, problems in detail.items()}
    response.data = body
    return response
