"""The pages of join links: opening one, and the owner's buttons that create and revoke it.

Thin: the rules are in ``join_links``. Opening a link joins at once (the link is the invitation;
the session cookie is ``SameSite=Lax``, so another site can only send a visitor here by a link
they follow, as they would follow the invitation itself).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from sessions_app import access
from sessions_app.join_links import access_join_link, do_create_join_link, do_join_by_link, do_revoke_join_links
from sessions_app.models import JoinLink


def join_url(request: HttpRequest, link: JoinLink) -> str:
    return request.build_absolute_uri(reverse("session-join", args=[link.token]))


def join(request: HttpRequest, token: str) -> HttpResponse:
    """A join link: a signed-in visitor becomes a speaker and goes to the live page; others sign in first."""
    link, problem = access_join_link(token)
    if problem is not None:
        return render(request, "sessions_app/join_link.html", {"problem": problem}, status=problem.status)
    if not request.user.is_authenticated:
        # (the sign-in page links the sign-up page with the same next: either comes back here)
        return redirect_to_login(request.get_full_path())
    session = link.session
    already = access.role_in_session(request.user, session)
    member = do_join_by_link(request.user, link)
    if already != member.role:
        messages.success(request, f"You joined “{session.title}” as a {member.get_role_display().lower()}.")
    return redirect("session-live", session.pk)


@login_required
@require_POST
def create_join_link(request: HttpRequest, session_id) -> HttpResponse:
    session = access.access_session_as_owner(request.user, session_id)
    if not session.is_active:
        messages.error(request, f"“{session.title}” has ended: nobody can join it any more.")
        return redirect("session-list")
    had = session.join_links.filter(revoked_at__isnull=True).exists()
    do_create_join_link(session, request.user)
    note = " The old one no longer works." if had else ""
    messages.success(request, f"“{session.title}” has a new speaker join link.{note}")
    return redirect("session-list")


@login_required
@require_POST
def revoke_join_link(request: HttpRequest, session_id) -> HttpResponse:
    session = access.access_session_as_owner(request.user, session_id)
    if do_revoke_join_links(session):
        messages.success(request, f"The join link of “{session.title}” was revoked; people who joined stay members.")
    else:
        messages.error(request, f"“{session.title}” has no join link to revoke.")
    return redirect("session-list")
