"""Refinement of turns: a speaker's turn is decoded again as one window and replaces its finals."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from stt_engine import SharedDecodeLoad, StreamingSession, events
from tests.speech import dev_clip, word_error_rate

from .conftest import WER_CLIPS
from .streaming import check_event_order, current_text, finals, read_pcm, revisions, stream


def test_a_turn_of_several_finals_is_revised_as_one_window(make_session):
    clip = dev_clip("jfk")
    evs = stream(make_session(), read_pcm(clip.path))
    check_event_order(evs)
    live = finals(evs)
    assert len(live) >= 2  # JFK's pauses split it into fragments
    [revised] = revisions(evs)
    assert revised.replaces == [f.utterance_index for f in live]
    assert evs.index(revised) > evs.index(live[-1])
    assert isinstance(evs[-1], events.StateChanged) and evs[-1].state == "idle"
    text = " ".join(u.text for u in revised.utterances)
    assert word_error_rate([clip.text], [text]) <= 0.05
    for utterance in revised.utterances:
        assert utterance.utterance_index == live[0].utterance_index
        assert utterance.words and live[0].start - 0.3 <= utterance.start < utterance.end <= live[-1].end + 0.3
        assert all(a.start <= b.start for a, b in zip(utterance.words, utterance.words[1:], strict=False))


def test_a_pause_ends_the_turn_and_its_revision_comes_while_the_stream_goes_on(make_session, engine_config):
    first, second = dev_clip("jfk"), dev_clip("librivox_sense_and_sensibility_01_0870")
    pcm = np.concatenate([read_pcm(first.path, tail_s=3.0), read_pcm(second.path)])
    # JFK pauses up to about 1.3 s between phrases: with turns ended by 1.5 s, the clip is one turn.
    session = make_session(config=replace(engine_config, turn_pause_s=1.5))
    # The refinement is optional work that the host runs between commands (as the engine
    # process does); here it runs after every chunk, like the child after each audio command.
    evs = []
    step = 16000 * 40 // 1000
    for i in range(0, len(pcm), step):
        evs.extend(session.feed(pcm[i : i + step].tobytes()))
        evs.extend(session.refine())
    first_turn = revisions(evs)
    assert len(first_turn) == 1, "the first clip's turn is revised before the stream stops"
    evs.extend(session.stop())
    check_event_order(evs)
    both = revisions(evs)
    assert len(both) == 2
    # The second turn began soon after the first (refine_join_s): it is decoded together with it,
    # so its revision replaces the first revision too.
    assert both[1].replaces == [
        both[0].utterances[0].utterance_index,
        *(f.utterance_index for f in finals(evs) if f.utterance_index not in both[0].replaces),
    ]
    assert word_error_rate([first.text + " " + second.text], [current_text(evs)]) <= 0.08


def test_refinement_waits_while_the_cores_are_full(engine_config, engine_models):
    clip = dev_clip("jfk")
    load = SharedDecodeLoad(capacity=2)
    # Only the room on the cores counts here (not whether others talked lately: refine_yield_s).
    config = replace(engine_config, refine_yield_s=0.0)
    session = StreamingSession(config, language="en", models=engine_models, load=load.claim())
    evs = stream(session, read_pcm(clip.path, tail_s=3.0), stop=False)
    assert session.refinement_waiting
    with load.decoding(2):  # another stream's final fills both cores
        assert session.refine() == []
    assert session.stats.refinements_deferred == 1 and session.refinement_waiting
    revised = session.refine()
    assert len(revised) == 1 and not session.refinement_waiting
    assert not revisions(evs + session.stop())  # refined once, not again at the stop


def test_turns_that_waited_are_refined_one_a_call_so_new_audio_is_heard_between(engine_config, engine_models):
    # Two turns end while the cores are full (another stream's final): both wait. The host then
    # gets one turn a call, and looks at its commands (audio that came meanwhile) between calls.
    first, second = dev_clip("jfk"), dev_clip("librivox_sense_and_sensibility_01_0870")
    pcm = np.concatenate([read_pcm(first.path, tail_s=6.0), read_pcm(second.path, tail_s=3.0)])
    load = SharedDecodeLoad(capacity=2)
    config = replace(engine_config, refine_yield_s=0.0)
    session = StreamingSession(config, language="en", models=engine_models, load=load.claim())
    with load.decoding(2):
        evs = stream(session, pcm, stop=False)
        assert session.refine() == []
    assert len(finals(evs)) >= 2 and session.refinement_waiting
    one = session.refine()
    assert len(one) == 1 and session.refinement_waiting, "the second turn waits for the next call"
    two = session.refine()
    assert len(two) == 1 and not session.refinement_waiting
    assert not set(one[0].replaces) & set(two[0].replaces)


def test_the_stop_refines_every_turn_that_waits(engine_config, engine_models):
    first, second = dev_clip("jfk"), dev_clip("librivox_sense_and_sensibility_01_0870")
    pcm = np.concatenate([read_pcm(first.path, tail_s=6.0), read_pcm(second.path, tail_s=3.0)])
    load = SharedDecodeLoad(capacity=2)
    session = StreamingSession(
        replace(engine_config, refine_yield_s=0.0), language="en", models=engine_models, load=load.claim()
    )
    with load.decoding(2):
        stream(session, pcm, stop=False)
    assert session.refinement_waiting
    assert len(revisions(session.stop())) == 2


def test_refinement_yields_to_other_streams_that_are_talking(engine_config, engine_models):
    clip = dev_clip("jfk")
    load = SharedDecodeLoad(capacity=64)  # room for anything: only the others' talking counts
    other = load.claim()
    session = StreamingSession(engine_config, language="en", models=engine_models, load=load.claim())
    evs = stream(session, read_pcm(clip.path, tail_s=3.0), stop=False)
    assert session.refinement_waiting
    with other.decoding(1):  # another stream is decoding (its partial or final)
        assert session.refine() == []
        assert session.refinement_waiting
        # It is still talking when this stream stops: the turn is left to the recording's pass.
        evs += session.stop()
    assert not revisions(evs) and finals(evs)
    assert session.stats.refinements == 0 and session.stats.refinements_given_up == 1


def test_refinement_waits_while_the_speaker_talks(make_session):
    clip = dev_clip("jfk")
    session = make_session()
    pcm = np.concatenate([read_pcm(clip.path, tail_s=3.0), read_pcm(clip.path, lead_s=0.0)])
    talking_again = len(read_pcm(clip.path, tail_s=3.0)) + 16000 * 2  # two seconds into the repeat
    stream(session, pcm[:talking_again], stop=False)
    assert session.state == "recording" and session.refinement_waiting
    assert session.refine() == [] and session.stats.refinements_deferred == 1
    evs = stream(session, pcm[talking_again:])
    assert len(revisions(evs)) == 2  # the first turn once the speaker paused, then the second


def test_a_turn_after_a_long_pause_is_refined_alone(make_session):
    first, second = dev_clip("jfk"), dev_clip("librivox_sense_and_sensibility_01_0870")
    pcm = np.concatenate([read_pcm(first.path, tail_s=6.0), read_pcm(second.path)])
    evs = stream(make_session(), pcm)
    one, two = revisions(evs)
    assert not set(one.replaces) & set(two.replaces)


def test_refinement_can_be_turned_off(make_session, engine_config):
    evs = stream(make_session(config=replace(engine_config, refine_turns=False)), read_pcm(dev_clip("jfk").path))
    assert finals(evs) and not revisions(evs)


def test_refined_text_is_at_least_as_accurate_as_the_finals(dev_runs):
    references = [clip.text for clip, _ in dev_runs]
    live = [" ".join(f.text for f in finals(evs)) for _, evs in dev_runs]
    refined = [current_text(evs) for _, evs in dev_runs]
    assert all(revisions(evs) for _, evs in dev_runs), [clip.path.stem for clip, evs in dev_runs if not revisions(evs)]
    assert len(dev_runs) == len(WER_CLIPS)
    # On these 8 short clips the finals are already near their best (1 error in 3): one word either way.
    assert word_error_rate(references, refined) <= word_error_rate(references, live) + 0.01
