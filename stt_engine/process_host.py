"""Hosting a session in a child process, and a pool of warm children.

The parent (an ASGI server with threads) must never run inference in its own process, so
each stream gets an :class:`EngineProcess`: a ``spawn``-ed child that loads the models once,
then runs :class:`~stt_engine.session.StreamingSession` objects one stream at a time.

* Commands (start, audio, flush, stop, reset) go down a ``multiprocessing`` queue, so
  :meth:`EngineProcess.send_audio` never blocks the caller while the child decodes.
* Events come back over a one-way pipe; :meth:`EngineProcess.fileno` is its read end, so
  an asyncio loop can ``add_reader`` it. When the child dies the pipe reaches EOF, the fd
  becomes readable and :meth:`EngineProcess.poll_events` raises
  :class:`~stt_engine.errors.EngineCrashedError`; the caller replaces the process.
* A child serves one stream after another. :meth:`EngineProcess.reset` proves it clean before
  the next: every stream's state lives in a :class:`~stt_engine.session.StreamingSession` that
  the child drops at ``reset`` (a new stream gets a new one, and Silero's state is reset in
  it), and the reset's answer carries a token the parent waits for, so that every event the
  old stream still had in the pipe is read and thrown away before the engine is handed on.

This module imports neither torch nor faster-whisper in the parent; only the child does.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from . import events as ev
from .audio import check_sample_rate, pcm16_to_float
from .config import PER_STREAM_SETTINGS, EngineConfig
from .errors import EngineCrashedError, EngineUnavailableError, SttEngineError
from .load import SharedDecodeLoad

__all__ = ["EnginePool", "EngineProcess"]


def _child_main(config: EngineConfig, commands: Any, conn: Connection, load: SharedDecodeLoad | None) -> None:
    """Entry point of the engine child: load models, then serve commands until ``close``."""
    try:
        import torch

        torch.set_num_threads(1)
        from .recognizer import load_models
        from .session import StreamingSession
        from .vad import load_silero

        models = load_models(config)
        silero = load_silero()
    except Exception as exc:
        conn.send(("fatal", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", models.final_threads))
    session: Any = None
    parent = mp.parent_process()
    held: tuple | None = None  # a command read while gathering audio, handled next
    while True:
        if held is not None:
            command, held = held, None
        else:
            waiting = session is not None and session.refinement_waiting
            try:
                # A turn waiting for its refinement is looked at again soon, even with no audio
                # coming (push-to-talk released): it runs once the cores have room.
                command = commands.get(timeout=0.2 if waiting else 2.0)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    break  # the server died without closing us: do not linger as an orphan
                if waiting:
                    _send_events(conn, _guarded(session, session.refine))
                continue
        if command[0] == "audio":
            # Audio that queued up during a decode is fed in one call, so the session sees
            # that it is behind and skips partials of audio that newer audio already follows.
            gathered = [command[1]]
            while held is None:
                try:
                    following = commands.get_nowait()
                except queue.Empty:
                    break
                if following[0] == "audio":
                    gathered.append(following[1])
                else:
                    held = following
            command = ("audio", b"".join(gathered))
        kind = command[0]
        if kind == "close":
            break
        if kind == "reset":
            # Whatever the last stream left (it may not have been stopped) goes with its session.
            session = None
            conn.send(("reset", command[1]))
            continue
        out: list[ev.Event] = []
        try:
            if kind == "start":
                if session is not None:
                    out.extend(session.stop())
                session = None
                overrides = command[3] if len(command) > 3 else None
                stream_config = replace(config, **overrides).validate() if overrides else config
                session = StreamingSession(
                    stream_config, sample_rate=command[1], language=command[2], models=models, silero=silero,
                    load=load,
                )
            elif session is None:
                out.append(ev.EngineError(code="NOT_STARTED", message="Send stt_start before audio."))
            elif kind == "audio":
                out.extend(session.feed(command[1]))
            elif kind == "flush":
                out.extend(session.flush())
            elif kind == "stop":
                # The last final goes out first; the refinements of the turns still waiting follow.
                conn.send(("events", out + session.flush()))
                out = session.stop()
                session = None
        except SttEngineError as exc:
            at = session.stream_time if session is not None else 0.0
            out.append(ev.EngineError(code=exc.code, message=exc.message, at=at))
        except Exception as exc:
            out.append(ev.EngineError(code="ENGINE_ERROR", message=f"{type(exc).__name__}: {exc}"))
        _send_events(conn, out)
        if session is not None and session.refinement_waiting and held is None and commands.empty():
            _send_events(conn, _guarded(session, session.refine))
    conn.close()


def _guarded(session: Any, step: Any) -> list[ev.Event]:
    """Run an optional step of the session; an error becomes an event, not the child's death."""
    try:
        return step()
    except SttEngineError as exc:
        return [ev.EngineError(code=exc.code, message=exc.message, at=session.stream_time)]
    except Exception as exc:
        return [ev.EngineError(code="ENGINE_ERROR", message=f"{type(exc).__name__}: {exc}")]


