"""The API token page: a signed-in user sees, creates (or regenerates) and revokes their token.

One token per user (DRF's ``authtoken``), the same key for ``/api/`` (``Token <key>``), the
OpenAI-compatible ``/v1/`` (``Bearer <key>``) and the WebSocket handshakes. Regenerating deletes
the old key first, so a leaked key stops working at once.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

__all__ = ["api_token_page", "do_create_api_token", "do_revoke_api_token"]


def do_create_api_token(user) -> Token:
    """A new key for ``user``; an existing one is deleted (it stops working)."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


def do_revoke_api_token(user) -> bool:
    """Delete ``user``'s key; returns whether there was one."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)


@login_required
@require_http_methods(["GET", "POST"])
def api_token_page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "create":
            do_create_api_token(request.user)
            messages.success(request, "A new API token was created; any previous one no longer works.")
        elif action == "revoke" and do_revoke_api_token(request.user):
            messages.success(request, "The API token was revoked.")
        return redirect("api-token")
    token = Token.objects.filter(user=request.user).first()
    return render(request, "sessions_app/api_token.html", {
        "token": token,
        "transcriptions_url": request.build_absolute_uri("/v1/audio/transcriptions"),
        "openai_base_url": request.build_absolute_uri("/v1"),
        "docs_url": request.build_absolute_uri("/api/docs/"),
    })  # fmt: skip
