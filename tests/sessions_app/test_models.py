from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from sessions_app.actions import do_add_member
from sessions_app.models import SessionMember, TranscriptionSession, Utterance

pytestmark = pytest.mark.django_db


def test_creating_a_session_makes_the_owner_its_first_speaker(user, make_session):
    session = make_session(user)
    membership = SessionMember.objects.get(session=session)
    assert membership.user == user
    assert membership.role == SessionMember.Role.SPEAKER
    assert session.is_active
    assert len(session.share_token) >= 32


def test_share_tokens_differ_between_sessions(user, make_session):
    assert make_session(user).share_token != make_session(user).share_token


def test_a_user_is_a_member_of_a_session_only_once(user, other_user, make_session):
    session = make_session(user)
    do_add_member(session, other_user.username, "viewer")
    do_add_member(session, other_user.username, "speaker")
    assert SessionMember.objects.get(session=session, user=other_user).role == "speaker"
    with pytest.raises(IntegrityError), transaction.atomic():
        SessionMember.objects.create(session=session, user=other_user, role="viewer")


def test_adding_an_unknown_user_is_refused(user, make_session):
    with pytest.raises(LookupError, match="nobody"):
        do_add_member(make_session(user), "nobody", "viewer")


def test_utterance_order_is_unique_within_a_session(user, make_session):
    session = make_session(user)
    Utterance.objects.create(session=session, speaker=user, sequence=1, start_s=0, end_s=1, text="hello")
    with pytest.raises(IntegrityError), transaction.atomic():
        Utterance.objects.create(session=session, speaker=user, sequence=1, start_s=1, end_s=2, text="again")


def test_an_utterance_cannot_end_before_it_starts(user, make_session):
    with pytest.raises(IntegrityError), transaction.atomic():
        Utterance.objects.create(session=make_session(user), speaker=user, sequence=1, start_s=3, end_s=2, text="x")


def test_a_correction_keeps_the_original_text(user, make_session):
    utterance = Utterance.objects.create(
        session=make_session(user), speaker=user, sequence=1, start_s=0, end_s=1, text="wreck a nice beach"
    )
    utterance.correct("recognize speech", by=user)
    utterance.refresh_from_db()
    assert utterance.text == "wreck a nice beach"
    assert utterance.display_text == "recognize speech"
    assert utterance.corrected_by == user and utterance.corrected_at is not None


def test_closing_a_session_records_when_it_ended(user, make_session):
    session = make_session(user)
    session.close()
    session.refresh_from_db()
    assert session.status == TranscriptionSession.Status.CLOSED
    assert session.ended_at is not None
