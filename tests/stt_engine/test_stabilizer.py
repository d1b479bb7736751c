"""Local agreement and the repetition guard."""

from __future__ import annotations

from stt_engine.recognizer import trailing_repetition, trim_repetitions
from stt_engine.stabilizer import Stabilizer


def test_words_two_hypotheses_agree_on_become_stable_except_the_newest():
    s = Stabilizer()
    assert s.update("and so my fella") == ("and so my fella", False)
    display, grew = s.update("And so, my fellow Americans")
    assert grew and s.text == "And so, my"
    assert display == "And so, my fellow Americans"


def test_stable_text_never_shrinks_when_a_later_hypothesis_disagrees():
    s = Stabilizer()
    s.update("the cat sat on")
    s.update("the cat sat on the")
    assert s.text == "the cat sat on"
    display, grew = s.update("a hat sat on a mat")
    assert not grew and s.text == "the cat sat on"
    assert display.startswith("the cat sat on")


def test_reset_starts_a_new_utterance():
    s = Stabilizer()
    s.update("one two three")
    s.update("one two three four")
    s.reset()
    assert s.text == ""


def test_repetitions_are_cut_after_their_first_occurrence():
    assert trim_repetitions("and so my fellow American. And so my fellow American. And") == (
        "and so my fellow American."
    )
    assert trim_repetitions("f f f f f f") == "f"
    assert trim_repetitions("very very good") == "very very good"
    assert trim_repetitions("ask what you can do for your country") == "ask what you can do for your country"


def test_a_final_that_repeats_itself_to_the_end_is_cut_after_the_first_copy():
    def words(text: str) -> list[str]:
        return text.split()

    assert trailing_repetition(words("The two stray kittens gradually make themselves at home. The two stray")) == 9
    assert trailing_repetition(words("ask not what your country can do for you")) is None
    assert trailing_repetition(words("I think I think we should go")) is None
