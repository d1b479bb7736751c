"""The final decode on its own: a sentence continued after a pause (real model, real speech)."""

from __future__ import annotations

import soundfile as sf
from faster_whisper.transcribe import Segment, Word

from stt_engine.recognizer import Recognizer, _without_prefix, recognized_segments
from tests.speech import dev_clip, word_error_rate

SR = 16000


def _segment(*words: str) -> Segment:
    timed = [Word(start=i * 0.5, end=i * 0.5 + 0.4, word=w, probability=0.9) for i, w in enumerate(words)]
    return Segment(
        id=0,
        seek=0,
        start=0.0,
        end=len(words) * 0.5,
        text="".join(words),
        tokens=[],
        avg_logprob=-0.2,
        compression_ratio=1.2,
        no_speech_prob=0.01,
        words=timed,
        temperature=0.0,
    )


def test_a_final_given_the_previous_words_as_context_returns_only_what_follows(engine_config, engine_models):
    """JFK: "And so, my fellow Americans," (0-2.1 s), then "ask not" (3.3-4.2 s)."""
    audio, _ = sf.read(str(dev_clip("jfk").path), dtype="float32")
    recognizer = Recognizer(engine_config, engine_models)
    result = recognizer.final(audio[: int(4.6 * SR)], "en", context="And so, my fellow Americans,", context_s=2.9)
    assert result.continued
    assert word_error_rate(["ask not"], [result.text]) == 0.0, result.text
    # Times count from the end of the context: "ask" is spoken 0.4 s after it (from the start of
    # the audio it would be 3.3 s). Whisper's alignment may stretch a first word back over the
    # silence before it (-0.14 s on an AMD EPYC, 0.1 s or later on the earlier machines).
    assert -0.4 <= result.words[0].start <= 0.8, result.words
    assert result.words[-1].end <= 1.7 + 0.01, result.words


def test_the_context_words_are_cut_off_the_decode_punctuation_added_to_them_included():
    for decoded in (
        [_segment(" And", " so", " my,"), _segment(" ask", " not.")],
        [_segment(" And", " so", " my", ","), _segment(" ask", " not.")],
    ):
        rest = _without_prefix(decoded, "And so my")
        assert [w.word for s in rest for w in s.words] == [" ask", " not."]
    rest = _without_prefix([_segment(" And", " so", " my", " fellow")], "And so my")
    assert [w.word for w in rest[0].words] == [" fellow"] and rest[0].text == " fellow"


def test_a_decode_whose_words_do_not_begin_with_the_context_is_not_cut():
    assert _without_prefix([_segment(" And", " so", " my")], "Ask not") is None
    assert _without_prefix([_segment(" And", " so")], "And so my fellow") is None


def test_a_segment_of_punctuation_alone_ends_the_one_before_it():
    """Whisper sometimes closes a sentence with a segment that is only "." (seen on a refined turn)."""
    pieces = recognized_segments(
        [_segment(" is", " to", " be", " ill-disposed"), _segment("."), _segment(" Yes.")], 0.5
    )
    assert [p.text for p in pieces] == ["is to be ill-disposed.", "Yes."]
    assert [w.word for w in pieces[0].words] == [" is", " to", " be", " ill-disposed"]
    assert pieces[0].words[0].start == -0.5  # on the clock after the context
    assert recognized_segments([_segment("."), _segment(" Yes.")])[0].text == "Yes."
