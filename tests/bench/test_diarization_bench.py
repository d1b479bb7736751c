"""The diarization benchmark's conversation builder and scorers (no engine runs, except one word-time cut)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from bench.diarization_bench import (
    CONVERSATION_S,
    MAX_TURN_S,
    MIN_TURN_S,
    PAUSE_S,
    SHORT_TURN_S,
    SR,
    ConversationPlan,
    PlannedTurn,
    cp_word_errors,
    diarization_error,
    hypothesis_segments,
    piece_cut,
    plan_conversations,
    prefix_cut,
    quietest_near,
    render_conversation,
    utterance_latencies,
    whisper_word_timer,
)
from stt_engine import events
from tests.speech import DEV_DIR


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [json.loads(line) for line in (DEV_DIR / "manifest.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def plans(rows: list[dict]) -> list[ConversationPlan]:
    return plan_conversations(rows, sizes=(2, 3, 4), per_size=4, seed=19)


def _words(*timed: tuple[str, float, float]) -> list[events.Word]:
    return [events.Word(word, start, end, 0.9) for word, start, end in timed]


def _der(reference, hypothesis, collar: float = 0.0) -> float:
    parts = diarization_error(reference, hypothesis, collar=collar)
    return (parts["confusion"] + parts["missed"] + parts["false_alarm"]) / parts["total"]


# ---------------------------------------------------------------- the builder


def test_the_same_seed_plans_the_same_conversations_and_another_seed_others(rows: list[dict]) -> None:
    first = plan_conversations(rows, sizes=(2, 4), per_size=2, seed=7)

    assert plan_conversations(rows, sizes=(2, 4), per_size=2, seed=7) == first
    assert plan_conversations(rows, sizes=(2, 4), per_size=2, seed=8) != first


def test_each_size_gets_its_conversations_of_distinct_speakers(plans: list[ConversationPlan]) -> None:
    assert Counter(len(plan.speakers) for plan in plans) == {2: 4, 3: 4, 4: 4}
    for plan in plans:
        assert len(set(plan.speakers)) == len(plan.speakers)
        assert {turn.speaker for turn in plan.turns} == set(plan.speakers), plan.name


def test_turns_alternate_between_speakers_after_pauses_of_a_third_to_one_second(plans: list[ConversationPlan]) -> None:
    for plan in plans:
        for previous, turn in zip(plan.turns, plan.turns[1:], strict=False):
            assert turn.speaker != previous.speaker, plan.name
            assert PAUSE_S[0] <= turn.pause_s <= PAUSE_S[1]


def test_turns_last_two_to_fifteen_seconds_and_some_are_shorter(plans: list[ConversationPlan]) -> None:
    for plan in plans:
        assert all(turn.target_s <= MAX_TURN_S for turn in plan.turns)
        short = [turn for turn in plan.turns if turn.target_s < MIN_TURN_S]
        assert short, plan.name
        assert all(SHORT_TURN_S[0] <= turn.target_s <= SHORT_TURN_S[1] for turn in short)
        assert all(turn.kind == "whole" or turn.clip_s > MAX_TURN_S for turn in plan.turns if turn.target_s >= 2)
        assert CONVERSATION_S[0] <= plan.planned_s <= CONVERSATION_S[1], plan.name


def test_a_conversation_uses_each_clip_once_except_the_pieces_of_a_long_one(plans: list[ConversationPlan]) -> None:
    for plan in plans:
        uses = Counter(turn.audio for turn in plan.turns)
        assert all(
            n == 1 or all(t.kind == "piece" for t in plan.turns if t.audio == audio) for audio, n in uses.items()
        )


def test_a_size_with_too_few_speakers_is_refused(rows: list[dict]) -> None:
    with pytest.raises(ValueError, match="speakers have"):
        plan_conversations(rows, sizes=(12,), per_size=1)


def test_a_clip_is_cut_after_the_most_words_whisper_heard_as_the_reference_within_the_limit() -> None:
    words = _words(("He", 0.30, 0.45), ("was", 0.50, 0.70), ("not", 0.90, 1.10), ("an", 1.12, 1.20))

    assert prefix_cut("he was not an ill disposed young man", words, max_s=1.0) == (0.75, "he was")
    # 50 ms after "not", then within the 20 ms gap to "an": its middle.
    assert prefix_cut("he was not an ill disposed young man", words, max_s=1.2) == (1.11, "he was not")
    assert prefix_cut("HE WAS, NOT", words, max_s=5.0)[1] == "HE WAS, NOT"


def test_a_cut_stops_at_the_first_word_whisper_heard_otherwise() -> None:
    words = _words(("He", 0.30, 0.45), ("is", 0.50, 0.70), ("not", 0.90, 1.10))

    assert prefix_cut("he was not", words, max_s=5.0) == (0.475, "he")
    assert prefix_cut("she was not", words, max_s=5.0) is None
    assert prefix_cut("he was not", words, max_s=0.3) is None


def test_a_long_clip_is_cut_into_pieces_between_words_that_match_on_both_sides() -> None:
    reference = "one two three four five six seven eight"
    words = _words(
        ("one", 0.0, 0.5), ("two", 1.0, 1.5), ("three", 2.0, 2.5), ("floor", 3.0, 3.5),
        ("five", 4.0, 4.5), ("six", 5.5, 6.0), ("seven", 6.5, 7.0), ("eight", 17.0, 17.5),
    )  # fmt: skip

    end, text = piece_cut(reference, words, clip_s=18.0, start=(0, 0.0), target_s=5.0)

    # Anchors after "one", "two", "five", "six" and "seven" ("floor" is not "four"); within 3-5 s only "five".
    assert (end, text) == ((5, 4.55), "one two three four five")
    end, text = piece_cut(reference, words, clip_s=18.0, start=end, target_s=1.5)
    assert (end, text) == ((6, 6.05), "six")
    end, text = piece_cut(reference, words, clip_s=18.0, start=end, target_s=5.0)
    assert (end, text) == ((7, 7.05), "seven")  # the last anchor within 5 s
    assert piece_cut(reference, words, clip_s=18.0, start=end, target_s=5.0) == ((8, 18.0), "eight")  # the rest


def test_a_long_clip_without_matching_words_for_fifteen_seconds_is_refused() -> None:
    words = _words(("one", 0.0, 0.5), ("too", 1.0, 1.5), ("tree", 16.0, 16.5), ("four", 17.0, 17.5))

    with pytest.raises(ValueError, match="no word boundary within 15 s"):
        piece_cut("one two three four", words, clip_s=18.0, start=(0, 0.0), target_s=5.0)


def test_a_rendered_conversation_lays_turns_out_after_their_pauses_with_the_cut_words() -> None:
    whole = PlannedTurn(
        "a", "jfk_inaugural_1961.wav",
        "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
        11.0, "whole", 11.0, 0.0,
    )  # fmt: skip
    reference = "he was not an ill disposed young man"
    short = PlannedTurn("b", "librivox_sense_and_sensibility_01_0880.wav", reference, 2.99, "short", 1.5, 0.6)
    plan = ConversationPlan("test", ("a", "b"), (whole, short))

    conversation = render_conversation(plan, DEV_DIR, whisper_word_timer(cpu_threads=1))

    first, second = conversation.turns
    assert (first.speaker, second.speaker) == ("a", "b")
    assert first.text == whole.text
    assert second.start - first.end == pytest.approx(0.6, abs=0.002)
    assert 0.3 < second.end - second.start < MIN_TURN_S
    assert reference.startswith(second.text) and 2 <= len(second.text.split()) < 8
    assert second.end <= conversation.duration_s <= second.end + 0.11  # 0.1 s kept after the speech, at most


def test_a_cut_moves_to_the_quietest_moment_near_it() -> None:
    audio = np.full(SR, 3000, dtype=np.int16)
    audio[int(0.62 * SR) : int(0.63 * SR)] = 10

    assert quietest_near(audio, 0.5) == 0.625
    assert quietest_near(audio, 0.9) != 0.625  # further than 0.15 s


# ---------------------------------------------------------------- the scorers


def test_cpwer_assigns_labels_to_speakers_whatever_their_names() -> None:
    reference = [("alice", "the cat sat"), ("bob", "on the mat"), ("alice", "and purred")]
    hypothesis = [("S2", "the cat sat"), ("S1", "on the mat"), ("S2", "and purred")]

    assert cp_word_errors(reference, hypothesis) == (0, 8, {"alice": "S2", "bob": "S1"})


def test_cpwer_counts_words_under_the_wrong_label_as_errors_of_both_speakers() -> None:
    reference = [("alice", "the cat sat down"), ("bob", "on the mat")]
    # "down" went to bob's label: a deletion for alice, an insertion for bob.
    hypothesis = [("S1", "the cat sat"), ("S2", "down on the mat")]

    errors, words, assignment = cp_word_errors(reference, hypothesis)

    assert (errors, words, assignment) == (2, 7, {"alice": "S1", "bob": "S2"})


def test_cpwer_counts_an_unmatched_speaker_as_deletions_and_an_unmatched_label_as_insertions() -> None:
    reference = [("alice", "the cat sat"), ("bob", "on the mat")]

    # One label for both: alice's three words and bob's three inserted, or bob's and alice's.
    assert cp_word_errors(reference, [("S1", "the cat sat on the mat")])[:2] == (6, 6)
    three_labels = [("S1", "the cat sat"), ("S2", "on the mat"), ("S3", "hello there")]
    assert cp_word_errors(reference, three_labels) == (2, 6, {"alice": "S1", "bob": "S2"})


def test_der_is_zero_for_a_perfect_hypothesis_and_for_swapped_labels() -> None:
    reference = [(0.0, 10.0, "alice"), (10.5, 20.0, "bob"), (20.8, 30.0, "alice")]

    assert _der(reference, [(s, e, {"alice": "S1", "bob": "S2"}[who]) for s, e, who in reference]) == 0.0
    assert _der(reference, [(s, e, {"alice": "S2", "bob": "S1"}[who]) for s, e, who in reference]) == 0.0


def test_der_of_one_turn_under_the_wrong_label_is_its_share_of_the_speech() -> None:
    reference = [(0.0, 10.0, "alice"), (11.0, 20.0, "bob"), (21.0, 30.0, "alice")]
    hypothesis = [(0.0, 10.0, "S1"), (11.0, 20.0, "S1"), (21.0, 30.0, "S1")]

    assert _der(reference, hypothesis) == pytest.approx(9.0 / 28.0)
    # The 0.25 s collar takes 0.125 s off each side of every reference boundary.
    assert _der(reference, hypothesis, collar=0.25) == pytest.approx(8.75 / 27.25)


def test_der_counts_missed_speech_and_false_alarms() -> None:
    parts = diarization_error([(0.0, 10.0, "alice")], [(2.0, 12.0, "S1")], collar=0.0)

    assert parts == {"confusion": 0.0, "missed": 2.0, "false_alarm": 2.0, "total": 10.0}


def test_the_hypothesis_is_each_labels_words_merged_across_short_gaps() -> None:
    lines = [
        events.Final(text="a b", start=0.4, end=2.5, speaker_label="S1",
                     words=_words(("a", 0.6, 1.0), ("b", 1.3, 1.8))),
        events.Final(text="c", start=2.5, end=3.5, speaker_label="S2", words=_words(("c", 2.6, 3.0))),
        events.Final(text="d", start=3.5, end=4.5, speaker_label="S1", words=_words(("d", 3.6, 4.0))),
        events.Final(text="e", start=4.2, end=5.0, speaker_label="S1"),
    ]  # fmt: skip

    assert hypothesis_segments(lines, offset_s=0.5, from_words=True) == [
        (0.1, 1.3, "S1"),  # a and b, 0.3 s apart: one span
        (2.1, 2.5, "S2"),
        (3.1, 4.5, "S1"),  # d, and e's bounds (no words) 0.2 s later
    ]
    assert hypothesis_segments(lines) == [(0.4, 2.5, "S1"), (2.5, 3.5, "S2"), (3.5, 5.0, "S1")]


def test_final_latency_counts_each_turn_end_once_from_the_finals_shown_after_it() -> None:
    def final(start: float, end: float) -> events.Final:
        return events.Final(text="x", start=start, end=end)

    shown = [
        (5.0, final(1.0, 4.0)),  # "4.0": its last word ends 0.1 s before the energy says
        (9.5, final(4.6, 6.0)),  # one utterance split at a change of voice: two finals at once
        (9.5, final(6.2, 7.9)),
        (11.2, final(8.4, 11.0)),  # cut inside a turn: no turn ends near it
        (13.0, final(11.0, 12.1)),
        (19.0, final(12.5, 16.0)),  # ran on from the turn ending at 14.0 into the next
    ]

    latencies = utterance_latencies(shown, speech_ends=[4.1, 8.0, 12.0, 14.0, 16.5])

    assert latencies == pytest.approx([0.9, 1.5, 1.0])


def test_a_voice_recorded_under_other_conditions_is_left_out(plans: list[ConversationPlan]) -> None:
    assert not any(turn.audio == "mfa_cold_corpus.wav" for plan in plans for turn in plan.turns)
