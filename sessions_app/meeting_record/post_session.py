"""The post-session pass: once a session ends, each speaker's recording is transcribed again.

``end_session`` closes the session, tells its sockets (their streams stop, viewers are told) and
queues the pass. A speaker whose live lines carry speaker labels (a diarized stream) is
transcribed with diarization too, and so is a speaker of a ``room_microphone`` session who has no
live line at all (their stream found no engine; one that said ``"diarize": false`` has unlabelled
lines and keeps them so); the pass's labels are mapped onto the live ones by time overlap
(``stt_engine.diarizer.match_labels``), so "S2" stays the voice the meeting called "S2" and the
names given to it during the meeting stay.

The pass (``run_post_session_pass``, in a Celery worker) waits for the live streams to save
their last finals, transcribes every speaker's whole recording with the batch function (beam 5,
word times, silence skipped) and then, in one transaction for all speakers, stores the result as
the current version of each speaker's utterances (``source=archive``; the live and refined rows
stay, superseded). Corrections are never superseded
(``versions.do_apply_version``). A failed pass changes no utterance: the session's
``transcript_state`` becomes ``failed`` with an error code, and ending the session again
(or the admin action) runs it again.

States: ``live`` -> (end) ``refining`` -> ``final`` | ``failed``; ``failed`` or ``final``
-> (end again) ``refining``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from celery.exceptions import SoftTimeLimitExceeded
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from sessions_app.meeting_record.versions import do_apply_version
from sessions_app.models import AudioRecording, TranscriptionSession, Utterance
from stt_engine.batch import BatchAudioError, BatchResult, transcribe_file
from stt_engine.model_files import ModelNotAvailableError

__all__ = [
    "auto_end_if_idle",
    "end_session",
    "notify_transcript_state",
    "run_post_session_pass",
    "schedule_auto_end",
]

logger = logging.getLogger(__name__)

State = TranscriptionSession.TranscriptState
PROGRESS_WRITE_INTERVAL_S = 1.0
STREAM_POLL_S = 0.5
_WAV_HEADER_BYTES = 44


class SessionDeletedError(Exception):
    """The session row disappeared while its pass was running."""


def _group(session_id) -> str:
    return f"session-{session_id}"


def _group_send(session_id, message: dict[str, Any]) -> None:
    # A channel layer that is down (Redis restarting) must not break an end or a pass.
    try:
        async_to_sync(get_channel_layer().group_send)(_group(session_id), message)
    except Exception:
        logger.warning("could not notify session %s of %s", session_id, message.get("type"), exc_info=True)


def notify_transcript_state(session_id, state: str, progress: int) -> None:
    """Tell the session's pages where its transcript stands (reaches them through Redis only)."""
    _group_send(
        session_id,
        {
            "type": "caption.event",
            "message": {
                "type": "stt_transcript_state",
                "session_id": str(session_id),
                "state": state,
                "progress": progress,
            },
        },
    )


def end_session(session: TranscriptionSession, by_user=None, *, force: bool = False) -> TranscriptionSession:
    """End a session (its streams stop) and queue the post-session pass.

    Args:
        session: the session; the caller has checked the right to end it.
        by_user: who ended it (``None``: it ended by itself); logged.
        force: queue the pass even while one is recorded as running (an admin's re-run of a
            pass whose worker died).

    Returns:
        The session as saved. Ending a session already ended whose pass failed or finished
        queues the pass again; while a pass is running it changes nothing (unless ``force``).
    """
    with transaction.atomic():
        locked = TranscriptionSession.objects.select_for_update().get(pk=session.pk)
        was_active = locked.is_active
        if not was_active and locked.transcript_state == State.REFINING and not force:
            return locked
        if was_active:
            locked.status = TranscriptionSession.Status.CLOSED
            locked.ended_at = timezone.now()
        locked.transcript_state = State.REFINING
        locked.refine_progress = 0
        locked.refine_error_code = ""
        locked.refine_error = ""
        locked.save(
            update_fields=["status", "ended_at", "transcript_state", "refine_progress", "refine_error_code",
                           "refine_error"]
        )  # fmt: skip
        session_id = locked.pk
        if was_active:
            transaction.on_commit(lambda: _group_send(session_id, {"type": "session.ended"}))
        transaction.on_commit(lambda: notify_transcript_state(session_id, State.REFINING, 0))
        transaction.on_commit(lambda: _queue_pass(session_id))
    logger.info("session %s ended by %s; post-session pass queued", session_id, by_user or "itself")
    return locked


