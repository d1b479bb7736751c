"""State changes of sessions, named for what they do; views, consumers, API and tasks call these."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from sessions_app.models import SessionMember, TranscriptionSession


@transaction.atomic
def do_create_session(owner, title: str, language: str = "auto") -> TranscriptionSession:
    """Create a session; its owner becomes its first speaker."""
    session = TranscriptionSession.objects.create(owner=owner, title=title.strip(), language=language or "auto")
    SessionMember.objects.create(session=session, user=owner, role=SessionMember.Role.SPEAKER)
    return session


def do_add_member(session: TranscriptionSession, username: str, role: str) -> SessionMember:
    """Add (or change the role of) a member by username. Raises ``LookupError`` for an unknown user."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise LookupError(f"There is no user called {username!r}.")
    if role not in SessionMember.Role.values:
        raise ValueError(f"Unknown role {role!r}.")
    if user.pk == session.owner_id:
        role = SessionMember.Role.SPEAKER
    membership, _ = SessionMember.objects.update_or_create(session=session, user=user, defaults={"role": role})
    return membership
