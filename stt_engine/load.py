"""CPU load shared by the engine processes of one server, so that optional work yields.

Each engine process adds the threads of every decode it runs to one shared counter. Partials
and speculative finals are optional work: a session starts one only if its threads fit beside
the decodes in progress on the server without using more threads than there are cores. The
final an utterance waits for always runs. With one stream this changes nothing (its own decodes never overlap); with
more speakers than the cores can serve, the CPU goes to the finals people are waiting for
instead of to partials and to guesses that may be thrown away.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["SharedDecodeLoad"]


class SharedDecodeLoad:
    """A counter of decoding threads in use, shared with spawned engine processes.

    Create it in the parent and pass it to :class:`stt_engine.EngineProcess` (or to a
    :class:`stt_engine.StreamingSession` directly); it pickles into spawned children.

    Example::

        load = SharedDecodeLoad(capacity=2)
        with load.decoding(threads=1):
            assert load.has_room(1) and not load.has_room(2)
    """

    def __init__(self, capacity: int | None = None, context: Any = None) -> None:
        """
        Args:
            capacity: threads the server can run at once; the number of CPU cores when
                ``None``.
            context: the multiprocessing context the engine processes are started with
                (``spawn`` when ``None``).
        """
        self.capacity = max(1, capacity or os.cpu_count() or 1)
        self._threads = (context or mp.get_context("spawn")).Value("i", 0)

    @property
    def threads_in_use(self) -> int:
        """Threads of the decodes in progress, over every process sharing this counter."""
        return int(self._threads.value)

    def has_room(self, threads: int) -> bool:
        """Whether a decode with ``threads`` threads fits beside those in progress."""
        return self._threads.value + threads <= self.capacity

    @contextmanager
    def decoding(self, threads: int) -> Iterator[None]:
        """Count ``threads`` as busy for the duration of the ``with`` block."""
        with self._threads.get_lock():
            self._threads.value += threads
        try:
            yield
        finally:
            with self._threads.get_lock():
                self._threads.value -= threads
