"""The decode load shared by engine processes: optional work yields to other streams' decodes."""

from __future__ import annotations

from stt_engine import SharedDecodeLoad


def test_optional_work_fits_beside_decodes_in_progress_only():
    load = SharedDecodeLoad(capacity=2)
    other = load.claim()
    with other.decoding(threads=1):
        assert load.has_room(1) and not load.has_room(2)
    assert load.has_room(2) and load.threads_in_use == 0


def test_other_streams_count_as_busy_while_and_shortly_after_they_decode():
    load = SharedDecodeLoad(capacity=2)
    other = load.claim()
    assert not load.others_busy(within_s=2.0)
    with other.decoding(threads=1):
        assert load.others_busy(within_s=0.0)
        assert not other.others_busy(within_s=2.0)  # its own decode is not another stream's
    assert load.others_busy(within_s=2.0)
    assert not load.others_busy(within_s=0.0)
    other.release()
    assert not load.others_busy(within_s=2.0)
