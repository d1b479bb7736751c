"""Local agreement: the words consecutive partial hypotheses agree on become stable."""

from __future__ import annotations

import re

__all__ = ["Stabilizer"]

_WORD_CHARS = re.compile(r"[^\w']+")


def _key(word: str) -> str:
    return _WORD_CHARS.sub("", word.lower())


class Stabilizer:
    """Tracks the stabilized prefix of one utterance.

    Each hypothesis is compared word by word with the previous one; the common prefix
    (case and punctuation ignored) is the agreement. The stabilized text only ever grows:
    it is extended by agreed words beyond what is already stable, and never shrinks or
    changes even when a later hypothesis disagrees with it.
    """

    def __init__(self, holdback_words: int = 1) -> None:
        """Args:
        holdback_words: newest words of a hypothesis never stabilized (the audio may end
            inside them).
        """
        self.holdback_words = holdback_words
        self._stable: list[str] = []
        self._previous: list[str] = []

    @property
    def text(self) -> str:
        """The stabilized text so far."""
        return " ".join(self._stable)

    def reset(self) -> None:
        """Forget everything (a new utterance begins)."""
        self._stable = []
        self._previous = []

    def update(self, hypothesis: str) -> tuple[str, bool]:
        """Add a hypothesis.

        Args:
            hypothesis: the latest partial text of the whole utterance.

        Returns:
            ``(display_text, grew)``: the stable words followed by the hypothesis's words
            after them, and whether the stabilized text grew.
        """
        words = hypothesis.split()
        tail = self._tail_after_stable(words)
        grew = False
        if self._previous:
            previous_tail = self._tail_after_stable(self._previous)
            limit = max(0, len(tail) - self.holdback_words)
            agreed = 0
            for a, b in zip(tail[:limit], previous_tail, strict=False):
                if _key(a) != _key(b) or not _key(a):
                    break
                agreed += 1
            if agreed:
                self._stable.extend(tail[:agreed])
                tail = tail[agreed:]
                grew = True
        self._previous = words
        return " ".join(self._stable + tail), grew

    def _tail_after_stable(self, words: list[str]) -> list[str]:
        """The words of ``words`` after the part that matches the stable prefix.

        When the hypothesis matches the stable words, the rest follows them. When it does
        not, the best alignment of the stable prefix's last word is used; failing that, the
        first ``len(stable)`` words are skipped.
        """
        n = len(self._stable)
        if n == 0:
            return list(words)
        keys = [_key(w) for w in words]
        stable_keys = [_key(w) for w in self._stable]
        if keys[:n] == stable_keys:
            return list(words[n:])
        last = stable_keys[-1]
        candidates = [i for i, k in enumerate(keys) if k == last and abs(i - (n - 1)) <= 3]
        if candidates:
            best = min(candidates, key=lambda i: abs(i - (n - 1)))
            return list(words[best + 1 :])
        return list(words[n:])
