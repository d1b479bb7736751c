"""Speakers of a session as its pages, exports and live messages name and colour them.

A member's display name (``SessionMember.display_name``, set by the session's owner) replaces
their username wherever the session's transcript is shown; the username stays the protocol's
``speaker`` (clients tell their own lines by it). Each member has a colour of the session's
palette (``SessionMember.colour``, the first free one when they joined); a speaker who is no
longer a member keeps their name and gets a colour from their id.

A rename reaches every open page of the session without a reload: ``stt_speakers`` goes to the
session's group after the commit, with every speaker's name and colour.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.db import transaction

from sessions_app.models import SPEAKER_COLOURS, SessionMember, TranscriptionSession, Utterance

__all__ = [
    "MAX_DISPLAY_NAME",
    "SPEAKER_COLOURS",
    "BadDisplayNameError",
    "Speaker",
    "check_display_name",
    "do_rename_speaker",
    "session_speakers",
    "speaker_of",
    "speakers_message",
]

MAX_DISPLAY_NAME = 80


class BadDisplayNameError(ValueError):
    """A display name that cannot be used; ``code`` is the API's error code."""

    code = "BAD_DISPLAY_NAME"


@dataclass(frozen=True)
class Speaker:
    """One speaker of a session: ``name`` is what people read, ``username`` what the protocol says."""

    speaker_id: int
    username: str
    name: str
    colour: int
    display_name: str = ""  # what the owner set ("" when the name is the username)
    role: str = ""  # "" for a speaker who is no longer a member

    def as_message(self) -> dict[str, Any]:
        return {
            "speaker_id": self.speaker_id,
            "speaker": self.username,
            "speaker_name": self.name,
            "colour": self.colour,
        }


def check_display_name(value: Any) -> str:
    """The display name to store ("" resets to the username).

    Raises:
        BadDisplayNameError: not text, longer than ``MAX_DISPLAY_NAME``, or with control characters.
    """
    if not isinstance(value, str):
        raise BadDisplayNameError("display_name must be a string.")
    name = " ".join(value.split())  # (no leading, trailing or repeated whitespace; no newlines)
    if len(name) > MAX_DISPLAY_NAME:
        raise BadDisplayNameError(f"A display name has at most {MAX_DISPLAY_NAME} characters.")
    if any(unicodedata.category(char).startswith("C") for char in name):
        raise BadDisplayNameError("A display name may not hold control or invisible format characters.")
    return name


def _from_member(member: SessionMember) -> Speaker:
    username = member.user.get_username()
    colour = member.colour if member.colour is not None else member.user_id % SPEAKER_COLOURS
    return Speaker(member.user_id, username, member.display_name or username, colour, member.display_name, member.role)


def session_speakers(session_id) -> list[Speaker]:
    """Every member of the session who may speak, and everyone who spoke in it, in the order they joined."""
    members = SessionMember.objects.filter(session_id=session_id).select_related("user").order_by("joined_at", "pk")
    speakers = [_from_member(m) for m in members if m.role == SessionMember.Role.SPEAKER]
    known = {s.speaker_id for s in speakers}
    # Viewers who spoke before they were made viewers, and speakers since removed, are still named.
    spoke = set(Utterance.objects.filter(session_id=session_id).values_list("speaker_id", flat=True).distinct())
    viewers = {m.user_id: m for m in members if m.role != SessionMember.Role.SPEAKER}
    for user_id in sorted(spoke - known):
        if user_id in viewers:
            speakers.append(_from_member(viewers[user_id]))
        else:
            user = get_user_model().objects.filter(pk=user_id).first()
            if user is not None:
                username = user.get_username()
                speakers.append(Speaker(user_id, username, username, user_id % SPEAKER_COLOURS))
    return speakers


def speaker_of(session_id, user_id: int) -> Speaker | None:
    """One member's name and colour (``None`` if they are not a member)."""
    member = SessionMember.objects.filter(session_id=session_id, user_id=user_id).select_related("user").first()
    return _from_member(member) if member is not None else None


def speakers_message(session_id) -> dict[str, Any]:
    """``stt_speakers``: every speaker of the session with their name and colour."""
    return {
        "type": "stt_speakers",
        "session_id": str(session_id),
        "speakers": [s.as_message() for s in session_speakers(session_id)],
    }


@transaction.atomic
def do_rename_speaker(session: TranscriptionSession, user_id: int, display_name: Any) -> Speaker:
    """Set a member's display name in the session ("" gives them their username back).

    The session's open pages hear of it (``stt_speakers``) once the change is committed.

    Raises:
        BadDisplayNameError: see ``check_display_name``.
        LookupError: ``user_id`` is not a member of the session.
    """
    name = check_display_name(display_name)
    member = (
        SessionMember.objects.select_for_update()
        .select_related("user")
        .filter(session=session, user_id=user_id)
        .first()
    )
    if member is None:
        raise LookupError("That user is not a member of this session.")
    if member.display_name != name:
        member.display_name = name
        member.save(update_fields=["display_name"])
        notify_speakers_changed(session.pk)
    return _from_member(member)


def notify_speakers_changed(session_id) -> None:
    """Tell every socket of the session, on every daphne, the speakers' names and colours (after the commit)."""
    from sessions_app.live_stream import session_group

    def send() -> None:
        message = speakers_message(session_id)
        async_to_sync(get_channel_layer().group_send)(
            session_group(session_id), {"type": "speakers.changed", "message": message}
        )

    transaction.on_commit(send)
