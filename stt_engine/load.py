"""CPU load shared by the engine processes of one server, so that optional work yields.

Each engine process writes the threads of the decode it is running into its own slot of a
shared array. Partials and speculative finals are optional work: a session starts one only if
its threads fit beside the decodes in progress on the server without using more threads than
there are cores. The final an utterance waits for always runs. With one stream this changes
nothing (its own decodes never overlap); with more speakers than the cores can serve, the CPU
goes to the finals people are waiting for instead of to partials and to guesses that may be
thrown away; and while other streams are talking (:meth:`SharedDecodeLoad.others_busy`), a
session spaces its partials out further. A process that dies in the middle of a decode leaves
its slot set; closing its :class:`~stt_engine.EngineProcess` clears it.
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["SharedDecodeLoad", "usable_cores"]

_OWN_SLOT = 0  # used by a load that was not claimed for a child (a session in this process)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class SharedDecodeLoad:
    """Decoding threads in use, per engine process, in memory shared with spawned children.

    Create it in the parent; :meth:`claim` a view for each child (it pickles into a spawned
    process) and :meth:`release` the view when the child is gone.

    Example::

        load = SharedDecodeLoad(capacity=2)
        with load.decoding(threads=1):
            assert load.has_room(1) and not load.has_room(2)
    """

    def __init__(self, capacity: int | None = None, slots: int = 64, context: Any = None) -> None:
        """
        Args:
            capacity: threads the server can run at once; the CPU cores this process may use
                when ``None``.
            slots: most engine processes that can share the load at once (more run unshared).
            context: the multiprocessing context of the engine processes (``spawn`` if ``None``).
        """
        context = context or mp.get_context("spawn")
        self.capacity = max(1, capacity or usable_cores())
        self._threads = context.Array("i", slots, lock=False)
        # Per slot, when its last decode ended (time.monotonic, the same clock in every process).
        self._last_ended = context.Array("d", slots, lock=False)
        self._free = list(range(1, slots))  # only the parent's object hands slots out
        self.slot = _OWN_SLOT

    @property
    def threads_in_use(self) -> int:
        """Threads of the decodes in progress, over every process sharing this load."""
        return sum(self._threads)

    def others_busy(self, within_s: float) -> bool:
        """Whether another engine process is decoding or finished a decode less than
        ``within_s`` ago: other streams are talking."""
        recent = time.monotonic() - within_s
        return any(
            slot != self.slot and (self._threads[slot] or ended > recent)
            for slot, ended in enumerate(self._last_ended)
        )

    def has_room(self, threads: int) -> bool:
        """Whether a decode with ``threads`` threads fits beside those in progress."""
        return self.threads_in_use + threads <= self.capacity

    @contextmanager
    def decoding(self, threads: int) -> Iterator[None]:
        """Count ``threads`` as busy in this view's slot for the duration of the block."""
        self._threads[self.slot] += threads
        try:
            yield
        finally:
            self._threads[self.slot] -= threads
            self._last_ended[self.slot] = time.monotonic()

    def claim(self) -> SharedDecodeLoad | None:
        """A view with a slot of its own, for one engine process; ``None`` when all are taken."""
        if not self._free:
            return None
        view = copy.copy(self)
        view.slot = self._free.pop(0)
        return view

    def release(self) -> None:
        """Clear this view's slot (its process is gone) and give the slot back."""
        if self.slot == _OWN_SLOT:
            return
        self._threads[self.slot] = 0
        self._last_ended[self.slot] = 0.0
        self._free.append(self.slot)
        self.slot = _OWN_SLOT
