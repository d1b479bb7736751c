"""Speaker diarization: resemblyzer's encoder with its wheel's weights, on conversations of dev clips."""

from __future__ import annotations

import itertools
import json
import wave
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
from faster_whisper.feature_extractor import FeatureExtractor

from stt_engine import EngineConfig, SttEngineError, events
from stt_engine.batch import BatchSegment, transcribe_file
from stt_engine.diarizer import (
    Diarizer,
    DiarizerWeightsError,
    SpeakerRegion,
    default_weights_path,
    load_voice_encoder,
    match_labels,
    mel_frames,
    slaney_mel_filters,
    snap_regions,
    speaker_runs,
)
from stt_engine.session import StreamingSession
from tests.speech import DEV_DIR

from .streaming import check_event_order, current_text, finals, no_decode_time, revisions, stream

_SR = 16000


def _clips_of(speaker: str) -> list[np.ndarray]:
    """The dev clips of one speaker as float32, leading and trailing silence cut off."""
    out = []
    for line in (DEV_DIR / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["speaker"] == f"librispeech_{speaker}":
            audio, rate = sf.read(str(DEV_DIR / row["audio"]), dtype="float32")
            assert rate == _SR
            out.append(_trimmed(audio))
    return out


def _trimmed(audio: np.ndarray) -> np.ndarray:
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    level = np.sqrt(np.mean(frames**2, axis=1))
    loud = np.flatnonzero(level > 0.2 * level.max())
    return audio[loud[0] * 160 : (loud[-1] + 1) * 160]


def _conversation(turns: list[tuple[str, np.ndarray]], gap_s: float) -> tuple[np.ndarray, list[SpeakerRegion]]:
    """Turns joined with ``gap_s`` of silence (0.5 s before, 1.5 s after), and who spoke when."""
    parts = [np.zeros(_SR // 2, np.float32)]
    truth = []
    t = 0.5
    for i, (speaker, audio) in enumerate(turns):
        if i:
            parts.append(np.zeros(int(gap_s * _SR), np.float32))
            t += gap_s
        parts.append(audio)
        truth.append(SpeakerRegion(t, t + len(audio) / _SR, speaker))
        t += len(audio) / _SR
    parts.append(np.zeros(int(1.5 * _SR), np.float32))
    return np.concatenate(parts), truth


def _pcm(audio: np.ndarray) -> np.ndarray:
    return np.clip(audio * 32768.0, -32768, 32767).astype(np.int16)


def _who(truth: list[SpeakerRegion], start: float, end: float) -> str:
    """The true speaker of most of ``start..end``."""
    overlap = Counter()
    for region in truth:
        overlap[region.label] += max(0.0, min(end, region.end) - max(start, region.start))
    return overlap.most_common(1)[0][0]


def _assert_labels_follow_speakers(labelled: list[tuple[float, float, str]], truth: list[SpeakerRegion]) -> None:
    """Every label stands for one true speaker and each speaker for one label."""
    pairs = {(label, _who(truth, start, end)) for start, end, label in labelled}
    assert len({label for label, _ in pairs}) == len(pairs) == len({speaker for _, speaker in pairs}), pairs


@pytest.fixture(scope="module")
def encoder():
    return load_voice_encoder()


@pytest.fixture(scope="module")
def two_speakers() -> tuple[list[np.ndarray], list[np.ndarray]]:
    return _clips_of("1688"), _clips_of("2609")


# -- features and weights ------------------------------------------------------------------------


def test_the_mel_filters_are_slaneys_with_unit_area():
    ours = slaney_mel_filters(16000, 400, 40)
    # faster-whisper carries librosa's Slaney filterbank too (for Whisper's 80/128 bands).
    theirs = FeatureExtractor.get_mel_filters(16000, 400, n_mels=40)
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    areas = ours.sum(axis=1) * (16000 / 400)  # Hz per FFT bin
    np.testing.assert_allclose(areas, 1.0, atol=0.05)  # narrow low filters on 40 Hz bins


@pytest.mark.parametrize(("hz", "band"), [(300.0, 3), (1000.0, 13), (3000.0, 27), (6000.0, 36)])
def test_a_pure_tone_peaks_in_its_mel_band(hz, band):
    t = np.arange(_SR) / _SR
    mel = mel_frames((0.1 * np.sin(2 * np.pi * hz * t)).astype(np.float32))
    assert mel.shape == (1 + _SR // 160, 40)
    assert int(mel.mean(axis=0).argmax()) == band


def test_the_weights_come_from_the_resemblyzer_wheel(encoder):
    path = default_weights_path()
    assert path is not None and path.name == "pretrained.pt" and path.parent.name == "resemblyzer"
    assert load_voice_encoder() is encoder  # loaded once per process


def test_missing_weights_give_a_clear_error_naming_the_package(tmp_path):
    with pytest.raises(DiarizerWeightsError) as info:
        load_voice_encoder(tmp_path / "missing.pt")
    assert isinstance(info.value, SttEngineError)
    assert "resemblyzer" in info.value.message and "pip install --no-deps resemblyzer" in info.value.message
    damaged = tmp_path / "pretrained.pt"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(DiarizerWeightsError, match="resemblyzer"):
        load_voice_encoder(damaged)


def test_a_diarized_stream_without_weights_fails_at_its_start(tmp_path, engine_models):
    config = EngineConfig(cpu_threads=2, diarize=True, diarize_weights=str(tmp_path / "missing.pt"))
    with pytest.raises(DiarizerWeightsError, match="resemblyzer"):
        StreamingSession(config, language="en", models=engine_models, timer=no_decode_time)


def test_diarize_must_be_a_bool():
    with pytest.raises(ValueError, match="diarize"):
        EngineConfig(diarize=1.0).validate()
    with pytest.raises(ValueError, match="diarize_threshold"):
        EngineConfig(diarize_threshold=1.5).validate()


# -- clustering ----------------------------------------------------------------------------------


def test_two_speakers_alternating_get_two_stable_labels(encoder, two_speakers):
    first, second = two_speakers
    turns = [(speaker, clips[i]) for i in range(4) for speaker, clips in (("A", first), ("B", second))]
    audio, truth = _conversation(turns, gap_s=0.8)
    diarizer = Diarizer(encoder)
    labelled = []
    for region in truth:
        span = audio[int(region.start * _SR) : int(region.end * _SR)]
        labelled += [(r.start, r.end, r.label) for r in diarizer.label_span(span, region.start)]
    assert diarizer.labels == ["S1", "S2"]
    assert [label for _, _, label in labelled] == ["S1", "S2"] * 4
    _assert_labels_follow_speakers(labelled, truth)


def test_one_speaker_alone_over_a_minute_stays_one_label(encoder, two_speakers):
    clips = two_speakers[0]
    audio, truth = _conversation([("A", clip) for clip in clips], gap_s=0.8)
    assert truth[-1].end > 60
    diarizer = Diarizer(encoder)
    for region in truth:
        diarizer.label_span(audio[int(region.start * _SR) : int(region.end * _SR)], region.start)
    assert {region.label for region in diarizer.timeline} == {"S1"}


def test_a_short_turn_unlike_every_voice_heard_opens_a_new_speaker(encoder, two_speakers):
    first, second = two_speakers
    diarizer = Diarizer(encoder)
    diarizer.label_span(first[0], 0.0)
    (short,) = diarizer.label_span(second[0][: int(1.2 * _SR)], 20.0)
    assert short.label == "S2" and diarizer.labels == ["S1", "S2"]


def test_a_short_turn_of_a_known_voice_goes_to_it_and_opens_no_speaker(encoder, two_speakers):
    first, second = two_speakers
    for clip in second[1:]:
        diarizer = Diarizer(encoder)
        for start, audio in ((0.0, first[0]), (20.0, second[0]), (30.0, first[1])):
            diarizer.label_span(audio, start)
        (short,) = diarizer.label_span(clip[: int(1.2 * _SR)], 50.0)
        assert short.label == "S2" and diarizer.labels == ["S1", "S2"]


def test_one_voice_between_two_turns_of_another_in_one_span_is_cut_out(encoder, two_speakers):
    # No single cut separates A B A (both sides are mostly A): two cuts do.
    first, second = two_speakers
    pause = np.zeros(int(0.4 * _SR), np.float32)
    turns = [first[0][: 4 * _SR], second[0][: 3 * _SR], first[1][: 4 * _SR]]
    span = np.concatenate([turns[0], pause, turns[1], pause, turns[2]])
    regions = Diarizer(encoder).label_span(span, 0.0)
    assert [r.label for r in regions] == ["S1", "S2", "S1"]
    b_starts, b_ends = 4.4, 7.4
    assert abs(regions[1].start - b_starts) < 0.8 and abs(regions[1].end - b_ends) < 0.8


def test_the_end_of_one_turn_and_the_start_of_the_next_in_one_short_span_go_to_both_voices(encoder):
    # A 2-2.6 s span too short for a cut to show (its 1.6 s windows overlap) is like both known
    # voices: its windows are shared between them rather than opening a third speaker.
    a, b = _clips_of("2609"), _clips_of("3331")
    outcomes = Counter()
    for k in range(min(len(a), len(b)) - 1):
        for a_s, b_s in ((1.2, 1.1), (1.0, 1.0), (1.4, 0.9)):
            diarizer = Diarizer(encoder)
            for start, audio in ((0.0, a[-1]), (20.0, b[-1]), (40.0, a[-2])):
                diarizer.label_span(audio, start)
            pause = np.zeros(int(0.3 * _SR), np.float32)
            span = np.concatenate([a[k][-int(a_s * _SR) :], pause, b[k][: int(b_s * _SR)]])
            outcomes[" ".join(r.label for r in diarizer.label_span(span, 60.0))] += 1
    spans = sum(outcomes.values())
    # Before this (short pieces, shared windows): 2 of 27 came out "S1 S2" and 9 opened "S3"; now 12 and 1.
    assert outcomes["S1 S2"] >= spans / 3, outcomes
    assert sum(n for labels, n in outcomes.items() if "S3" in labels) <= 2, outcomes


def test_the_timeline_changes_speaker_at_the_pause_between_the_words(encoder, two_speakers):
    # Refinement labels its new words from the timeline: its changes must be where the words
    # of the first decode changed speaker, not where the embeddings put them.
    first, second = two_speakers
    diarizer = Diarizer(encoder)
    diarizer.label_span(first[0], 0.0)
    diarizer.label_span(second[0], 20.0)
    a, b = first[1][: int(5 * _SR)], second[1][: int(3 * _SR)]
    span = np.concatenate([a, np.zeros(int(0.3 * _SR), np.float32), b])
    # Words every 0.5 s through each turn; the pause between the turns is 5.0..5.3 (+ 40 s).
    words = [events.Word("a", 40.0 + t, 40.0 + t + 0.4, 0.9) for t in np.arange(0.0, 4.9, 0.5)]
    words += [events.Word("b", 45.3 + t, 45.3 + t + 0.4, 0.9) for t in np.arange(0.0, 2.9, 0.5)]
    regions = diarizer.label_span(span, 40.0, words)
    assert [r.label for r in regions] == ["S1", "S2"]
    change = (words[9].end + words[10].start) / 2
    assert regions[1].start == pytest.approx(change)
    assert diarizer.label_at(change - 0.05) == "S1" and diarizer.label_at(change + 0.05) == "S2"
    runs = diarizer.runs_for_words(words)
    assert [(r.label, r.first_word, r.end_word) for r in runs] == [("S1", 0, 10), ("S2", 10, 16)]


def test_snapped_changes_stay_in_order_and_drop_emptied_regions():
    words = [events.Word(str(i), t, t + 0.3, 0.9) for i, t in enumerate((0.0, 0.4, 1.5, 1.9, 2.3))]
    # Both changes near the one wide pause (0.7..1.5): the middle region is left empty.
    regions = [SpeakerRegion(0.0, 1.0, "S1"), SpeakerRegion(1.0, 1.2, "S2"), SpeakerRegion(1.2, 2.6, "S1")]
    assert snap_regions(words, regions) == [SpeakerRegion(0.0, 2.6, "S1")]
    assert snap_regions([], regions) == regions


def test_words_are_split_at_the_widest_gap_near_a_change():
    words = [
        events.Word("one", 0.0, 0.4, 0.9),
        events.Word("two", 0.5, 0.9, 0.9),
        events.Word("three", 1.5, 1.9, 0.9),  # the pause before "three" is where B took over
        events.Word("four", 2.0, 2.4, 0.9),
    ]
    regions = [SpeakerRegion(0.0, 1.9, "S1"), SpeakerRegion(1.9, 2.5, "S2")]
    runs = speaker_runs(words, regions)
    assert [(r.label, r.first_word, r.end_word) for r in runs] == [("S1", 0, 2), ("S2", 2, 4)]


def test_match_labels_pairs_by_overlap_one_to_one_and_numbers_the_rest_after():
    live = [(0.0, 10.0, "S1"), (10.0, 20.0, "S2"), (20.0, 30.0, "S1")]
    offline = [(0.0, 9.0, "S2"), (9.5, 21.0, "S1"), (21.0, 29.0, "S2"), (30.0, 35.0, "S3"), (35.0, 36.0, "S4")]
    assert match_labels(live, offline) == {"S2": "S1", "S1": "S2", "S3": "S3", "S4": "S4"}
    assert match_labels([], [(0.0, 1.0, "S1")]) == {"S1": "S1"}


# -- the stream ----------------------------------------------------------------------------------


def test_the_option_off_labels_nothing_and_loads_no_encoder(make_session, two_speakers):
    session = make_session()
    assert session._diarizer is None
    evs = stream(session, _pcm(_conversation([("A", two_speakers[0][8])], gap_s=0.8)[0]))
    assert finals(evs) and all(f.speaker_label == "" for f in finals(evs))
    assert all(u.speaker_label == "" for r in revisions(evs) for u in r.utterances)
    assert finals(evs)[0].to_message()["speaker_label"] == ""
    assert session.stats.diarize_cpu_s == 0.0


def test_a_speculative_final_is_embedded_with_its_decode_not_when_the_utterance_closes(
    make_session, engine_config, two_speakers, monkeypatch
):
    # The embedding is most of the diarizer's cost: done ahead with the speculative decode, the
    # final that the silence then closes only has its pieces assigned.
    first, second = two_speakers
    audio, _ = _conversation([("A", first[3]), ("B", second[5]), ("A", first[4])], gap_s=0.8)
    session = make_session(config=replace(engine_config, diarize=True))
    encoder = session._diarizer.encoder
    embed = encoder.embed_windows
    embedded_at = []

    def recording_embed(wav, step_s):
        embedded_at.append(session._now())
        return embed(wav, step_s)

    monkeypatch.setattr(encoder, "embed_windows", recording_embed)
    evs = stream(session, _pcm(audio))
    closed_at = {e.at for e in evs if isinstance(e, events.VadStop)}
    assert session.stats.speculative_hits >= 2
    ahead = [at for at in embedded_at if at not in closed_at]
    assert len(ahead) >= session.stats.speculative_hits
    assert len(embedded_at) <= session.stats.final_decodes  # a hit is not embedded again
    assert {f.speaker_label for f in finals(evs)} == {"S1", "S2"}


def test_one_speaker_diarized_gives_the_same_finals_as_the_option_off(make_session, engine_config, two_speakers):
    audio, _ = _conversation([("A", clip) for clip in two_speakers[0][3:6]], gap_s=0.8)
    plain = stream(make_session(), _pcm(audio))
    diarized_session = make_session(config=replace(engine_config, diarize=True))
    diarized = stream(diarized_session, _pcm(audio))
    assert [(f.utterance_index, f.text) for f in finals(diarized)] == [
        (f.utterance_index, f.text) for f in finals(plain)
    ]
    assert {f.speaker_label for f in finals(diarized)} == {"S1"}
    assert current_text(diarized) == current_text(plain)
    assert diarized_session.stats.diarize_cpu_s > 0


def test_a_diarized_stream_labels_who_spoke_and_every_final_is_revised(make_session, engine_config, two_speakers):
    first, second = two_speakers
    audio, truth = _conversation([("A", first[3]), ("B", second[0]), ("A", first[4]), ("B", second[1])], gap_s=0.8)
    evs = stream(make_session(config=replace(engine_config, diarize=True)), _pcm(audio))
    check_event_order(evs)
    shown = finals(evs)
    assert [f.speaker_label for f in shown] and {f.speaker_label for f in shown} == {"S1", "S2"}
    _assert_labels_follow_speakers([(f.start, f.end, f.speaker_label) for f in shown], truth)
    replaced = {index for r in revisions(evs) for index in r.replaces}
    assert {f.utterance_index for f in shown} <= replaced
    revised = [u for r in revisions(evs) for u in r.utterances]
    _assert_labels_follow_speakers([(u.start, u.end, u.speaker_label) for u in revised], truth)
    for r in revisions(evs):
        assert len({u.speaker_label for u in r.utterances}) == 1  # a turn is one person


def test_a_change_inside_one_utterance_splits_its_final(make_session, engine_config, two_speakers):
    first, second = two_speakers
    # 0.3 s between them: less than the post-speech silence, so the VAD keeps one utterance.
    audio, truth = _conversation([("A", first[9]), ("B", second[9])], gap_s=0.3)
    evs = stream(make_session(config=replace(engine_config, diarize=True)), _pcm(audio))
    check_event_order(evs)
    closed = [e for e in evs if isinstance(e, events.RecordingStop)]
    assert len(closed) == 1, "the VAD was to keep both in one utterance"
    shown = finals(evs)
    assert [f.speaker_label for f in shown] == ["S1", "S2"]
    assert shown[0].utterance_index < shown[1].utterance_index
    assert abs(shown[0].end - truth[0].end) < 0.6 and abs(shown[1].start - truth[1].start) < 0.6
    refs = [" ".join(w.word for w in shown[0].words), " ".join(w.word for w in shown[1].words)]
    assert " ".join(refs) == " ".join(f.text for f in shown)
    replaced = [index for r in revisions(evs) for index in r.replaces]
    assert sorted(replaced) == sorted(f.utterance_index for f in shown)
    assert [u.speaker_label for r in revisions(evs) for u in r.utterances][:1] == ["S1"]
    assert {u.speaker_label for r in revisions(evs) for u in r.utterances} == {"S1", "S2"}


# -- files ---------------------------------------------------------------------------------------


def _write_wav(path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(_SR)
        out.writeframes(_pcm(audio).astype("<i2").tobytes())


def test_the_batch_function_labels_a_two_speaker_file(tmp_path, two_speakers):
    first, second = two_speakers
    audio, truth = _conversation([("A", first[5]), ("B", second[3]), ("A", first[2]), ("B", second[5])], gap_s=0.8)
    path = tmp_path / "meeting.wav"
    _write_wav(path, audio)
    result = transcribe_file(path, language="en", diarize=True)
    segments = result.segments
    assert {s.speaker_label for s in segments} == {"S1", "S2"} and segments[0].speaker_label == "S1"
    _assert_labels_follow_speakers([(s.start, s.end, s.speaker_label) for s in segments], truth)
    assert all(s.to_dict()["speaker_label"] == s.speaker_label for s in segments)
    assert all(a.start <= b.start for a, b in itertools.pairwise(segments))
    assert all(s.text and s.words for s in segments)


def test_an_undiarized_segment_has_no_label_in_its_json():
    segment = BatchSegment(start=0.0, end=1.0, text="hello")
    assert "speaker_label" not in segment.to_dict()
    assert replace(segment, speaker_label="S2").to_dict()["speaker_label"] == "S2"
