"""Refined turns through the real consumer: stt_revised, every version kept, corrections kept."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from sessions_app.models import Utterance
from tests.sessions_app.live_helpers import (
    caption_communicator,
    pcm16,
    receive_finals_until_idle,
    receive_until,
    send_json,
    start,
    stream_audio,
    stream_communicator,
)
from tests.speech import dev_clip, word_error_rate

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.usefixtures("live_settings")]


def _rows(session, **filters) -> list[Utterance]:
    return list(Utterance.objects.filter(session=session, **filters).order_by("sequence"))


async def test_a_turn_that_ends_on_a_pause_is_revised_for_everyone_and_its_fragments_are_kept(
    live_session, speaker_token
):
    clip = dev_clip("jfk")
    viewer = caption_communicator(live_session.id, token=live_session.share_token)
    assert (await viewer.connect(timeout=10))[0]
    speaker = stream_communicator(live_session.id, token=speaker_token)
    listening = await start(speaker)
    seen: list[dict] = []
    await stream_audio(speaker, pcm16(clip.path, seconds_of_silence_after=3.0))  # the pause ends the turn
    revised = await receive_until(speaker, "stt_revised", timeout_s=60, seen=seen)  # before any stt_stop
    finals = [m for m in seen if m["type"] == "stt_final"]
    assert len(finals) >= 2
    assert revised["replaces"] == [f["utterance_id"] for f in finals]
    assert revised["stream_id"] == listening["stream_id"] and revised["speaker"] == "alice"
    assert revised["session_id"] == str(live_session.id)
    new_ids = [u["utterance_id"] for u in revised["utterances"]]
    assert word_error_rate([clip.text], [" ".join(u["text"] for u in revised["utterances"])]) <= 0.05
    for utterance in revised["utterances"]:
        assert utterance["source"] == "refined" and utterance["words"]
        assert finals[0]["start"] - 0.3 <= utterance["start"] < utterance["end"] <= finals[-1]["end"] + 0.3
    viewer_revised = await receive_until(viewer, "stt_revised", timeout_s=30)
    assert viewer_revised["replaces"] == revised["replaces"]

    live_rows = await database_sync_to_async(_rows)(live_session, source=Utterance.Source.LIVE)
    assert [u.pk for u in live_rows] == revised["replaces"]  # the fragments are kept ...
    assert all(u.superseded_by_id in new_ids and u.superseded_at for u in live_rows)  # ... and marked
    current = await database_sync_to_async(lambda: list(Utterance.objects.filter(session=live_session).current()))()
    assert [u.pk for u in current] == new_ids
    assert current[0].spoken_at is not None and current[0].stream_id == listening["stream_id"]

    await send_json(speaker, {"type": "stt_stop"})
    after = await receive_finals_until_idle(speaker)
    assert after == []  # nothing was left to refine at the stop
    await speaker.disconnect()
    await viewer.disconnect()


async def test_a_final_corrected_before_its_turn_is_revised_stays_and_the_revision_leaves_its_words_out(
    live_session, speaker_token, user
):
    clip = dev_clip("jfk")
    speaker = stream_communicator(live_session.id, token=speaker_token)
    await start(speaker)
    streaming = asyncio.create_task(stream_audio(speaker, pcm16(clip.path, seconds_of_silence_after=3.0), speed=1.0))
    seen: list[dict] = []
    first = await receive_until(speaker, "stt_final", timeout_s=60, seen=seen)
    corrected = await database_sync_to_async(Utterance.objects.get)(pk=first["utterance_id"])
    await database_sync_to_async(corrected.correct)("And so, my fellow Americans (corrected)", user)
    await streaming
    revised = await receive_until(speaker, "stt_revised", timeout_s=60, seen=seen)
    finals = [m for m in seen if m["type"] == "stt_final"]
    assert revised["replaces"] == [f["utterance_id"] for f in finals[1:]]
    revised_words = [w for u in revised["utterances"] for w in u["words"]]
    assert revised_words and all((w["start"] + w["end"]) / 2 > corrected.end_s for w in revised_words)
    assert "fellow" not in " ".join(u["text"] for u in revised["utterances"]).lower()

    current = await database_sync_to_async(lambda: list(Utterance.objects.filter(session=live_session).current()))()
    assert current[0].pk == corrected.pk and current[0].display_text.endswith("(corrected)")
    assert [u.pk for u in current[1:]] == [u["utterance_id"] for u in revised["utterances"]]
    await send_json(speaker, {"type": "stt_stop"})
    await receive_finals_until_idle(speaker)
    await speaker.disconnect()


async def test_ending_the_session_stops_its_streams_and_keeps_what_was_said(live_session, speaker_token):
    from channels.layers import get_channel_layer

    from sessions_app.consumers import session_group
    from sessions_app.models import TranscriptionSession
    from sessions_app.protocol import CloseCode

    clip = dev_clip("jfk")
    viewer = caption_communicator(live_session.id, token=live_session.share_token)
    assert (await viewer.connect(timeout=10))[0]
    speaker = stream_communicator(live_session.id, token=speaker_token)
    await start(speaker)
    open_streams = TranscriptionSession.objects.filter(pk=live_session.pk).values_list("streams_open", flat=True)
    assert await database_sync_to_async(open_streams.get)() == 1
    pcm = pcm16(clip.path)
    await stream_audio(speaker, pcm[: len(pcm) * 3 // 4])  # mid-sentence
    await get_channel_layer().group_send(session_group(live_session.id), {"type": "session.ended"})
    seen: list[dict] = []
    ended = await receive_until(speaker, "stt_error", timeout_s=30, seen=seen)
    assert ended["code"] == "SESSION_ENDED"
    assert (await speaker.receive_output(timeout=10)) == {"type": "websocket.close", "code": CloseCode.SESSION_ENDED}
    assert (await receive_until(viewer, "stt_session_ended", timeout_s=10))["session_id"] == str(live_session.id)
    for _ in range(120):  # the stream's last final and its turn's refinement are still saved
        if await database_sync_to_async(open_streams.get)() == 0:
            break
        await asyncio.sleep(0.5)
    assert await database_sync_to_async(open_streams.get)() == 0
    current = await database_sync_to_async(lambda: list(Utterance.objects.filter(session=live_session).current()))()
    assert current and current[0].source == Utterance.Source.REFINED
    said = " ".join(clip.text.split()[:8])
    assert word_error_rate([said], [" ".join(" ".join(u.text for u in current).split()[:8])]) <= 0.25
    await viewer.disconnect()