def _send_events(conn: Connection, out: list[ev.Event]) -> None:
    if out:
        conn.send(("events", out))


class EngineProcess:
    """One engine child process with its models loaded; hosts one stream at a time.

    Example::

        proc = EngineProcess(EngineConfig())
        proc.wait_ready(timeout=60)
        proc.start_stream(sample_rate=16000, language="auto")
        proc.send_audio(pcm)
        events = proc.poll_events(timeout=0.1)
    """

    def __init__(self, config: EngineConfig | None = None, load: SharedDecodeLoad | None = None) -> None:
        """Start the child (it loads the models in the background).

        Args:
            config: engine settings; ``EngineConfig()`` when ``None``. It is validated.
            load: this child's view of the decode load it shares with the server's other
                engines (:meth:`SharedDecodeLoad.claim`); released when the child is closed.
        """
        self.config = (config or EngineConfig()).validate()
        self._load = load
        ctx = mp.get_context("spawn")
        self._commands = ctx.Queue()
        reader, writer = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_child_main,
            args=(self.config, self._commands, writer, load),
            name="stt-engine",
            daemon=True,
        )
        self._process.start()
        writer.close()  # the child holds the only write end, so its death means EOF here
        self._conn = reader
        self._ready = False
        self.final_threads: int | None = None
        """Threads of the child's final decodes, once it is ready (measured if ``cpu_threads`` is 0)."""
        self._fatal: str | None = None
        self._crashed = False
        self._closed = False
        self._backlog: list[ev.Event] = []
        self._reset_answered: int | None = None
        self._resets = 0
        self.started_at = time.monotonic()
        self.streams_started = 0
        """How many streams this child has been given (:meth:`start_stream` calls)."""

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self._process.pid

    @property
    def ready(self) -> bool:
        """Whether the child has loaded its models."""
        return self._ready

    def fileno(self) -> int:
        """The fd that becomes readable when events (or the child's death) are waiting."""
        return self._conn.fileno()

    def is_alive(self) -> bool:
        """Whether the child runs and has not been reported dead or closed."""
        return not self._closed and not self._crashed and self._process.is_alive()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the child has loaded its models.

        Args:
            timeout: seconds to wait; ``None`` waits for ever.

        Returns:
            ``True`` when ready, ``False`` on timeout.

        Raises:
            EngineUnavailableError: the child could not load its models.
            EngineCrashedError: the child died while loading.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._receive(left) and deadline is not None and time.monotonic() >= deadline:
                return False
            if self._fatal is not None:
                raise EngineUnavailableError(f"The engine could not start: {self._fatal}")
        return True

    def start_stream(
        self, sample_rate: int = 16000, language: str = "auto", overrides: dict[str, float | bool] | None = None
    ) -> None:
        """Begin a new stream (stopping any previous one in this child).

        Args:
            sample_rate: rate of the PCM that will follow, 8000..48000 Hz.
            language: ``"auto"`` or a language code.
            overrides: this stream's own values of :data:`~stt_engine.config.PER_STREAM_SETTINGS`
                (the next stream of the process has the server's again).

        Raises:
            AudioFormatError: unsupported sample rate. ValueError: an override that is not a
            per-stream setting, or out of its range. EngineCrashedError: child dead.
        """
        rate = check_sample_rate(sample_rate)
        overrides = dict(overrides or {})
        unknown = set(overrides) - PER_STREAM_SETTINGS
        if unknown:
            raise ValueError(f"Not per-stream settings: {sorted(unknown)}")
        if overrides:
            replace(self.config, **overrides).validate()  # out of range: raised here, not in the child
        self._send(("start", rate, language or "auto", overrides))
        self.streams_started += 1

    def send_audio(self, pcm: bytes | bytearray | memoryview) -> None:
        """Queue PCM s16le mono bytes for the stream (never blocks on decoding).

        Raises:
            AudioFormatError: not bytes-like or an odd byte count (checked here, at once).
            EngineCrashedError: the child is dead.
        """
        pcm16_to_float(pcm)  # validates; the child converts again (cheap)
        self._send(("audio", bytes(pcm)))

    def flush(self) -> None:
        """Ask the child to finalize the utterance in progress."""
        self._send(("flush",))

    def stop(self) -> None:
        """Ask the child to flush and end the stream (it stays warm for another)."""
        self._send(("stop",))

    def reset(self, timeout: float = 10.0) -> bool:
        """Make the child clean for another stream: drop its stream and every unread event.

        The child drops its session and answers with a token; everything it sent before that
        answer belongs to the old stream and is discarded here. Call it only while nobody else
        reads this process's events.

        Args:
            timeout: seconds to wait for the answer (a child still decoding answers after it).

        Returns:
            ``True`` when the child answered in time and is alive; ``False`` otherwise (it is
            then not fit to serve another stream).
        """
        self._resets += 1
        token = self._resets
        try:
            self._send(("reset", token))
        except EngineCrashedError:
            return False
        deadline = time.monotonic() + timeout
        while self._reset_answered != token:
            left = deadline - time.monotonic()
            if left <= 0 or self._crashed:
                return False
            self._receive(left)
        self._backlog.clear()
        return self.is_alive()

    def poll_events(self, timeout: float = 0.0) -> list[ev.Event]:
        """Return the events the child has sent, waiting up to ``timeout`` for the first.

        Args:
            timeout: seconds to wait when nothing is waiting yet.

        Returns:
            The events, oldest first (possibly empty).

        Raises:
            EngineCrashedError: the child died (after any events it sent before dying
                have been returned by an earlier call).
        """
        if self._closed:
            raise EngineCrashedError("The engine process was closed.")
        got = self._receive(timeout)
        while got:
            got = self._receive(0.0)
        if self._backlog:
            out, self._backlog = self._backlog, []
            return out
        if self._crashed or not self._process.is_alive():
            self._crashed = True
            raise EngineCrashedError(
                f"The engine process {self.pid} died (exit code {self._process.exitcode})."
            )
        return []

    def close(self) -> None:
        """Stop the child (killing it if it does not exit at once) and free its resources."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            if self._process.is_alive():
                self._commands.put(("close",))
                self._process.join(0.5)
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        self._commands.cancel_join_thread()
        self._commands.close()
        self._conn.close()
        if self._load is not None:
            self._load.release()  # a child killed in the middle of a decode left its slot set

    def __enter__(self) -> EngineProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, command: tuple[Any, ...]) -> None:
        if self._closed:
            raise EngineCrashedError("The engine process was closed.")
        if self._crashed or not self._process.is_alive():
            self._crashed = True
            raise EngineCrashedError(
                f"The engine process {self.pid} died (exit code {self._process.exitcode})."
            )
        self._commands.put(command)

    def _receive(self, timeout: float | None) -> bool:
        """Read one message if one arrives within ``timeout``; return whether one did."""
        if self._crashed:
            return False
        try:
            if not self._conn.poll(timeout):
                return False
            kind, payload = self._conn.recv()
        except (EOFError, OSError):
            self._crashed = True
            return False
        if kind == "events":
            self._backlog.extend(payload)
        elif kind == "ready":
            self._ready = True
            self.final_threads = int(payload)
        elif kind == "fatal":
            self._fatal = str(payload)
        elif kind == "reset":
            self._reset_answered = int(payload)
        return True


class EnginePool:
    """Keeps warm engine processes (models loaded) and takes them back after their streams.

    A caller takes a process for one stream with :meth:`acquire`, says when that stream is
    ending with :meth:`returning` (the process still owes its last final) and gives it back
    with :meth:`release` afterwards. A released process is reset (:meth:`EngineProcess.reset`)
    and serves the next stream; it is replaced only if it died, did not answer its reset, or
    has served ``max_streams`` streams or ``max_age_s`` seconds. Loading a child costs about 6.5 CPU-s,
    so a stream that follows another must not pay for it.

    How many to keep: ``size`` ready when no stream is live, and at least one spare while
    streams are live; callers waiting in :meth:`acquire` count too. A process on its way back
    (:meth:`returning`) counts as a coming spare, so a speaker who reconnects at once does not
    make the pool load another. Replacements load one at a time: four loading at once (four
    speakers starting together) starved the live streams on 2 cores, so their first finals
    came 12-16 s late. With ``cpu_threads=0`` the first child to load measures the final
    model's thread count (:mod:`stt_engine.threads`) and the pool gives the result to every
    later child, so that the measurement is made once, alone.
    """

    def __init__(self, config: EngineConfig | None = None, size: int = 1, ready_timeout: float = 180.0,
                 max_streams: int = 500, max_age_s: float = 24 * 3600.0, reset_timeout: float = 10.0) -> None:
        """Start ``size`` children.

        Args:
            config: engine settings shared by every child.
            size: how many warm processes to keep while no stream is live (>= 0; with 0 a
                process is loaded only when one is asked for, and no spare is kept).
            ready_timeout: seconds a child may take to load its models.
            max_streams: streams a child serves before it is replaced.
            max_age_s: seconds a child serves before it is replaced (checked when it comes back).
            reset_timeout: seconds a released child may take to answer its reset.
        """
        if size < 0:
            raise ValueError("EnginePool size must be >= 0.")
        self.config = (config or EngineConfig()).validate()
        self.size = size
        self.ready_timeout = ready_timeout
        self.max_streams = max_streams
        self.max_age_s = max_age_s
        self.reset_timeout = reset_timeout
        self.load = SharedDecodeLoad()
        """Shared by every child of the pool: partials and speculation yield to finals."""
        self._cond = threading.Condition()
        self._warm: list[EngineProcess] = []
        self._live: set[EngineProcess] = set()
        self._returning: set[EngineProcess] = set()
        self._waiting = 0
        self._starting = 0
        self._loading = 0
        self._one_at_a_time = threading.Lock()
        self._closed = False
        self.last_error: str | None = None
        self.loads = 0
        """Children started so far (each loads the models)."""
        self.retired = 0
        """Released children that were closed instead (dead, no reset answer, or served enough)."""
        with self._cond:
            self._starting += size
        for _ in range(size):
            self._start_loading(one_at_a_time=False)

    def _start_loading(self, one_at_a_time: bool) -> None:
        """Load one child in a thread; the caller has counted it in ``_starting``."""
        with self._cond:
            self.loads += 1
        threading.Thread(
            target=self._warm_up, args=(one_at_a_time,), name="stt-engine-warmup", daemon=True
        ).start()

    def _refill(self) -> None:
        """Start loading as many children as the pool is short of."""
        with self._cond:
            if self._closed:
                return
            self._live = {proc for proc in self._live if proc.is_alive()}  # closed without release
            live = len(self._live)
            wanted = max(self.size - live, min(self.size, 1) if live else 0) + self._waiting
            short = wanted - (len(self._warm) + self._starting + len(self._returning))
            if short <= 0:
                return
            self._starting += short
        for _ in range(short):
            self._start_loading(one_at_a_time=True)

    def _warm_up(self, one_at_a_time: bool) -> None:
        proc: EngineProcess | None = None
        ok = False
        # While the thread count is still to be measured, children load one at a time: the
        # first measures it alone, and those after it take its result (read under the lock).
        measuring = self.config.cpu_threads == 0
        with self._one_at_a_time if one_at_a_time or measuring else contextlib.nullcontext():
            with self._cond:
                self._loading += 1
            try:
                proc = EngineProcess(self.config, self.load.claim())
                ok = proc.wait_ready(self.ready_timeout)
                if ok and self.config.cpu_threads == 0:
                    self.config = replace(self.config, cpu_threads=proc.final_threads)
                if not ok:
                    self.last_error = f"engine not ready after {self.ready_timeout} s"
            except SttEngineError as exc:
                self.last_error = exc.message
            finally:
                with self._cond:
                    self._loading -= 1
        with self._cond:
            self._starting -= 1
            if ok and proc is not None and not self._closed:
                self._warm.append(proc)
                proc = None
            self._cond.notify_all()
        if proc is not None:
            proc.close()

    @property
    def loading_count(self) -> int:
        """How many children are loading their models right now."""
        with self._cond:
            return self._loading

    @property
    def warm_count(self) -> int:
        """How many ready processes are waiting."""
        with self._cond:
            return len(self._warm)

    @property
    def warm_pids(self) -> list[int | None]:
        """Process ids of the ready processes waiting (the next one handed out last)."""
        with self._cond:
            return [proc.pid for proc in self._warm]

    def acquire(self, timeout: float | None = 60.0) -> EngineProcess:
        """Take a ready engine process for one stream.

        Args:
            timeout: seconds to wait for one to be ready.

        Returns:
            A ready :class:`EngineProcess`; give it back with :meth:`release` when its stream
            is over (or when it crashed).

        Raises:
            EngineUnavailableError: none became ready in time, or the pool is closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._waiting += 1
        try:
            while (proc := self._take_warm()) is None:
                self._refill()  # warms one for this caller unless enough are loading or coming back
                with self._cond:
                    if self._warm or self._closed:
                        continue
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        detail = f" ({self.last_error})" if self.last_error else ""
                        raise EngineUnavailableError(f"No engine process became ready in time{detail}.")
                    self._cond.wait(left)
        finally:
            with self._cond:
                self._waiting -= 1
        self._refill()  # keep a spare beside the streams now live
        return proc

    def _take_warm(self) -> EngineProcess | None:
        with self._cond:
            if self._closed:
                raise EngineUnavailableError("The engine pool is closed.")
            while self._warm:
                # The most recently used first: the others may then sit idle as spares.
                proc = self._warm.pop()
                if proc.is_alive():
                    self._live.add(proc)
                    return proc
                self.retired += 1
                proc.close()
        return None

    def returning(self, proc: EngineProcess) -> None:
        """Say that ``proc``'s stream is ending: it will be released soon, so it counts as a
        coming spare and the pool does not load another in its place."""
        with self._cond:
            if proc in self._live:
                self._live.discard(proc)
                self._returning.add(proc)

    def release(self, proc: EngineProcess) -> bool:
        """Take back a process whose stream is over (blocking: it waits for the reset).

        Call it when nobody reads the process's events any more. A live process is reset and
        made ready for the next stream; a dead one, one that does not answer its reset in
        ``reset_timeout`` s, or one that has served ``max_streams`` streams or ``max_age_s``
        seconds, is closed and replaced.

        Returns:
            Whether the process will serve another stream.
        """
        with self._cond:
            self._live.discard(proc)
            self._returning.add(proc)
            closed = self._closed
        served_enough = (
            proc.streams_started >= self.max_streams or time.monotonic() - proc.started_at >= self.max_age_s
        )
        reusable = not closed and not served_enough and proc.is_alive() and proc.reset(self.reset_timeout)
        with self._cond:
            self._returning.discard(proc)
            reusable = reusable and not self._closed
            if reusable:
                self._warm.append(proc)
                self._cond.notify_all()
            else:
                self.retired += 1
        if not reusable:
            proc.close()
        self._refill()
        return reusable

    def close(self) -> None:
        """Close every warm process; processes handed out stay with their owners."""
        with self._cond:
            self._closed = True
            warm, self._warm = self._warm, []
            self._cond.notify_all()
        for proc in warm:
            proc.close()

    def __enter__(self) -> EnginePool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
