"""Machine versions of a transcript: every version kept, corrections never superseded."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from sessions_app.live_transcripts import do_save_final
from sessions_app.meeting_record.versions import do_apply_version
from sessions_app.models import Utterance

pytestmark = pytest.mark.django_db

REFINED = Utterance.Source.REFINED


def _final(text: str, start: float, end: float, at: float = 8.0) -> dict:
    """A final as the engine sends it; ``at`` is the stream time when it was sent (saved now)."""
    words = text.split()
    step = (end - start) / len(words)
    return {
        "text": text, "start": start, "end": end, "at": at, "language": "en", "confidence": 0.9,
        "model": "base",
        "words": [
            {"word": w, "start": start + i * step, "end": start + (i + 1) * step, "probability": 0.9}
            for i, w in enumerate(words)
        ],
    }  # fmt: skip


@pytest.fixture
def fragments(make_session, user):
    session = make_session(user)
    rows = [
        do_save_final(session.id, user.pk, _final("and so my fellow americans", 0.0, 2.0), 0.0, "s1"),
        do_save_final(session.id, user.pk, _final("it's not", 3.0, 4.0), 0.0, "s1"),
        do_save_final(session.id, user.pk, _final("what your country can do for you", 4.5, 7.0), 0.0, "s1"),
    ]
    return session, rows


def _current(session) -> list[Utterance]:
    return list(Utterance.objects.filter(session=session).current())


def test_a_version_supersedes_the_fragments_which_stay_marked(fragments, user):
    session, rows = fragments
    version = [
        _final("And so, my fellow Americans, ask not", 0.0, 4.0),
        _final("what your country can do for you.", 4.5, 7.0),
    ]
    applied = do_apply_version(session.id, user.pk, [r.pk for r in rows], version, REFINED, "s1")
    assert applied.replaced_ids == [r.pk for r in rows]
    assert [u.text for u in _current(session)] == [v["text"] for v in version]
    assert all(u.source == REFINED and u.stream_id == "s1" for u in applied.created)
    kept = {u.pk: u for u in Utterance.objects.filter(pk__in=[r.pk for r in rows])}
    assert kept[rows[0].pk].superseded_by_id == kept[rows[1].pk].superseded_by_id == applied.created[0].pk
    assert kept[rows[2].pk].superseded_by_id == applied.created[1].pk
    assert all(u.superseded_at and u.source == Utterance.Source.LIVE for u in kept.values())
    assert [u.sequence for u in applied.created] == [4, 5]
    # spoken_at follows the fragment it sits over, so speakers still interleave by time
    assert applied.created[1].spoken_at - rows[2].spoken_at == dt.timedelta(0)


def test_a_corrected_fragment_stays_current_and_the_version_leaves_its_words_out(fragments, user, other_user):
    session, rows = fragments
    rows[1].correct("ask not", other_user)
    version = [_final("And so, my fellow Americans, ask not what your country can do for you.", 0.0, 7.0)]
    applied = do_apply_version(session.id, user.pk, [r.pk for r in rows], version, REFINED)
    assert applied.replaced_ids == [rows[0].pk, rows[2].pk]
    current = _current(session)
    assert rows[1].pk in [u.pk for u in current]
    [new] = applied.created
    assert all(not (3.0 <= (w["start"] + w["end"]) / 2 <= 4.0) for w in new.words)
    assert new.text == " ".join(w["word"] for w in new.words)
    assert Utterance.objects.get(pk=rows[1].pk).superseded_by_id is None


def test_nothing_changes_when_every_fragment_is_corrected_or_already_replaced(fragments, user, other_user):
    session, rows = fragments
    rows[0].correct("And so, my fellow Americans", other_user)
    first = do_apply_version(session.id, user.pk, [rows[1].pk, rows[2].pk], [_final("ask not what", 3.0, 7.0)], REFINED)
    before = _current(session)
    # A late refinement of the same fragments (the archive pass already replaced them) changes nothing.
    late = do_apply_version(session.id, user.pk, [r.pk for r in rows], [_final("something else", 0.0, 7.0)], REFINED)
    assert first.created and late.created == [] and late.replaced_ids == []
    assert _current(session) == before


def test_a_version_without_text_or_of_another_speaker_changes_nothing(fragments, user, other_user):
    session, rows = fragments
    ids = [r.pk for r in rows]
    assert do_apply_version(session.id, user.pk, ids, [{**_final("x", 0, 1), "text": " "}], REFINED).created == []
    assert do_apply_version(session.id, other_user.pk, ids, [_final("hijack", 0.0, 7.0)], REFINED).created == []
    assert [u.pk for u in _current(session)] == ids


def test_live_finals_are_ordered_by_when_they_were_spoken(make_session, user, other_user):
    session = make_session(user)
    late_start = do_save_final(session.id, user.pk, _final("second", 0.0, 1.0), 0.0)
    early = do_save_final(session.id, other_user.pk, _final("first", 5.0, 6.0, at=20.0), 0.0)
    assert early.spoken_at < late_start.spoken_at <= timezone.now()
    assert [u.text for u in _current(session)] == ["first", "second"]


def test_a_version_reads_in_recording_order_whatever_lag_its_anchors_had(make_session, user):
    """Live finals carry their engine's lag in ``spoken_at``: a version anchored on two of them stays in order."""
    session = make_session(user)
    lagging = do_save_final(session.id, user.pk, _final("one two three four", 0.0, 5.0), 0.0)
    prompt = do_save_final(session.id, user.pk, _final("five six seven", 8.0, 12.0), 0.0)
    origin = timezone.now() - dt.timedelta(minutes=1)
    Utterance.objects.filter(pk=lagging.pk).update(spoken_at=origin + dt.timedelta(seconds=5))  # 5 s behind
    Utterance.objects.filter(pk=prompt.pk).update(spoken_at=origin + dt.timedelta(seconds=8))  # on time
    version = [_final("One, two, three,", 0.0, 3.0), _final("four, five,", 4.0, 6.0), _final("six, seven.", 7.0, 12.0)]
    do_apply_version(session.id, user.pk, [lagging.pk, prompt.pk], version, Utterance.Source.ARCHIVE)
    # Anchored on its nearest final, "four, five," (at 4 s, on the lagging one) would say 9 s and
    # "six, seven." (at 7 s, on the other) 7 s: before it.
    assert [u.text for u in _current(session)] == [v["text"] for v in version]