def _queue_pass(session_id) -> None:
    from sessions_app.tasks import post_session_pass

    post_session_pass.apply_async(args=[str(session_id)], queue=settings.BATCH_QUEUE)


def schedule_auto_end(session_id) -> None:
    """Check in ``STT_SESSION_AUTO_END_S`` whether the session should end by itself (0: never)."""
    delay = settings.STT_SESSION_AUTO_END_S
    if not delay:
        return
    from sessions_app.tasks import auto_end_session

    auto_end_session.apply_async(args=[str(session_id)], countdown=delay, queue=settings.BATCH_QUEUE)


def auto_end_if_idle(session_id, now: dt.datetime | None = None) -> bool:
    """End the session if it is still active and no stream ran for ``STT_SESSION_AUTO_END_S``.

    Each stream that finishes schedules one such check, so only the check after the last
    stream finds the session quiet long enough. Returns whether it ended the session.
    """
    delay = settings.STT_SESSION_AUTO_END_S
    if not delay:
        return False
    now = now or timezone.now()
    with transaction.atomic():  # (the row is locked: the check and the end see the same streams_open)
        session = TranscriptionSession.objects.select_for_update().filter(pk=session_id).first()
        if (
            session is None
            or not session.is_active
            or session.streams_open > 0
            or session.last_stream_at is None
            or now - session.last_stream_at < dt.timedelta(seconds=delay)
        ):
            return False
        end_session(session, None)
    return True


def _live_labels(session_id, speaker_id: int) -> list[tuple[float, float, str]]:
    """The speaker's current labelled lines, ``(start, end, label)`` on the recording clock."""
    rows = (
        Utterance.objects.filter(session_id=session_id, speaker_id=speaker_id, superseded_by__isnull=True)
        .exclude(speaker_label="")
        .order_by("start_s")
        .values_list("start_s", "end_s", "speaker_label")
    )
    return [(float(start), float(end), label) for start, end, label in rows]


def _spoke_live(session_id, speaker_id: int) -> bool:
    return Utterance.objects.filter(session_id=session_id, speaker_id=speaker_id).exists()


def _keep_live_labels(segments: list[dict[str, Any]], live: list[tuple[float, float, str]]) -> list[dict[str, Any]]:
    """The pass's labels renamed to the live labels of the same voices (new voices get fresh labels)."""
    found = [(float(s["start"]), float(s["end"]), s["speaker_label"]) for s in segments if s.get("speaker_label")]
    if not live or not found:
        return segments
    from stt_engine.diarizer import match_labels  # (the voice encoder's torch: only diarized sessions load it)

    mapping = match_labels(live, found)
    return [
        {**s, "speaker_label": mapping.get(s["speaker_label"], s["speaker_label"])} if s.get("speaker_label") else s
        for s in segments
    ]


@dataclass
class _SpeakerAudio:
    speaker_id: int
    path: Path
    duration_s: float


def _recordings(session_id) -> list[_SpeakerAudio]:
    """Each speaker's recording that holds audio (an empty file has nothing to transcribe)."""
    found = []
    for recording in AudioRecording.objects.filter(session_id=session_id).order_by("speaker_id"):
        if not recording.file:
            continue
        path = Path(recording.file.path)
        if not path.exists():
            raise BatchAudioError(f"The recording of speaker {recording.speaker_id} is missing from storage.")
        data_bytes = path.stat().st_size - _WAV_HEADER_BYTES
        if data_bytes <= 0:
            continue
        found.append(_SpeakerAudio(recording.speaker_id, path, data_bytes / 2 / 16000))
    return found


