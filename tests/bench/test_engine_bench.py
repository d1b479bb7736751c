"""The engine benchmark: its summary keys on a real clip, and the interval it puts on the WER gap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.engine_bench import SR, _speech_bounds, main, paired_bootstrap_ci
from tests.speech import dev_clip


def test_a_piece_that_is_speech_throughout_is_speech_from_its_first_frame_to_its_last() -> None:
    # Cut from the middle of a monologue: no frame is 10 dB above the quietest, no noise floor.
    rng = np.random.default_rng(0)
    speech = (3000 * rng.standard_normal(int(1.8 * SR)) * (1 + 0.3 * np.sin(np.arange(int(1.8 * SR)) / 800))).astype(
        np.int16
    )
    assert _speech_bounds(speech) == (0.0, 1.8)
    padded = np.concatenate([np.zeros(SR // 2, np.int16), speech, np.zeros(SR // 2, np.int16)])
    assert _speech_bounds(padded) == (0.5, 2.3)


def test_the_gap_interval_is_zero_when_both_systems_make_the_same_errors() -> None:
    assert paired_bootstrap_ci([3, 0, 5], [3, 0, 5], [20, 10, 40]) == (0.0, 0.0)


def test_the_gap_interval_excludes_zero_when_one_system_is_worse_on_every_clip() -> None:
    words = [20] * 30
    low, high = paired_bootstrap_ci([3] * 30, [1] * 30, words)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)
    low, high = paired_bootstrap_ci([2, 3, 4] * 10, [1] * 30, words)
    assert 0.0 < low < 0.1 < high


def test_the_gap_interval_holds_zero_when_the_systems_trade_errors() -> None:
    low, high = paired_bootstrap_ci([4, 0] * 15, [0, 4] * 15, [20] * 30)
    assert low < 0.0 < high


def test_the_gap_interval_needs_one_count_per_clip() -> None:
    with pytest.raises(ValueError, match="one error count per clip"):
        paired_bootstrap_ci([1, 2], [1], [10, 10])


@pytest.fixture
def one_clip_manifest(tmp_path: Path) -> Path:
    """A folder laid out like the dev set, holding one short clip."""
    clip = dev_clip("librivox_sense_and_sensibility_01_0880")
    shutil.copy(clip.path, tmp_path / clip.path.name)
    row = {"audio": clip.path.name, "text": clip.text, "duration_s": clip.duration_s}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    return tmp_path


def test_the_bench_writes_every_summary_key_for_a_real_clip(one_clip_manifest: Path) -> None:
    out = one_clip_manifest / "summary.json"

    main(["--manifest", str(one_clip_manifest), "--json", str(out), "--offline-leads", "0.5"])

    summary = json.loads(out.read_text())
    for key in ("final_wer", "offline_wer", "first_partial_p50", "partial_lag_p50", "final_latency_p50",
                "final_latency_p95", "cpu_s_per_audio_s", "peak_rss_mb", "clips"):
        assert isinstance(summary[key], int | float), key
    assert summary["clips"] == 1
    assert set(summary["offline_wer_by_lead_s"]) == {"0", "0.5"}
    assert summary["offline_wer"] == summary["offline_wer_by_lead_s"]["0"]
    # "he was not an ill disposed young man": base gets it (nearly) right either way.
    assert summary["final_wer"] <= 0.25 and summary["offline_wer"] <= 0.25
    low, high = summary["wer_gap_ci95"]
    assert low <= summary["wer_gap"] <= high


def test_the_bench_runs_without_the_offline_passes(one_clip_manifest: Path) -> None:
    summary = main(["--manifest", str(one_clip_manifest), "--no-offline"])

    assert summary["offline_wer"] is None and summary["wer_gap_ci95"] is None
    assert summary["per_clip"][0]["offline_wer"] is None
    assert summary["final_wer"] <= 0.25
