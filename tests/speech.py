"""The dev speech corpus and word error rate, shared by tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

DEV_DIR = Path(__file__).resolve().parents[2] / "shared" / "audio" / "dev"

_normalizer = EnglishTextNormalizer()


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str
    duration_s: float


def dev_clips(folder: Path = DEV_DIR) -> list[Clip]:
    clips = []
    for line in (folder / "manifest.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            clips.append(Clip(folder / row["audio"], row["text"], float(row["duration_s"])))
    return clips


def dev_clip(name_prefix: str) -> Clip:
    return next(clip for clip in dev_clips() if clip.path.name.startswith(name_prefix))


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Pooled WER after Whisper's English normalization of both sides."""
    refs = [_normalizer(text) for text in references]
    hyps = [_normalizer(text) for text in hypotheses]
    pairs = [(ref, hyp) for ref, hyp in zip(refs, hyps, strict=True) if ref.strip()]
    return jiwer.wer([ref for ref, _ in pairs], [hyp if hyp.strip() else "<empty>" for _, hyp in pairs])


def deleted_words(reference: str, hypothesis: str) -> int:
    """Words of ``reference`` missing from ``hypothesis`` (jiwer's deletions, after normalization)."""
    ref, hyp = _normalizer(reference), _normalizer(hypothesis)
    if not ref.strip():
        return 0
    if not hyp.strip():
        return len(ref.split())
    return jiwer.process_words(ref, hyp).deletions
