"""Input validation, config validation and event payloads (no decoding needed)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from stt_engine import AudioFormatError, EngineConfig, SessionClosedError, events
from stt_engine.audio import PcmConverter, check_sample_rate


@pytest.mark.parametrize("bad", ["text", 123, None, np.zeros(10, np.int16), [1, 2]])
def test_non_bytes_audio_is_rejected_with_bad_audio(make_session, bad):
    session = make_session()
    with pytest.raises(AudioFormatError) as info:
        session.feed(bad)
    assert info.value.code == "BAD_AUDIO"


def test_an_odd_byte_count_is_rejected_and_the_session_goes_on(make_session):
    session = make_session()
    with pytest.raises(AudioFormatError, match="odd"):
        session.feed(b"\x00\x01\x02")
    assert session.feed(b"\x00\x00" * 800)[0] == events.StateChanged(state="listening", at=0.0)


@pytest.mark.parametrize("rate", [4000, 96000, 16000.0, "16000", True])
def test_unsupported_sample_rates_are_rejected(rate):
    with pytest.raises(AudioFormatError):
        check_sample_rate(rate)


def test_a_stopped_session_refuses_audio(make_session):
    session = make_session()
    assert session.stop() == [events.StateChanged(state="listening", at=0.0), events.StateChanged(state="idle")]
    assert session.stop() == []
    with pytest.raises(SessionClosedError) as info:
        session.feed(b"\x00\x00")
    assert info.value.code == "NOT_STARTED"


def test_converter_keeps_duration_across_odd_chunking():
    converter = PcmConverter(44100)
    pcm = (np.sin(np.arange(44100) / 10) * 8000).astype(np.int16).tobytes()
    out = [converter.convert(pcm[i : i + 882]) for i in range(0, len(pcm), 882)] + [converter.flush()]
    assert abs(sum(len(o) for o in out) - 16000) <= 2


@pytest.mark.parametrize(
    ("field", "value"),
    [("silero_sensitivity", 1.5), ("webrtc_sensitivity", 4), ("max_utterance_s", 45.0), ("beam_size", 0),
     ("cpu_threads", -1), ("partial_cpu_threads", 0), ("webrtc_hangover_s", -1.0), ("language", ""),
     ("speculative_final_after_s", 0.9), ("partial_busy_interval_s", 0.1)],
)
def test_config_validation_names_the_bad_setting(field, value):
    with pytest.raises(ValueError, match=field):
        EngineConfig(**{field: value}).validate()


def test_default_config_is_valid_and_matches_the_issue():
    cfg = EngineConfig().validate()
    assert (cfg.silero_sensitivity, cfg.webrtc_sensitivity) == (0.4, 3)
    assert (cfg.post_speech_silence_s, cfg.min_utterance_s, cfg.pre_recording_buffer_s) == (0.6, 0.5, 1.0)
    assert (cfg.partial_model, cfg.final_model, cfg.max_utterance_s) == ("tiny.en", "base", 15.0)


def test_events_have_protocol_payloads_and_pickle():
    final = events.Final(text="hi there", start=1.0, end=1.5, words=[events.Word("hi", 1.0, 1.2, 0.9)],
                         language="en", confidence=0.9, model="base", at=2.0)
    samples = [
        (events.StateChanged(state="recording"), "stt_state"),
        (events.VadStart(), "stt_vad_start"),
        (events.VadStop(), "stt_vad_stop"),
        (events.RecordingStart(start=0.5), "stt_recording_start"),
        (events.RecordingStop(end=1.5), "stt_recording_stop"),
        (events.PartialUpdate(text="hi"), "stt_update"),
        (events.Stabilized(text="hi"), "stt_stabilized"),
        (final, "stt_final"),
        (events.EngineError(code="BAD_AUDIO", message="odd"), "stt_error"),
    ]
    for event, name in samples:
        assert event.type == name
        message = event.to_message()
        assert message["type"] == name
        assert pickle.loads(pickle.dumps(event)) == event
    assert events.EngineError(code="BAD_AUDIO", message="odd").to_message()["error"] == "odd"
    assert final.to_message()["words"] == [{"word": "hi", "start": 1.0, "end": 1.2, "probability": 0.9}]
    assert events.StateChanged(state="recording").to_message()["state"] == "recording"