class _Progress:
    """Writes the pass's progress over all speakers (weighted by duration), at most once a second."""

    def __init__(self, session_id, total_s: float) -> None:
        self.session_id = session_id
        self.total_s = max(total_s, 1e-6)
        self.done_s = 0.0
        self.last_write = 0.0
        self.last_percent = 0

    def speaker(self, duration_s: float) -> Callable[[float], None]:
        before = self.done_s
        self.done_s += duration_s

        def report(fraction: float) -> None:
            self.write((before + fraction * duration_s) / self.total_s)

        return report

    def write(self, fraction: float) -> None:
        percent = max(0, min(99, int(fraction * 100)))  # 100 only once the transcript is stored
        now = time.monotonic()
        if percent <= self.last_percent or now - self.last_write < PROGRESS_WRITE_INTERVAL_S:
            return
        updated = TranscriptionSession.objects.filter(pk=self.session_id).update(refine_progress=percent)
        if not updated:
            raise SessionDeletedError(self.session_id)
        self.last_write, self.last_percent = now, percent
        notify_transcript_state(self.session_id, State.REFINING, percent)


def _wait_for_streams(session_id) -> None:
    """Give the live streams time to save their last finals (the consumers keep ``streams_open``).

    After ``STT_END_WAIT_S`` the pass goes on anyway: a server that died never counts its
    streams out.
    """
    deadline = time.monotonic() + settings.STT_END_WAIT_S
    while True:
        open_now = TranscriptionSession.objects.filter(pk=session_id).values_list("streams_open", flat=True).first()
        if open_now is None:
            raise SessionDeletedError(session_id)
        if open_now == 0:
            return
        if time.monotonic() >= deadline:
            logger.warning("session %s: %d stream(s) still open after %d s", session_id, open_now,
                           settings.STT_END_WAIT_S)  # fmt: skip
            return
        time.sleep(STREAM_POLL_S)


def _segments(result: BatchResult, model_name: str) -> list[dict[str, Any]]:
    """Batch segments in the shape ``do_apply_version`` takes (words as an utterance stores them)."""
    segments = []
    for segment in result.segments:
        words = [{"word": w.word, "start": w.start, "end": w.end, "probability": w.probability} for w in segment.words]
        confidence = round(sum(w["probability"] for w in words) / len(words), 4) if words else None
        segments.append(
            {
                "text": segment.text,
                "start": segment.start,
                "end": segment.end,
                "words": words,
                "language": result.language,
                "confidence": confidence,
                "model": model_name,
                "speaker_label": getattr(segment, "speaker_label", ""),
            }
        )
    return segments


def _add_rows(session_id, speaker_id: int, segments: list[dict[str, Any]], recorded_from: dt.datetime) -> None:
    """A speaker with audio but no utterance at all (their live engine never came): add the rows."""
    last = Utterance.objects.filter(session_id=session_id).aggregate(last=Max("sequence"))["last"] or 0
    for offset, segment in enumerate(segments, start=1):
        start = round(float(segment["start"]), 3)
        Utterance.objects.create(
            session_id=session_id,
            speaker_id=speaker_id,
            sequence=last + offset,
            start_s=start,
            end_s=max(round(float(segment["end"]), 3), start),
            text=segment["text"].strip(),
            words=segment["words"],
            language=segment["language"] or "",
            confidence=segment["confidence"],
            model_name=segment["model"],
            source=Utterance.Source.ARCHIVE,
            speaker_label=segment.get("speaker_label") or "",
            spoken_at=recorded_from + dt.timedelta(seconds=start),
        )


def _store(session_id, versions: dict[int, list[dict[str, Any]]]) -> None:
    """Every speaker's archival version, and the state ``final``, in one transaction."""
    with transaction.atomic():
        session = TranscriptionSession.objects.select_for_update().filter(pk=session_id).first()
        if session is None:
            raise SessionDeletedError(session_id)
        for speaker_id, segments in versions.items():
            if not segments:
                continue  # no speech found: the live utterances stay
            rows = Utterance.objects.filter(session_id=session_id, speaker_id=speaker_id)
            if not rows.exists():
                recording = AudioRecording.objects.get(session_id=session_id, speaker_id=speaker_id)
                _add_rows(session_id, speaker_id, segments, recording.created_at)
                continue
            current = list(rows.filter(superseded_by__isnull=True).values_list("pk", flat=True))
            do_apply_version(session_id, speaker_id, current, segments, Utterance.Source.ARCHIVE)
        TranscriptionSession.objects.filter(pk=session_id).update(
            transcript_state=State.FINAL, refine_progress=100, refined_at=timezone.now(),
            refine_error_code="", refine_error="",
        )  # fmt: skip
        transaction.on_commit(lambda: notify_transcript_state(session_id, State.FINAL, 100))


def _fail(session_id, code: str, message: str) -> None:
    fail_pass(session_id, code, message)