def test_a_final_that_arrives_with_less_lag_stays_after_the_one_before_it(make_session, user):
    """The first final came 6 s behind its audio (a busy engine), the next on time: said in that order."""
    session = make_session(user)
    first = do_save_final(session.id, user.pk, _final("ask not", 0.0, 1.0, at=1.6), 0.0, "s1")
    Utterance.objects.filter(pk=first.pk).update(spoken_at=first.spoken_at + dt.timedelta(seconds=6))
    do_save_final(session.id, user.pk, _final("what your country", 2.0, 3.0, at=3.6), 0.0, "s1")
    assert [u.text for u in _current(session)] == ["ask not", "what your country"]


def test_a_refined_turn_stays_after_the_turn_before_it_whose_final_lagged(make_session, user):
    session = make_session(user)
    earlier = do_save_final(session.id, user.pk, _final("and so my fellow americans", 0.0, 2.0), 0.0, "s1")
    Utterance.objects.filter(pk=earlier.pk).update(spoken_at=earlier.spoken_at + dt.timedelta(seconds=8))
    later = do_save_final(session.id, user.pk, _final("ask not", 3.0, 4.0, at=4.5), 0.0, "s1")
    Utterance.objects.filter(pk=later.pk).update(spoken_at=earlier.spoken_at + dt.timedelta(seconds=3))
    do_apply_version(session.id, user.pk, [later.pk], [_final("Ask not.", 3.0, 4.0)], REFINED, "s1")
    assert [u.text for u in _current(session)] == ["and so my fellow americans", "Ask not."]
