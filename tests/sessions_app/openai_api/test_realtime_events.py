"""The Realtime API's event functions on their own: session updates, audio, deltas, SDK shapes."""

from __future__ import annotations

import base64

import pytest
from openai.types.realtime import (
    InputAudioBufferCommittedEvent,
    RealtimeErrorEvent,
    SessionCreatedEvent,
)

from sessions_app.openai_api.realtime_events import (
    ItemText,
    RealtimeConfig,
    RealtimeError,
    VadSettings,
    apply_session_update,
    decode_audio,
    error_event,
    parse_client_event,
    server_event,
    session_object,
)

VAD = VadSettings(threshold=0.4, prefix_padding_ms=1000, silence_duration_ms=600)


def test_a_ga_session_update_sets_rate_language_and_manual_turns():
    event = {
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 16000},
                    "transcription": {"model": "gpt-4o-transcribe", "language": "EN", "prompt": "names"},
                    "turn_detection": None,
                }
            },
        },
    }
    config = apply_session_update(RealtimeConfig(), event)
    assert (config.sample_rate, config.model, config.language, config.prompt) == (
        16000,
        "gpt-4o-transcribe",
        "en",
        "names",
    )
    assert config.configured and not config.server_vad


def test_the_older_transcription_session_update_shape_is_understood():
    event = {
        "type": "transcription_session.update",
        "session": {
            "input_audio_format": "pcm16",
            "input_audio_transcription": {"model": "whisper-1", "language": "de"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
        },
    }
    config = apply_session_update(RealtimeConfig(server_vad=False), event)
    assert (config.sample_rate, config.language, config.server_vad) == (24000, "de", True)


def test_an_update_that_leaves_fields_out_keeps_them():
    config = RealtimeConfig(sample_rate=16000, language="en", server_vad=False, configured=True)
    assert apply_session_update(config, {"type": "session.update", "session": {"type": "transcription"}}) == config


def test_turn_detection_sets_the_streams_engine_vad_and_leaving_a_field_out_keeps_the_servers():
    turn_detection = {"type": "server_vad", "threshold": 0.7, "prefix_padding_ms": 300, "silence_duration_ms": 1200}
    update = {"type": "session.update", "session": {"audio": {"input": {"turn_detection": turn_detection}}}}
    config = apply_session_update(RealtimeConfig(), update)
    assert config.server_vad
    assert config.engine_vad == {
        "silero_sensitivity": pytest.approx(0.3),
        "pre_recording_buffer_s": 0.3,
        "post_speech_silence_s": 1.2,
    }
    update["session"]["audio"]["input"]["turn_detection"] = {"type": "server_vad", "silence_duration_ms": 900}
    assert apply_session_update(config, update).engine_vad == {"post_speech_silence_s": 0.9}


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"type": "realtime"}, "session.type"),
        ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 8000}}}}, "session.audio.input.format.rate"),
        ({"audio": {"input": {"format": {"type": "audio/pcmu"}}}}, "session.audio.input.format"),
        (
            {"audio": {"input": {"transcription": {"language": "klingon"}}}},
            "session.audio.input.transcription.language",
        ),
        ({"audio": {"input": {"turn_detection": {"type": "push"}}}}, "session.audio.input.turn_detection.type"),
        (
            {"audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 20}}}},
            "session.audio.input.turn_detection.silence_duration_ms",
        ),
        (
            {"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": "high"}}}},
            "session.audio.input.turn_detection.threshold",
        ),
        ({"audio": "loud"}, "session.audio"),
    ],
)
def test_a_session_update_the_server_cannot_honour_names_the_field(session, param):
    with pytest.raises(RealtimeError) as refused:
        apply_session_update(RealtimeConfig(), {"type": "session.update", "session": session})
    assert refused.value.param == param


@pytest.mark.parametrize("audio", ["**", "AAA", 12, None])
def test_audio_that_is_not_base64_pcm16_is_refused(audio):
    with pytest.raises(RealtimeError) as refused:
        decode_audio({"type": "input_audio_buffer.append", "audio": audio})
    assert refused.value.param == "audio"


def test_an_odd_number_of_audio_bytes_is_refused_and_an_even_one_decoded():
    with pytest.raises(RealtimeError):
        decode_audio({"audio": base64.b64encode(b"\x00\x01\x02").decode()})
    assert decode_audio({"audio": base64.b64encode(b"\x00\x01").decode()}) == b"\x00\x01"


def test_an_unknown_event_type_is_refused_with_the_clients_event_id():
    with pytest.raises(RealtimeError) as refused:
        parse_client_event('{"type": "response.create", "event_id": "evt_1"}')
    assert (refused.value.code, refused.value.param, refused.value.event_id) == ("invalid_value", "type", "evt_1")


def test_deltas_grow_with_the_stabilized_text_and_add_up_to_a_final_that_begins_with_them():
    item = ItemText("item_1")
    assert item.stabilized("And so my") == "And so my"
    assert item.stabilized("And so my") == ""
    assert item.stabilized("And so my fellow") == " fellow"
    assert item.final(" And so my fellow Americans.") == " Americans."
    assert item.emitted == item.transcript == "And so my fellow Americans."


def test_a_final_that_disagrees_with_the_deltas_sends_no_delta_but_is_the_transcript():
    item = ItemText("item_1")
    item.stabilized("And so my")
    assert item.final("And so, my fellow Americans.") == ""
    assert item.transcript == "And so, my fellow Americans."


def test_the_finals_of_a_committed_buffer_join_into_one_transcript_with_deltas_across_them():
    item = ItemText("item_1")
    assert item.final("Ask not") == "Ask not"
    assert item.stabilized("what your") == " what your"
    assert item.final("what your country can do.") == " country can do."
    assert item.transcript == "Ask not what your country can do."


def test_server_events_parse_strictly_as_the_sdks_models():
    SessionCreatedEvent.model_validate(
        server_event("session.created", session=session_object(RealtimeConfig(), "sess_1", VAD))
    )
    InputAudioBufferCommittedEvent.model_validate(
        server_event("input_audio_buffer.committed", item_id="item_1", previous_item_id=None)
    )
    error = RealtimeErrorEvent.model_validate(error_event("invalid_value", "Bad.", param="audio", event_id="evt_1"))
    assert (error.error.type, error.error.event_id) == ("invalid_request_error", "evt_1")