def fail_pass(session_id, code: str, message: str, *, only_if_code: str | None = None) -> bool:
    """Record the session's pass as failed with ``code`` and tell its pages; returns whether it did.

    With ``only_if_code``, only a pass still ``refining`` with that ``refine_error_code``
    (``lost_work``: a rerun whose worker was lost too).
    """
    rows = TranscriptionSession.objects.filter(pk=session_id)
    if only_if_code is not None:
        rows = rows.filter(transcript_state=State.REFINING, refine_error_code=only_if_code)
    if not rows.update(transcript_state=State.FAILED, refine_error_code=code, refine_error=message[:2000]):
        return False
    progress = TranscriptionSession.objects.filter(pk=session_id).values_list("refine_progress", flat=True).first()
    notify_transcript_state(session_id, State.FAILED, progress or 0)
    return True


def run_post_session_pass(
    session_id,
    *,
    transcribe: Callable[..., BatchResult] | None = None,
    model_loader: Callable[[str], Any] | None = None,
    recovered: bool = False,
) -> str:
    """Transcribe every speaker's recording of an ended session and store it as the transcript.

    Args:
        session_id: the session (its state is ``refining``; any other state means the message
            is stale, e.g. redelivered after the pass finished, and nothing is done).
        transcribe: the batch function (default ``stt_engine.batch.transcribe_file``).
        model_loader: returns a loaded model for a name (the worker's cached one).
        recovered: queued again because its worker seemed lost (``sessions_app.lost_work``):
            while it runs its ``refine_error_code`` says ``WORKER_LOST``, so that a second loss
            fails it instead of queueing it again.

    Returns:
        The state it left the session in (``final`` or ``failed``), or ``"deleted"`` /
        ``"skipped"``.
    """
    session = TranscriptionSession.objects.filter(pk=session_id).first()
    if session is None:
        return "deleted"
    if session.transcript_state != State.REFINING:
        return "skipped"
    if recovered:
        from sessions_app.lost_work import RERUN_MESSAGE, WORKER_LOST

        TranscriptionSession.objects.filter(pk=session_id, transcript_state=State.REFINING).update(
            refine_error_code=WORKER_LOST, refine_error=RERUN_MESSAGE
        )
    transcribe = transcribe or transcribe_file
    model_name = settings.STT_FINAL_MODEL
    try:
        _wait_for_streams(session_id)
        recordings = _recordings(session_id)
        progress = _Progress(session_id, sum(r.duration_s for r in recordings))
        model = model_loader(model_name) if model_loader is not None and recordings else None
        versions: dict[int, list[dict[str, Any]]] = {}
        for recording in recordings:
            live_labels = _live_labels(session_id, recording.speaker_id)
            diarize = bool(live_labels) or (
                session.room_microphone and not _spoke_live(session_id, recording.speaker_id)
            )
            result = transcribe(
                recording.path,
                model_path_or_name=model_name,
                language=session.language or "auto",
                device=settings.STT_DEVICE,
                compute_type=settings.STT_COMPUTE_TYPE,
                cpu_threads=settings.STT_BATCH_CPU_THREADS,
                beam_size=settings.STT_ARCHIVE_BEAM_SIZE,
                progress=progress.speaker(recording.duration_s),
                model=model,
                diarize=diarize,
            )
            versions[recording.speaker_id] = _keep_live_labels(_segments(result, model_name), live_labels)
        _store(session_id, versions)
    except SessionDeletedError:
        logger.info("session %s was deleted during its post-session pass", session_id)
        return "deleted"
    except BatchAudioError as exc:
        _fail(session_id, exc.code, exc.message)
        return State.FAILED
    except ModelNotAvailableError as exc:
        _fail(session_id, "MODEL_UNAVAILABLE", str(exc))
        return State.FAILED
    except SoftTimeLimitExceeded:
        _fail(session_id, "TIME_LIMIT", f"The pass took longer than {settings.CELERY_TASK_SOFT_TIME_LIMIT} s.")
        return State.FAILED
    except Exception as exc:
        logger.exception("post-session pass of session %s failed", session_id)
        with contextlib.suppress(Exception):
            _fail(session_id, "ENGINE_ERROR", f"The post-session pass failed: {exc}")
        return State.FAILED
    return State.FINAL
