"""Turns: consecutive current utterances of one speaker, broken by another speaker or a long pause."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from sessions_app.meeting_record.turns import MAX_PAUSE_S, group_into_turns
from sessions_app.models import Utterance

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0)


@pytest.fixture
def talk(user, make_user, make_session):
    session = make_session(user, "Planning")
    bob = make_user("bob")
    sequence = iter(range(1, 100))

    def say(speaker, start: float, end: float, text: str, at: float | None = None, **extra) -> Utterance:
        return Utterance.objects.create(
            session=session, speaker=speaker, sequence=next(sequence), start_s=start, end_s=end, text=text,
            spoken_at=T0 + dt.timedelta(seconds=start if at is None else at), **extra,
        )  # fmt: skip

    return session, bob, say


def _current(session) -> list[Utterance]:
    return list(session.utterances.current().select_related("speaker"))


def test_consecutive_utterances_of_one_speaker_make_one_turn(user, talk):
    session, bob, say = talk
    a1 = say(user, 0.0, 2.0, "Good morning.")
    a2 = say(user, 2.6, 4.0, "Let us start.")
    b1 = say(bob, 4.5, 6.0, "Morning.")
    a3 = say(user, 6.5, 8.0, "The budget first.")
    turns = group_into_turns(_current(session))
    assert [(t.speaker, t.utterance_ids) for t in turns] == [
        ("alice", [a1.pk, a2.pk]), ("bob", [b1.pk]), ("alice", [a3.pk]),
    ]  # fmt: skip
    first = turns[0]
    assert first.text == "Good morning. Let us start."
    assert (first.start, first.end, first.spoken_at) == (0.0, 4.0, a1.spoken_at)
    assert first.speaker_id == user.pk


def test_a_long_pause_starts_a_new_turn_of_the_same_speaker(user, talk):
    session, _, say = talk
    say(user, 0.0, 2.0, "Before the break.")
    say(user, 2.0 + MAX_PAUSE_S - 1, 2.0 + MAX_PAUSE_S, "Still the same thought.")
    say(user, 3.0 + 2 * MAX_PAUSE_S + 5, 4.0 + 2 * MAX_PAUSE_S + 5, "After the break.")
    assert [len(t.utterances) for t in group_into_turns(_current(session))] == [2, 1]


def test_the_pause_is_measured_by_wall_clock_when_both_know_it(user, talk):
    """A speaker's recording clock stops while they are away; the wall clock does not."""
    session, _, say = talk
    say(user, 0.0, 2.0, "Before reconnecting.", at=0.0)
    say(user, 2.5, 4.0, "After a long time away.", at=120.0)
    assert len(group_into_turns(_current(session))) == 2


def test_rows_without_a_wall_clock_use_the_recording_clock(user, talk):
    session, _, _ = talk
    for sequence, (start, end) in enumerate([(0.0, 1.0), (1.5, 2.0), (80.0, 81.0)], start=1):
        Utterance.objects.create(session=session, speaker=user, sequence=sequence, start_s=start, end_s=end, text="x")
    assert [len(t.utterances) for t in group_into_turns(_current(session))] == [2, 1]


def test_superseded_rows_are_not_in_any_turn_and_a_correction_is_its_text(user, talk):
    session, _, say = talk
    old = say(user, 0.0, 2.0, "helo every one")
    refined = say(user, 0.0, 2.0, "Hello everyone.", source=Utterance.Source.REFINED)
    old.superseded_by = refined
    old.save(update_fields=["superseded_by"])
    fixed = say(user, 2.5, 3.5, "lets go")
    fixed.correct("Let's go.", user)
    (turn,) = group_into_turns(_current(session))
    assert turn.utterance_ids == [refined.pk, fixed.pk]
    assert turn.text == "Hello everyone. Let's go."


def test_no_utterances_make_no_turns():
    assert group_into_turns([]) == []
