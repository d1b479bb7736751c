"""Speakers of a session as its pages, exports and live messages name and colour them.

A member's display name (``SessionMember.display_name``, set by the session's owner) replaces
their username wherever the session's transcript is shown; the username stays the protocol's
``speaker`` (clients tell their own lines by it). Each member has a colour of the session's
palette (``SessionMember.colour``, the first free one when they joined); a speaker who is no
longer a member keeps their name and gets a colour from their id.

A rename reaches every open page of the session without a reload: ``stt_speakers`` goes to the
session's group after the commit, with every speaker's name and colour.

A diarized stream (a room microphone) labels its lines ``S1``, ``S2``, ... per stream speaker; a
labelled line is named and coloured by its label, not by the account that streamed it: "Speaker N"
until the owner renames it (``SpeakerLabelName``). Label ``S<n>`` of user ``u`` has the default
colour ``(colour of u + n) % SPEAKER_COLOURS`` (static/js/lines.js has the same rule), so two voices
of one microphone differ in colour and differ from the account's own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.db import transaction

from sessions_app.models import SPEAKER_COLOURS, SessionMember, SpeakerLabelName, TranscriptionSession, Utterance

__all__ = [
    "MAX_DISPLAY_NAME",
    "SPEAKER_COLOURS",
    "BadDisplayNameError",
    "BadLabelError",
    "Speaker",
    "check_display_name",
    "check_label",
    "do_rename_label",
    "do_rename_speaker",
    "label_colour",
    "label_display_name",
    "label_names",
    "line_namer",
    "line_speaker",
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
    display_name: str = ""  # what the owner set ("" when the name is the username, or "Speaker N" for a label)
    role: str = ""  # "" for a speaker who is no longer a member
    label: str = ""  # a diarized voice of this user's stream ("S2"); "" for the account itself

    def as_message(self) -> dict[str, Any]:
        return {
            "speaker_id": self.speaker_id,
            "speaker": self.username,
            "speaker_name": self.name,
            "colour": self.colour,
        }

    def as_label_message(self) -> dict[str, Any]:
        """One entry of ``stt_speakers``' ``labels``."""
        return {
            "speaker_id": self.speaker_id,
            "speaker": self.username,
            "label": self.label,
            "name": self.name,
            "display_name": self.display_name,
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


_LABEL = re.compile(r"S([1-9][0-9]*)")


def _label_number(label: str) -> int | None:
    match = _LABEL.fullmatch(label)
    return int(match.group(1)) if match else None


def label_display_name(label: str) -> str:
    """What an unnamed label reads as: "S3" -> "Speaker 3" (a label not of that form reads as itself)."""
    number = _label_number(label)
    return f"Speaker {number}" if number is not None else label


def label_colour(account_colour: int, label: str) -> int:
    """The default colour of ``label`` of a user whose own colour is ``account_colour``."""
    return (account_colour + (_label_number(label) or 0)) % SPEAKER_COLOURS


def _accounts(session_id, user_ids: set[int]) -> dict[int, Speaker]:
    """The account speakers of ``user_ids`` (members with their colour, others with one from their id)."""
    members = SessionMember.objects.filter(session_id=session_id, user_id__in=user_ids).select_related("user")
    accounts = {m.user_id: _from_member(m) for m in members}
    missing = user_ids - set(accounts)
    for user in get_user_model().objects.filter(pk__in=missing):
        username = user.get_username()
        accounts[user.pk] = Speaker(user.pk, username, username, user.pk % SPEAKER_COLOURS)
    return accounts


def _label_speaker(account: Speaker, label: str, row: SpeakerLabelName | None) -> Speaker:
    display_name = row.display_name if row is not None else ""
    named_colour = row.colour if row is not None else None
    colour = named_colour if named_colour is not None else label_colour(account.colour, label)
    return Speaker(
        account.speaker_id, account.username, display_name or label_display_name(label), colour,
        display_name, account.role, label,
    )  # fmt: skip


def label_names(session_id) -> dict[tuple[int, str], Speaker]:
    """Every label of the session, keyed by (speaker user id, label), with its name and colour.

    A session's labels are those it has a name for (``SpeakerLabelName``) and those its utterances
    (any version) carry; ordered by user id, then label number.
    """
    rows = {(r.speaker_id, r.label): r for r in SpeakerLabelName.objects.filter(session_id=session_id)}
    spoken = set(
        Utterance.objects.filter(session_id=session_id)
        .exclude(speaker_label="")
        .values_list("speaker_id", "speaker_label")
        .distinct()
    )
    keys = sorted(set(rows) | spoken, key=lambda key: (key[0], _label_number(key[1]) or 0, key[1]))
    accounts = _accounts(session_id, {user_id for user_id, _ in keys})
    return {
        (user_id, label): _label_speaker(accounts[user_id], label, rows.get((user_id, label)))
        for user_id, label in keys
        if user_id in accounts
    }


def _line_key(utterance: Any) -> tuple[int, str]:
    if isinstance(utterance, dict):
        return int(utterance["speaker_id"]), utterance.get("speaker_label") or ""
    return utterance.speaker_id, getattr(utterance, "speaker_label", "") or ""


def line_namer(session_id) -> Callable[[Any], Speaker]:
    """A function naming the lines of one session (an ``Utterance`` or a dict with ``speaker_id``
    and ``speaker_label``): by its label when it has one, else by its account. Reads the session's
    names once, so an export of many lines costs a few queries; a line of a user or label it has
    not seen is looked up on demand.
    """
    labels = label_names(session_id)
    accounts = {s.speaker_id: s for s in session_speakers(session_id)}

    def name(utterance: Any) -> Speaker:
        user_id, label = _line_key(utterance)
        if user_id not in accounts:
            accounts.update(_accounts(session_id, {user_id}))
        account = accounts.get(user_id) or Speaker(user_id, "", str(user_id), user_id % SPEAKER_COLOURS)
        if not label:
            return account
        if (user_id, label) not in labels:
            labels[(user_id, label)] = _label_speaker(account, label, None)
        return labels[(user_id, label)]

    return name


def line_speaker(session_id, utterance: Any) -> Speaker:
    """The name and colour one line is shown with (see ``line_namer``, better for many lines)."""
    return line_namer(session_id)(utterance)


def speakers_message(session_id) -> dict[str, Any]:
    """``stt_speakers``: every speaker of the session with their name and colour, and every label's."""
    return {
        "type": "stt_speakers",
        "session_id": str(session_id),
        "speakers": [s.as_message() for s in session_speakers(session_id)],
        "labels": [s.as_label_message() for s in label_names(session_id).values()],
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


def check_label(value: Any) -> str:
    """A label to name: ``S<n>`` (what the diarizer gives).

    Raises:
        BadLabelError: anything else.
    """
    if not isinstance(value, str) or _label_number(value) is None or len(value) > 16:
        raise BadLabelError('label must be a speaker label such as "S2".')
    return value


class BadLabelError(ValueError):
    """A label that is not ``S<n>``; ``code`` is the API's error code."""

    code = "BAD_LABEL"


@transaction.atomic
def do_rename_label(session: TranscriptionSession, user_id: int, label: Any, display_name: Any) -> Speaker:
    """Name one diarized voice of ``user_id``'s stream in the session ("" gives it back "Speaker N").

    The label need not have spoken yet (a name given before it does is kept). The session's open
    pages hear of it (``stt_speakers``) once the change is committed.

    Raises:
        BadDisplayNameError: see ``check_display_name``.
        BadLabelError: see ``check_label``.
        LookupError: ``user_id`` is neither a member of the session nor anyone who spoke in it.
    """
    name = check_display_name(display_name)
    label = check_label(label)
    known = SessionMember.objects.filter(session=session, user_id=user_id).exists() or (
        Utterance.objects.filter(session=session, speaker_id=user_id).exists()
    )
    if not known:
        raise LookupError("That user is neither a member of this session nor one who spoke in it.")
    row, created = SpeakerLabelName.objects.select_for_update().get_or_create(
        session=session, speaker_id=user_id, label=label, defaults={"display_name": name}
    )
    if created or row.display_name != name:
        if not created:
            row.display_name = name
            row.save(update_fields=["display_name"])
        notify_speakers_changed(session.pk)
    account = _accounts(session.pk, {user_id})[user_id]
    return _label_speaker(account, label, row)


def notify_speakers_changed(session_id) -> None:
    """Tell every socket of the session, on every daphne, the speakers' names and colours (after the commit)."""
    from sessions_app.live_stream import session_group

    def send() -> None:
        message = speakers_message(session_id)
        async_to_sync(get_channel_layer().group_send)(
            session_group(session_id), {"type": "speakers.changed", "message": message}
        )

    transaction.on_commit(send)
