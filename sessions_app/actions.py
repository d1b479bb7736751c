"""State changes of sessions, named for what they do; views, consumers, API and tasks call these."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.db import transaction

from sessions_app.models import SessionMember, TranscriptionSession, new_share_token


@transaction.atomic
def do_create_session(
    owner, title: str, language: str = "auto", *, room_microphone: bool = False
) -> TranscriptionSession:
    """Create a session; its owner becomes its first speaker. ``room_microphone``: its streams are diarized."""
    session = TranscriptionSession.objects.create(
        owner=owner, title=title.strip(), language=language or "auto", room_microphone=room_microphone
    )
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
    previous = SessionMember.objects.filter(session=session, user=user).values_list("role", flat=True).first()
    membership, _ = SessionMember.objects.update_or_create(session=session, user=user, defaults={"role": role})
    if previous is not None and previous != role:  # (a speaker made a viewer stops streaming)
        notify_access_changed(session.pk)
    return membership


def do_rotate_share_token(session: TranscriptionSession) -> str:
    """Give the session a new share token; viewers who came in with the old one are closed out."""
    session.share_token = new_share_token()
    session.save(update_fields=["share_token"])
    notify_access_changed(session.pk)
    return session.share_token


def do_remove_member(session: TranscriptionSession, username: str) -> bool:
    """Take a member out of the session (never its owner); their open sockets are closed.

    Returns whether there was such a member.
    """
    if "\x00" in username:  # (no such user; PostgreSQL would refuse the query)
        return False
    memberships = SessionMember.objects.filter(session=session, user__username=username)
    # (the post_delete receiver in signals.py tells the session's sockets, after the commit)
    removed, _ = memberships.exclude(user_id=session.owner_id).delete()
    return bool(removed)


def notify_access_changed(session_id) -> None:
    """Ask every socket of the session, on every daphne, to check its right again (after the commit).

    The check runs in each consumer (``access_changed``), against the database, so one group
    message covers a rotated token, a removed member and a changed role alike.
    """
    from sessions_app.consumers import session_group

    def send() -> None:
        async_to_sync(get_channel_layer().group_send)(session_group(session_id), {"type": "access.changed"})

    transaction.on_commit(send)
