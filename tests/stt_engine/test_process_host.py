"""The engine child process and the warm pool: streaming through pipes, crash reporting."""

from __future__ import annotations

import os
import select
import signal
import time

import pytest

from stt_engine import AudioFormatError, EngineConfig, EngineCrashedError, EnginePool, EngineProcess, events
from tests.speech import Clip, dev_clip, word_error_rate

from .streaming import read_pcm

CHILD_CONFIG = EngineConfig(cpu_threads=1)


def _collect(proc: EngineProcess, until: type[events.Event], state: str | None = None,
             timeout: float = 60.0) -> list[events.Event]:
    """Poll until an event of type ``until`` (with ``state``, for StateChanged) arrives."""
    got: list[events.Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += proc.poll_events(timeout=0.2)
        if any(isinstance(e, until) and (state is None or getattr(e, "state", None) == state) for e in got):
            return got
    raise AssertionError(f"no {until.__name__} within {timeout} s: {got}")


def _stream_clip_and_stop(
    proc: EngineProcess, name: str = "ls_dev-clean_2412-153948-0002", overrides: dict | None = None
) -> Clip:
    """Start a stream, send a dev clip in 30 ms frames as fast as possible, then stop."""
    clip = dev_clip(name)
    proc.start_stream(sample_rate=16000, language="en", overrides=overrides)
    pcm = read_pcm(clip.path)
    for i in range(0, len(pcm), 960):
        proc.send_audio(pcm[i : i + 960].tobytes())
    proc.stop()
    return clip


@pytest.fixture(scope="module")
def pool():
    # A released child answers its reset after the decode it is doing (a stopped stream's last
    # final and refinement): ample time, so that a busy machine does not make it a new process.
    with EnginePool(CHILD_CONFIG, size=1, reset_timeout=120.0) as pool:
        yield pool


def test_a_pooled_process_streams_a_clip_to_a_final_and_the_pool_refills(pool):
    proc = pool.acquire(timeout=120)
    try:
        assert proc.ready and proc.is_alive()
        clip = _stream_clip_and_stop(proc)
        evs = _collect(proc, events.StateChanged, state="idle")
        finals = [e for e in evs if isinstance(e, events.Final)]
        assert finals and word_error_rate([clip.text], [" ".join(f.text for f in finals)]) <= 0.2
        assert isinstance(evs[0], events.StateChanged) and evs[0].state == "listening"
    finally:
        proc.close()
    assert not proc.is_alive()
    deadline = time.monotonic() + 120
    while pool.warm_count < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pool.warm_count == 1


def test_the_pool_sees_its_children_decoding_through_the_shared_load(pool):
    """The children count their decodes in the pool's SharedDecodeLoad (so one stream's
    partials can yield to another's final); the parent reads the same counter."""
    proc = pool.acquire(timeout=120)
    try:
        assert pool.load.threads_in_use == 0
        _stream_clip_and_stop(proc)
        seen: set[int] = set()
        evs: list[events.Event] = []
        deadline = time.monotonic() + 60
        while not any(isinstance(e, events.StateChanged) and e.state == "idle" for e in evs):
            assert time.monotonic() < deadline, evs
            seen.add(pool.load.threads_in_use)
            evs += proc.poll_events(timeout=0.005)
        assert [e for e in evs if isinstance(e, events.Final)]
        assert CHILD_CONFIG.cpu_threads in seen, seen  # the final decode, counted from the child
        assert pool.load.threads_in_use == 0
    finally:
        proc.close()


def test_a_child_killed_while_decoding_gives_its_threads_back(pool):
    proc = pool.acquire(timeout=120)
    try:
        _stream_clip_and_stop(proc)
        deadline = time.monotonic() + 60
        while pool.load.threads_in_use == 0:
            assert time.monotonic() < deadline, "the child never decoded"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        while proc.is_alive():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert pool.load.threads_in_use > 0  # the dead child's decode still counts...
    finally:
        proc.close()
    assert pool.load.threads_in_use == 0  # ...until its process is closed


def test_replacements_load_one_at_a_time():
    """Speakers who start together must not have every replacement loading models at once
    (that starves their live streams)."""
    with EnginePool(CHILD_CONFIG, size=2) as pool:
        deadline = time.monotonic() + 180
        while pool.warm_count < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        taken = [pool.acquire(timeout=10), pool.acquire(timeout=10)]
        for proc in taken:  # both die: the pool must load two again
            os.kill(proc.pid, signal.SIGKILL)
            while proc.is_alive():
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert not pool.release(proc)
        most_loading = 0
        while pool.warm_count < 2:
            assert time.monotonic() < deadline
            most_loading = max(most_loading, pool.loading_count)
            time.sleep(0.02)
        assert most_loading == 1
        assert pool.retired == 2


def test_a_released_process_serves_the_next_stream_with_nothing_of_the_previous_one(pool):
    """The engine of a finished stream is reset and handed to the next stream: no model load, and
    no event, text or state of the previous speaker reaches the new stream, even when its last
    final was still being decoded (and never read) when it was released."""
    first = pool.acquire(timeout=120)
    loads = pool.loads
    _stream_clip_and_stop(first, "jfk")  # its events are never read
    pool.returning(first)
    assert pool.release(first)
    assert first.pid in pool.warm_pids
    second = pool.acquire(timeout=120)
    try:
        assert second is first and pool.loads == loads  # the same process: no model load
        clip = _stream_clip_and_stop(second, "ls_dev-clean_2412-153948-0002")
        evs = _collect(second, events.StateChanged, state="idle")
        assert isinstance(evs[0], events.StateChanged) and evs[0].state == "listening", evs[:3]
        assert [e.state for e in evs if isinstance(e, events.StateChanged)][-1] == "idle"
        assert sum(isinstance(e, events.StateChanged) and e.state == "idle" for e in evs) == 1
        texts = [e.text for e in evs if isinstance(e, events.Final | events.PartialUpdate | events.Stabilized)]
        assert not {"americans", "fellow", "country"} & {w.strip(".,!?").lower() for t in texts for w in t.split()}
        finals = [e for e in evs if isinstance(e, events.Final)]
        assert word_error_rate([clip.text], [" ".join(f.text for f in finals)]) <= 0.2
        assert finals[0].start < 1.0  # the new stream's clock starts at 0, not where the old one ended
    finally:
        pool.release(second)


def test_a_stream_may_set_how_its_utterances_are_cut_and_the_next_stream_has_the_servers_again(pool):
    clip = dev_clip("jfk")  # pauses of about a second between its phrases
    pcm = read_pcm(clip.path)
    proc = pool.acquire(timeout=120)
    try:
        with pytest.raises(ValueError, match="beam_size"):
            proc.start_stream(overrides={"beam_size": 1})  # not a per-stream setting
        with pytest.raises(ValueError, match="post_speech_silence_s"):
            proc.start_stream(overrides={"post_speech_silence_s": 50.0})
        finals = []
        for overrides in ({"post_speech_silence_s": 3.0}, None):
            proc.start_stream(sample_rate=16000, language="en", overrides=overrides)
            for i in range(0, len(pcm), 960):
                proc.send_audio(pcm[i : i + 960].tobytes())
            proc.stop()
            evs = _collect(proc, events.StateChanged, state="idle")
            finals.append([e for e in evs if isinstance(e, events.Final)])
        long_silence, server_default = finals
        assert len(long_silence) == 1 < len(server_default)
        for stream in finals:
            assert word_error_rate([clip.text], [" ".join(f.text for f in stream)]) <= 0.2
    finally:
        pool.release(proc)


def test_a_process_is_replaced_after_its_streams_and_a_returning_one_counts_as_a_spare():
    with EnginePool(CHILD_CONFIG, size=1, max_streams=1) as pool:
        proc = pool.acquire(timeout=180)
        deadline = time.monotonic() + 180
        while pool.warm_count < 1:  # a spare beside the live stream
            assert time.monotonic() < deadline
            time.sleep(0.1)
        proc.start_stream(sample_rate=16000, language="en")
        proc.stop()
        pool.returning(proc)
        spare = pool.acquire(timeout=10)
        time.sleep(0.5)
        assert pool.loads == 2 and pool.loading_count == 0  # the returning one will be the spare...
        assert not pool.release(proc)  # ...but it has served its one stream: closed, and replaced
        assert not proc.is_alive() and pool.retired == 1
        while pool.warm_count < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert pool.loads == 3
        assert pool.release(spare)  # it never streamed: reset and kept
        assert spare.pid in pool.warm_pids


def test_the_first_child_measures_the_threads_and_later_children_are_given_them():
    with EnginePool(EngineConfig(cpu_threads=0), size=2) as pool:
        deadline = time.monotonic() + 180
        while pool.warm_count < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        measured = pool.config.cpu_threads
        assert measured in (1, 2)
        taken = [pool.acquire(timeout=10), pool.acquire(timeout=10)]
        try:
            assert [proc.final_threads for proc in taken] == [measured, measured]
            assert sorted(proc.config.cpu_threads for proc in taken) == [0, measured]  # the second was told
        finally:
            for proc in taken:
                proc.close()


def test_bad_audio_is_refused_in_the_caller_and_in_the_child(pool):
    proc = pool.acquire(timeout=120)
    try:
        with pytest.raises(AudioFormatError):
            proc.send_audio(b"\x00")
        with pytest.raises(AudioFormatError):
            proc.start_stream(sample_rate=1000)
        proc.send_audio(b"\x00\x00")  # before stt_start: the child answers NOT_STARTED
        errors = _collect(proc, events.EngineError)
        assert [e.code for e in errors if isinstance(e, events.EngineError)] == ["NOT_STARTED"]
    finally:
        proc.close()


def test_a_killed_child_is_reported_as_engine_crashed():
    proc = EngineProcess(CHILD_CONFIG)
    try:
        assert proc.wait_ready(timeout=120)
        proc.start_stream(sample_rate=16000, language="en")
        proc.send_audio(b"\x00\x00" * 1600)
        _collect(proc, events.StateChanged)
        os.kill(proc.pid, signal.SIGKILL)
        readable, _, _ = select.select([proc.fileno()], [], [], 10)
        assert readable, "the event fd did not wake up when the child died"
        with pytest.raises(EngineCrashedError) as info:
            for _ in range(50):
                proc.poll_events(timeout=0.1)
        assert info.value.code == "ENGINE_CRASHED"
        assert not proc.is_alive()
        with pytest.raises(EngineCrashedError):
            proc.send_audio(b"\x00\x00")
    finally:
        proc.close()


def test_a_stream_may_ask_for_diarization_and_the_next_stream_is_not_diarized(pool):
    proc = pool.acquire(timeout=120)
    try:
        with pytest.raises(ValueError, match="diarize"):
            proc.start_stream(overrides={"diarize": "yes"})  # a bool, not a string
        labels = []
        for overrides in ({"diarize": True}, None):
            _stream_clip_and_stop(proc, overrides=overrides)
            evs = _collect(proc, events.StateChanged, state="idle")
            labels.append({e.speaker_label for e in evs if isinstance(e, events.Final)})
        assert labels == [{"S1"}, {""}]
    finally:
        pool.release(proc)
