"""Each speaker's audio on disk, as one WAV file per session that every stream appends to.

:func:`recording_size` says how long a recording is and how many bytes it has, read from the
file itself (a recording being written has grown since its row was last updated).

The WAV header is rewritten about once a second, so the file on disk is always a playable
WAV with everything received so far, even if the server dies in the middle of a stream.
Audio is stored at 16 kHz whatever rate the client sends (the streams of one speaker may
differ), resampled with soxr.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from django.core.files.storage import default_storage

from sessions_app.models import AudioRecording

RECORDING_RATE = 16000
_HEADER_BYTES = 44
_HEADER_EVERY_S = 1.0


def _wav_header(data_bytes: int, rate: int = RECORDING_RATE) -> bytes:
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data" + struct.pack("<I", data_bytes)
    )  # fmt: skip


class WavAppender:
    """Appends PCM16 mono audio to a 16 kHz WAV file, keeping its header valid."""

    def __init__(self, path: Path, input_rate: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.stat().st_size < _HEADER_BYTES:
            path.write_bytes(_wav_header(0))
        self.path = path
        self._file = path.open("r+b")
        self._file.seek(0, 2)
        self._data_bytes = self._file.tell() - _HEADER_BYTES
        self._resampler = (
            None if input_rate == RECORDING_RATE else soxr.ResampleStream(input_rate, RECORDING_RATE, 1, dtype="int16")
        )
        self._header_written_at = time.monotonic()
        self.start_offset_s = self.duration_s

    @property
    def duration_s(self) -> float:
        return self._data_bytes / 2 / RECORDING_RATE

    @property
    def size_bytes(self) -> int:
        return self._data_bytes + _HEADER_BYTES

    def append(self, pcm: bytes) -> None:
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(np.frombuffer(pcm, dtype="<i2"))
            pcm = samples.astype("<i2").tobytes()
        self._file.write(pcm)
        self._data_bytes += len(pcm)
        self._file.flush()
        if time.monotonic() - self._header_written_at >= _HEADER_EVERY_S:
            self._write_header()

    def close(self) -> None:
        if self._file.closed:
            return
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype="<i2"), last=True)
            self._file.write(tail.astype("<i2").tobytes())
            self._data_bytes += tail.size * 2
        self._write_header()
        self._file.close()

    def _write_header(self) -> None:
        position = self._file.tell()
        self._file.seek(0)
        self._file.write(_wav_header(self._data_bytes))
        self._file.seek(position)
        self._file.flush()
        self._header_written_at = time.monotonic()


def recording_size(recording: AudioRecording) -> tuple[float, int]:
    """``(duration_s, bytes)`` of the recording's WAV file as it is on disk now (the row's if it is gone)."""
    path = Path(default_storage.path(recording.file.name)) if recording.file else None
    if path is None or not path.exists():
        return recording.duration_s, recording.size_bytes
    size = path.stat().st_size
    return max(size - _HEADER_BYTES, 0) / 2 / RECORDING_RATE, size


def session_recordings(session) -> list[dict[str, Any]]:
    """Each speaker's recording of ``session``, by speaker name: ``id``, ``speaker`` (username),
    ``speaker_id``, ``speaker_name``, ``duration_s``, ``sample_rate`` and ``bytes`` (on disk now)."""
    from sessions_app.speakers import session_speakers

    names = {s.speaker_id: s.name for s in session_speakers(session.pk)}
    rows = []
    for recording in AudioRecording.objects.filter(session=session).select_related("speaker"):
        duration_s, size = recording_size(recording)
        username = recording.speaker.get_username()
        rows.append({
            "id": recording.pk, "speaker": username, "speaker_id": recording.speaker_id,
            "speaker_name": names.get(recording.speaker_id, username), "duration_s": round(duration_s, 3),
            "sample_rate": recording.sample_rate, "bytes": size,
        })  # fmt: skip
    return sorted(rows, key=lambda row: (row["speaker_name"].casefold(), row["speaker_id"]))


def open_recording(session_id, speaker_id: int, input_rate: int) -> tuple[AudioRecording, WavAppender]:
    """The speaker's recording row for this session (created if new) and an appender to its file."""
    recording, created = AudioRecording.objects.get_or_create(
        session_id=session_id, speaker_id=speaker_id, defaults={"sample_rate": RECORDING_RATE}
    )
    if created or not recording.file:
        recording.file.name = f"recordings/{session_id}/speaker-{speaker_id}.wav"
        recording.save(update_fields=["file"])
    appender = WavAppender(Path(default_storage.path(recording.file.name)), input_rate)
    return recording, appender


def close_recording(recording: AudioRecording, appender: WavAppender) -> None:
    appender.close()
    AudioRecording.objects.filter(pk=recording.pk).update(
        duration_s=appender.duration_s, size_bytes=appender.size_bytes
    )
