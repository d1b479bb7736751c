from __future__ import annotations

import itertools
import wave

import numpy as np
import pytest

from stt_engine.batch import BatchAudioError, _windows, probe_duration, temperature_fallbacks, transcribe_file
from tests.speech import dev_clip, word_error_rate


def _write_wav(path, samples: np.ndarray, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def test_it_reads_the_duration_of_a_wav_file():
    clip = dev_clip("jfk")
    assert probe_duration(clip.path) == pytest.approx(clip.duration_s, abs=0.1)


def test_an_empty_file_is_reported_as_empty(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(BatchAudioError) as info:
        probe_duration(empty)
    assert info.value.code == "EMPTY_FILE"


def test_a_text_file_is_not_audio(tmp_path):
    text = tmp_path / "notes.mp3"
    text.write_text("these are meeting notes, not audio\n" * 50)
    with pytest.raises(BatchAudioError) as info:
        probe_duration(text)
    assert info.value.code == "NOT_AUDIO"


def test_it_transcribes_a_clip_with_word_timings_and_progress():
    clip = dev_clip("jfk")
    reports: list[float] = []
    result = transcribe_file(clip.path, model_path_or_name="base", progress=reports.append)
    assert result.language == "en"
    assert result.duration_s == pytest.approx(clip.duration_s, abs=0.1)
    assert word_error_rate([clip.text], [" ".join(s.text for s in result.segments)]) < 0.15
    words = [w for s in result.segments for w in s.words]
    assert words and all(0 <= w.start <= w.end <= result.duration_s + 0.5 for w in words)
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    assert reports == sorted(reports) and reports[-1] == 1.0


def test_a_prompt_spells_a_name_as_it_is_written_there():
    clip = dev_clip("librivox_sense_and_sensibility_01_0870")  # "... mister john dashwood had then ..."
    plain = " ".join(s.text for s in transcribe_file(clip.path, language="en").segments)
    prompted = " ".join(s.text for s in transcribe_file(clip.path, language="en", prompt="Glossary: Dashwud.").segments)
    assert "Dashwood" in plain and "Dashwud" not in plain
    assert "Dashwud" in prompted
    assert word_error_rate([clip.text.replace("dashwood", "dashwud")], [prompted]) <= 0.15


def test_the_temperature_is_the_first_attempts_and_hotter_ones_follow():
    assert temperature_fallbacks(0.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # faster-whisper's default
    assert temperature_fallbacks(0.5) == [0.5, 0.7, 0.9]
    assert temperature_fallbacks(1.0) == [1.0]
    with pytest.raises(ValueError):
        temperature_fallbacks(1.5)


def test_silence_gives_no_text(tmp_path):
    path = tmp_path / "silence.wav"
    _write_wav(path, np.random.default_rng(0).normal(0, 0.001, 16000 * 20))
    result = transcribe_file(path, model_path_or_name="tiny.en", language="en")
    assert result.segments == []
    assert result.duration_s == pytest.approx(20.0, abs=0.05)


def test_long_audio_is_cut_into_windows_at_the_quietest_point():
    rate = 16000
    audio = np.full(rate * 150, 0.5, dtype=np.float32)
    audio[rate * 55 : rate * 55 + 1600] = 0.0  # a pause 5 s before the 60 s boundary
    windows = list(_windows(audio, 60.0))
    assert windows[0][0] == 0 and windows[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    assert 55 * rate <= windows[0][1] <= 55 * rate + 1600
    assert all(end - start <= 60 * rate for start, end in windows)


@pytest.mark.parametrize(("suffix", "codec"), [(".flac", "flac"), (".ogg", "libopus"), (".mp3", "libmp3lame")])
def test_compressed_formats_are_probed(tmp_path, suffix, codec):
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"{codec} is not in this PyAV build")
    rate = 16000
    t = np.arange(rate * 3) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / f"tone{suffix}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate={"libmp3lame": 22050, "libopus": 48000}.get(codec, rate))
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=stream.rate)
        for resampled in resampler.resample(frame):
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    assert probe_duration(path) == pytest.approx(3.0, abs=0.2)
