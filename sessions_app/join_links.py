"""Join links: a session's owner hands out a link; whoever opens it signed in becomes a speaker.

A session has at most one active link (a new one revokes the one before). A revoked link is
kept, so that opening it says it was revoked (410) rather than that it never existed (404);
a link of a session that has ended says that instead. Inviting by username
(``actions.do_add_member``) works as before, beside the links.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from sessions_app.models import JoinLink, SessionMember, TranscriptionSession

__all__ = [
    "JoinLinkProblem",
    "access_join_link",
    "active_join_link",
    "active_join_links",
    "do_create_join_link",
    "do_join_by_link",
    "do_revoke_join_links",
]


@dataclass(frozen=True)
class JoinLinkProblem:
    """Why a link cannot be used: ``code`` for the API, ``status`` for the page, ``message`` to read."""

    code: str
    status: int
    message: str


NO_SUCH_LINK = JoinLinkProblem("NOT_FOUND", 404, "This join link does not exist. Check that you copied all of it.")
LINK_REVOKED = JoinLinkProblem(
    "LINK_REVOKED", 410, "This join link was revoked by the session's owner. Ask them for a new one."
)
SESSION_ENDED = JoinLinkProblem("SESSION_ENDED", 410, "This session has ended; its join link no longer works.")


def active_join_link(session: TranscriptionSession) -> JoinLink | None:
    return session.join_links.filter(revoked_at__isnull=True).first()


def active_join_links(session_ids: Iterable) -> dict[Any, JoinLink]:
    """The active link of each of these sessions that has one, in one query."""
    links = JoinLink.objects.filter(session_id__in=list(session_ids), revoked_at__isnull=True).order_by("created_at")
    return {link.session_id: link for link in links}


@transaction.atomic
def do_create_join_link(session: TranscriptionSession, by) -> JoinLink:
    """A new speaker link for the session; the one before it (if any) stops working."""
    TranscriptionSession.objects.select_for_update().filter(pk=session.pk).first()  # (one active link at a time)
    session.join_links.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    return JoinLink.objects.create(session=session, created_by=by, role=SessionMember.Role.SPEAKER)


def do_revoke_join_links(session: TranscriptionSession) -> int:
    """Revoke the session's active link; returns how many were revoked (0 or 1).

    People who joined through it stay members (remove them one by one to take their access away).
    """
    return session.join_links.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


def access_join_link(token: str) -> tuple[JoinLink | None, JoinLinkProblem | None]:
    """The link with this token and what stops it from being used (``None`` when it can be)."""
    if not token or len(token) > 64 or not token.isascii():
        return None, NO_SUCH_LINK
    link = JoinLink.objects.select_related("session", "session__owner").filter(token=token).first()
    # (the lookup is by a unique index; compare_digest keeps the last check constant-time)
    if link is None or not secrets.compare_digest(link.token.encode(), token.encode()):
        return None, NO_SUCH_LINK
    if not link.is_active:
        return link, LINK_REVOKED
    if not link.session.is_active:
        return link, SESSION_ENDED
    return link, None


@transaction.atomic
def do_join_by_link(user, link: JoinLink) -> SessionMember:
    """Make ``user`` a member of the link's session with the link's role.

    A viewer is made a speaker; an existing speaker (the owner too) stays as they are.
    """
    member, created = SessionMember.objects.select_for_update().get_or_create(
        session=link.session, user=user, defaults={"role": link.role}
    )
    if created:
        JoinLink.objects.filter(pk=link.pk).update(uses=F("uses") + 1)
    elif member.role != link.role and link.role == SessionMember.Role.SPEAKER:
        member.role = link.role
        member.save(update_fields=["role"])
    return member
