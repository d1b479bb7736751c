"""Live streaming benchmark: N speakers stream dev clips over real WebSockets, at real-time pace.

Measured from the clients' side (seconds): speech onset -> first partial; partial lag (when a
partial arrives minus when the audio it covers was sent); end of speech -> final (including
the VAD's silence window); WER of the finals per clip; finals missing (clips with speech and
no final); with ``--viewers N``, how much later than the speaker each caption viewer receives
each final. Also: audio frames the server refused, connections it refused, and (with a spawned
server) the engine processes it started while the clients streamed.

``--churn`` measures streams that come and go: each client opens a new session and a new
connection per clip and streams its first frame right after ``stt_start``, without waiting for
the server's answer; a refused connection is counted and tried again 0.5 s later.

``--protocol realtime`` drives OpenAI's Realtime transcription endpoint
(``/v1/realtime?intent=transcription``, server VAD, 24 kHz base64 PCM, each clip resampled as an
OpenAI client would send it) instead of our protocol, and reports the same figures: its deltas
are the partials (they carry no stream time, so ``partial_lag_p50`` is not measured), its
``completed`` transcripts the finals (their times from ``speech_started``/``speech_stopped``).
Each realtime connection is a session of its own, so ``--viewers`` does not apply.

By default it starts its own server (daphne, embedded mode: SQLite, in-memory channel layer,
in a temporary folder; ``--redis URL`` switches the channel layer to Redis) and a user with a
token; ``--url`` and ``--token`` measure a server that is already running instead (its
``STT_MAX_STREAMS_PER_USER`` must allow ``--clients`` streams for that user).

Usage::

    python bench/stream_bench.py [--clients 4] [--viewers 100] [--limit 6] [--churn] [--json PATH]
    python bench/stream_bench.py --protocol realtime [--clients 4] [--limit 6] [--churn] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine_bench import DEFAULT_MANIFEST, _speech_bounds  # noqa: E402
from tests.speech import word_error_rate  # noqa: E402

RATE = 16000
FRAME_S = 0.05
SILENCE_AFTER_S = 1.5


@dataclass
class ClipPlan:
    name: str
    reference: str
    pcm: bytes
    stream_start_s: float = 0.0  # where the clip starts on the speaker's stream clock
    onset_s: float = 0.0  # speech onset and end within the clip
    speech_end_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / RATE


@dataclass
class ClientResult:
    clips: list[ClipPlan]
    sent_at: list[tuple[float, float]] = field(default_factory=list)  # (stream second, wall time)
    partials: list[tuple[float, float]] = field(default_factory=list)  # (wall time, at)
    finals: list[tuple[float, dict]] = field(default_factory=list)  # (wall time, message)
    errors: list[dict] = field(default_factory=list)
    refused: bool = False  # the server refused the connection (TOO_MANY_STREAMS, ALREADY_STREAMING)
    partial_times_known: bool = True  # partials carry the stream time they cover (not realtime deltas)

    def wall_time_of(self, stream_s: float) -> float:
        for second, wall in self.sent_at:
            if second >= stream_s:
                return wall
        return self.sent_at[-1][1]


def load_clips(manifest: Path) -> list[ClipPlan]:
    clips = []
    for line in (manifest / "manifest.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        audio, rate = sf.read(str(manifest / row["audio"]), dtype="int16")
        if rate != RATE:
            raise SystemExit(f"{row['audio']}: the bench streams 16 kHz clips, this one is {rate} Hz")
        onset, end = _speech_bounds(audio)
        pcm = np.concatenate([audio, np.zeros(int(SILENCE_AFTER_S * RATE), np.int16)]).astype("<i2").tobytes()
        clips.append(ClipPlan(row["audio"], row["text"], pcm, onset_s=onset, speech_end_s=end))
    return clips


REFUSED_CODES = ("TOO_MANY_STREAMS", "ALREADY_STREAMING")
FRAME_REFUSED_CODES = ("RATE_LIMITED", "NOT_STARTED", "FRAME_TOO_LARGE", "BAD_AUDIO")


async def run_speaker(base_ws: str, session_id: str, token: str, plan: list[ClipPlan],
                      wait_for_listening: bool = True) -> ClientResult:
    """Stream ``plan`` over one connection at real time, stop, wait for the last final.

    With ``wait_for_listening`` false the first frame follows ``stt_start`` at once, as a client
    that does not wait for the server does. A connection the server refuses (``TOO_MANY_STREAMS``,
    ``ALREADY_STREAMING``) ends early with ``refused`` set.
    """
    result = ClientResult(plan)
    url = f"{base_ws}/ws/sessions/{session_id}/stream/"
    async with websockets.connect(url, additional_headers={"Authorization": f"Token {token}"}, max_size=None) as ws:
        await ws.send(json.dumps({"type": "stt_start", "language": "en", "sample_rate": RATE}))
        listening = asyncio.Event()
        idle = asyncio.Event()
        stream = {"offset": 0.0, "id": None, "stopping": False}

        async def receive() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    now = time.monotonic()
                    message = json.loads(raw)
                    kind = message["type"]
                    if kind == "stt_listening":
                        stream["offset"], stream["id"] = message.get("clock_offset", 0.0), message["stream_id"]
                        listening.set()
                        continue
                    if message.get("stream_id", stream["id"]) != stream["id"]:
                        continue  # another speaker's line (every speaker socket gets the whole session)
                    if kind in ("stt_update", "stt_stabilized") and message.get("text"):
                        result.partials.append((now, message["at"] - stream["offset"]))
                    elif kind == "stt_final":
                        result.finals.append((now, message))
                    elif kind == "stt_error":
                        result.errors.append(message)
                        if message.get("code") in REFUSED_CODES:
                            result.refused = True
                            listening.set()
                            idle.set()
                            return
                    elif kind == "stt_state" and message["state"] == "idle" and stream["stopping"]:
                        idle.set()
                        return
            # The server closed the socket before this stream's idle: record it, stop waiting.
            result.errors.append({"type": "bench", "code": "CLOSED", "error": f"closed with {ws.close_code}"})
            listening.set()
            idle.set()

        receiver = asyncio.create_task(receive())
        if wait_for_listening:
            await asyncio.wait_for(listening.wait(), 300)
        start = time.monotonic()
        stream_s = 0.0
        for clip in plan:
            clip.stream_start_s = stream_s
            for i in range(0, len(clip.pcm), int(FRAME_S * RATE) * 2):
                if result.refused or idle.is_set():
                    break
                frame = clip.pcm[i : i + int(FRAME_S * RATE) * 2]
                # Real-time pace: a frame is sent when its last sample would have been spoken.
                delay = start + stream_s + len(frame) / 2 / RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(frame)
                stream_s += len(frame) / 2 / RATE
                result.sent_at.append((stream_s, time.monotonic()))
        if result.refused:
            receiver.cancel()
            return result
        stream["stopping"] = True
        stop_sent = time.monotonic()
        if wait_for_listening:
            print(f"  speaker {token[:6]}: streamed {stream_s:.0f} s, stopping", flush=True)
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(json.dumps({"type": "stt_stop"}))
        try:
            await asyncio.wait_for(idle.wait(), 300)
        except TimeoutError:
            result.errors.append({"type": "bench", "code": "NO_IDLE", "error": "no idle state 300 s after stt_stop"})
        if wait_for_listening:
            print(f"  speaker {token[:6]}: idle {time.monotonic() - stop_sent:.1f} s after stt_stop", flush=True)
        receiver.cancel()
        offset = stream["offset"]
        for _, message in result.finals:
            message["start"] -= offset
            message["end"] -= offset
            for word in message.get("words") or []:
                word["start"] -= offset
                word["end"] -= offset
    return result


REALTIME_RATE = 24000  # what OpenAI's Realtime API takes


async def run_realtime_speaker(base_ws: str, token: str, plan: list[ClipPlan], quiet_s: float = 10.0) -> ClientResult:
    """Stream ``plan`` over one ``/v1/realtime?intent=transcription`` connection at real time.

    Deltas count as partials (placed at their item's speech onset: they carry no stream time),
    each ``completed`` as a final spanning its item's speech. After the audio, a commit ends any
    open utterance; the stream is over once every item that stopped is completed (or nothing came
    for ``quiet_s``: an utterance too short for a final gives no item).
    """
    result = ClientResult(plan, partial_times_known=False)
    url = f"{base_ws}/v1/realtime?model=whisper-1&intent=transcription"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": REALTIME_RATE},
            "transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": {"type": "server_vad"},
        }}}}))
        updated = asyncio.Event()
        finished = asyncio.Event()
        state = {"padding_s": 0.0, "sent_all": False, "last_event": time.monotonic()}
        items: dict[str, dict] = {}  # item_id -> {"start", "end", "completed"}

        def all_completed() -> bool:
            stopped = [item for item in items.values() if item.get("end") is not None]
            return state["sent_all"] and all(item.get("completed") for item in stopped)

        async def receive() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    now = state["last_event"] = time.monotonic()
                    event = json.loads(raw)
                    kind = event["type"]
                    item = items.setdefault(event["item_id"], {}) if "item_id" in event else None
                    if kind == "session.updated":
                        detection = event["session"]["audio"]["input"]["turn_detection"] or {}
                        state["padding_s"] = detection.get("prefix_padding_ms", 0) / 1000
                        updated.set()
                    elif kind == "input_audio_buffer.speech_started":
                        item["start"] = event["audio_start_ms"] / 1000
                    elif kind == "input_audio_buffer.speech_stopped":
                        item["end"] = event["audio_end_ms"] / 1000
                    elif kind == "conversation.item.input_audio_transcription.delta" and event.get("delta"):
                        result.partials.append((now, item.get("start", 0.0) + state["padding_s"]))
                    elif kind == "conversation.item.input_audio_transcription.completed":
                        item["completed"] = True
                        start = item.get("start", 0.0) + state["padding_s"]
                        result.finals.append(
                            (now, {"text": event["transcript"], "start": start, "end": item.get("end", start)})
                        )
                    elif kind == "error":
                        error = event["error"]
                        result.errors.append({"code": (error.get("code") or "").upper(), "error": error["message"]})
                        if result.errors[-1]["code"] in REFUSED_CODES:
                            result.refused = True
                            updated.set()
                            finished.set()
                            return
                    if all_completed():
                        finished.set()
            result.errors.append({"type": "bench", "code": "CLOSED", "error": f"closed with {ws.close_code}"})
            updated.set()
            finished.set()

        receiver = asyncio.create_task(receive())
        await asyncio.wait_for(updated.wait(), 300)
        start = time.monotonic()
        stream_s = 0.0
        frame_bytes = int(FRAME_S * REALTIME_RATE) * 2
        for clip in plan:
            clip.stream_start_s = stream_s
            audio = np.frombuffer(clip.pcm, dtype="<i2")
            pcm = soxr.resample(audio, RATE, REALTIME_RATE).astype("<i2").tobytes()
            for i in range(0, len(pcm), frame_bytes):
                if result.refused or finished.is_set():
                    break
                frame = pcm[i : i + frame_bytes]
                delay = start + stream_s + len(frame) / 2 / REALTIME_RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                              "audio": base64.b64encode(frame).decode()}))
                stream_s += len(frame) / 2 / REALTIME_RATE
                result.sent_at.append((stream_s, time.monotonic()))
        if not result.refused:
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            state["sent_all"] = True
            if all_completed():
                finished.set()
            while not finished.is_set() and time.monotonic() - state["last_event"] < quiet_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), 1.0)
        receiver.cancel()
    return result


async def run_churn_speaker(base_http: str, base_ws: str, token: str, plan: list[ClipPlan],
                            refusals: list[dict], realtime: bool = False) -> list[ClientResult]:
    """One client that opens a new session and a new connection per clip, streaming at once.

    A refused connection is counted in ``refusals`` and tried again 0.5 s later, from the clip's start.
    """
    results = []
    for number, clip in enumerate(plan):
        while True:
            if realtime:  # (every realtime connection is a new session)
                result = await run_realtime_speaker(base_ws, token, [clip])
            else:
                session = await asyncio.to_thread(api, base_http, token, "/api/sessions/",
                                                  {"title": f"churn {number}", "language": "en"})
                result = await run_speaker(base_ws, session["id"], token, [clip], wait_for_listening=False)
            if not result.refused:
                break
            refusals.append(result.errors[-1])
            await asyncio.sleep(0.5)
        results.append(result)
    print(f"  speaker {token[:6]}: {len(plan)} clips, one connection each", flush=True)
    return results


class EngineCounter:
    """Counts the engine processes a spawned server starts, by polling its children."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.seen: set[int] = set()
        self.at_start: set[int] = set()

    def poll(self) -> None:
        import psutil

        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.server_pid).children():
                with contextlib.suppress(psutil.Error):
                    if "spawn_main" in " ".join(child.cmdline()):
                        self.seen.add(child.pid)

    async def watch(self, done: asyncio.Event) -> None:
        while not done.is_set():
            self.poll()
            await asyncio.sleep(0.25)

    @property
    def loads_since_start(self) -> int:
        return len(self.seen - self.at_start)


async def run_viewer(base_ws: str, session_id: str, share_token: str, seen: dict, ready: asyncio.Event,
                     done: asyncio.Event) -> None:
    url = f"{base_ws}/ws/sessions/{session_id}/captions/?token={share_token}"
    async with websockets.connect(url) as ws:
        await ws.recv()  # stt_viewing
        ready.set()
        while not done.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            message = json.loads(raw)
            if message["type"] == "stt_final":
                seen.setdefault(message["utterance_id"], []).append(time.monotonic())


def _assign_finals(result: ClientResult) -> dict[int, list[tuple[float, dict]]]:
    """Give each final to the clip whose speech it overlaps most on the stream clock.

    (A final's start includes the pre-roll, and Whisper often puts the first word at the start
    of its window, so neither alone says which clip a final belongs to.)
    """
    spans = [
        (clip.stream_start_s + clip.onset_s, clip.stream_start_s + clip.speech_end_s) for clip in result.clips
    ]
    assigned: dict[int, list[tuple[float, dict]]] = {}
    for wall, message in result.finals:
        overlaps = [min(end, message["end"]) - max(begin, message["start"]) for begin, end in spans]
        best = int(np.argmax(overlaps))
        if overlaps[best] > 0:
            assigned.setdefault(best, []).append((wall, message))
    return assigned


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def analyse(results: list[ClientResult]) -> dict:
    first_partials, lags, final_latencies, refs, hyps = [], [], [], [], []
    missing = 0
    per_clip = []
    for result in results:
        if result.partial_times_known:
            lags += [wall - result.wall_time_of(at) for wall, at in result.partials]
        assigned = _assign_finals(result)
        for index, clip in enumerate(result.clips):
            begin, end = clip.stream_start_s, clip.stream_start_s + clip.duration_s
            onset_wall = result.wall_time_of(begin + clip.onset_s)
            speech_end_wall = result.wall_time_of(begin + clip.speech_end_s)
            partial_walls = [wall for wall, at in result.partials if begin <= at <= end and wall >= onset_wall]
            if partial_walls:
                first_partials.append(min(partial_walls) - onset_wall)
            finals = assigned.get(index, [])
            if not finals:
                missing += 1
                hyps.append("")
            else:
                final_latencies.append(max(wall for wall, _ in finals) - speech_end_wall)
                hyps.append(" ".join(m["text"] for _, m in sorted(finals, key=lambda f: f[1]["start"])))
            refs.append(clip.reference)
            per_clip.append({"clip": clip.name, "reference": clip.reference, "hypothesis": hyps[-1],
                             "finals": len(finals), "final_latency": final_latencies[-1] if finals else None})
    return {
        "final_wer": word_error_rate(refs, hyps),
        "first_partial_p50": percentile(first_partials, 50),
        "partial_lag_p50": percentile(lags, 50),
        "final_latency_p50": percentile(final_latencies, 50),
        "final_latency_p95": percentile(final_latencies, 95),
        "finals_missing": missing,
        "clips": len(refs),
        "per_clip": per_clip,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_server(
    clients: int, redis_url: str | None, churn: bool = False
) -> tuple[subprocess.Popen, str, list[str], Path]:
    """Start daphne in the embedded mode in a temporary folder; return it, its URL and a token per speaker.

    With ``churn`` the server keeps its default warm engines and server stream limit, as a real one would.
    """
    var_dir = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    env = {
        **os.environ, "VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "transcribe_site.settings",
        "STT_MAX_STREAMS_PER_USER": str(clients), "LOG_LEVEL": "WARNING",
    }
    if not churn:
        env.update(STT_WARM_ENGINES=str(clients), STT_MAX_STREAMS_PER_SERVER=str(max(clients, 8)))
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    tokens = subprocess.run(
        [python, "manage.py", "shell", "-c",
         "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token\n"
         f"for i in range({clients}):\n"
         "    u = User.objects.create_user(f'speaker{i}', password='bench-pass-123')\n"
         "    print(Token.objects.create(user=u).key)"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-clients:]
    port = _free_port()
    server = subprocess.Popen(
        [python, "-m", "daphne", "--application-close-timeout", "60", "-b", "127.0.0.1", "-p", str(port),
         "transcribe_site.asgi:application"],
        cwd=ROOT, env=env, stdout=(var_dir / "daphne.log").open("wb"), stderr=subprocess.STDOUT,
    )
    return server, f"http://127.0.0.1:{port}", tokens, var_dir


def invite_speakers(var_dir: Path, session_id: str, count: int) -> None:
    """Make the spawned server's other bench users speakers of the session (the owner is speaker0)."""
    env = {**os.environ, "VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "transcribe_site.settings"}
    env.pop("DATABASE_URL", None)
    code = (
        "from sessions_app.actions import do_add_member; from sessions_app.models import TranscriptionSession\n"
        f"s = TranscriptionSession.objects.get(pk='{session_id}')\n"
        f"for i in range(1, {count}):\n"
        "    do_add_member(s, f'speaker{i}', 'speaker')"
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def api(base_http: str, token: str, path: str, payload: dict | None = None) -> dict:
    request = urllib.request.Request(
        base_http + path, data=json.dumps(payload).encode() if payload is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for_server(base_http: str, token: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            api(base_http, token, "/api/sessions/")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


async def run(args: argparse.Namespace, base_http: str, tokens: list[str], var_dir: Path | None,
              engines: EngineCounter | None = None) -> dict:
    """Speaker ``i`` streams with ``tokens[i % len(tokens)]``: by default all in one session, of
    which they are members, over one connection each; with ``--churn`` a session and a
    connection per clip."""
    token = tokens[0]
    clips = load_clips(args.manifest)
    if args.limit:
        clips = clips[: args.limit * args.clients]
    plans = [clips[i :: args.clients] for i in range(args.clients)]
    base_ws = base_http.replace("http", "ws", 1)
    seen: dict = {}
    done = asyncio.Event()
    viewer_tasks = []
    realtime = args.protocol == "realtime"
    if not args.churn and not realtime:
        session = api(base_http, token, "/api/sessions/", {"title": "stream bench", "language": "en"})
        if len(tokens) > 1 and var_dir is not None:
            invite_speakers(var_dir, session["id"], len(tokens))
        for _ in range(args.viewers):
            ready = asyncio.Event()
            viewer_tasks.append(asyncio.create_task(
                run_viewer(base_ws, session["id"], session["share_token"], seen, ready, done)))
            await ready.wait()
    await asyncio.sleep(args.warmup_s)  # let the server's warm pool fill
    watcher = None
    if engines is not None:
        engines.poll()
        engines.at_start = set(engines.seen)
        watcher = asyncio.create_task(engines.watch(done))
    refusals: list[dict] = []
    if args.churn:
        per_client = await asyncio.gather(*(
            run_churn_speaker(base_http, base_ws, tokens[i % len(tokens)], plan, refusals, realtime=realtime)
            for i, plan in enumerate(plans)
        ))
        results = [result for client in per_client for result in client]
    elif realtime:
        results = await asyncio.gather(
            *(run_realtime_speaker(base_ws, tokens[i % len(tokens)], plan) for i, plan in enumerate(plans))
        )
    else:
        results = await asyncio.gather(
            *(run_speaker(base_ws, session["id"], tokens[i % len(tokens)], plan) for i, plan in enumerate(plans))
        )
    await asyncio.sleep(1.0)
    done.set()
    await asyncio.gather(*viewer_tasks)
    if watcher is not None:
        await watcher
    summary = analyse(results)
    summary["protocol"] = args.protocol
    summary["clients"] = args.clients
    summary["churn"] = args.churn
    if args.viewers and not args.churn:
        delays = []
        for result in results:
            for wall, message in result.finals:
                delays += [t - wall for t in seen.get(message["utterance_id"], [])]
        summary["viewers"] = args.viewers
        summary["viewer_delay_p95"] = percentile(delays, 95)
        summary["viewer_deliveries_missing"] = sum(len(r.finals) for r in results) * args.viewers - len(delays)
    errors = [e for r in results for e in r.errors]
    summary["frames_refused"] = sum(e.get("code") in FRAME_REFUSED_CODES for e in errors)
    summary["connections_refused"] = len(refusals) + sum(r.refused for r in results)
    if engines is not None:
        summary["engines_at_start"] = len(engines.at_start)
        summary["engine_loads"] = engines.loads_since_start  # engine processes started while streaming
        summary["engine_crashes"] = sum(e.get("code") == "ENGINE_CRASHED" for e in errors)
    summary["errors"] = errors + refusals
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="base URL of a running server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--token", action="append", help="DRF token of a speaker (with --url; once per speaker, "
                        "the first one owns the session and the others must be its members)")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--viewers", type=int, default=0)
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--limit", type=int, default=0, help="clips per client (0: all clips, shared out)")
    parser.add_argument("--redis", help="with a spawned server: use this Redis for the channel layer")
    parser.add_argument("--warmup-s", type=float, default=0.0, help="wait before streaming")
    parser.add_argument("--churn", action="store_true",
                        help="a new session and connection per clip, streaming with no pause after stt_start "
                             "(the spawned server keeps its default warm engines and stream limit)")
    parser.add_argument("--protocol", choices=("ours", "realtime"), default="ours",
                        help="ours: /ws/sessions/<id>/stream/; realtime: OpenAI's /v1/realtime?intent=transcription")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.protocol == "realtime" and args.viewers:
        parser.error("--viewers needs --protocol ours (each realtime connection is a session of its own)")
    server, var_dir = None, None
    if args.url:
        if not args.token:
            parser.error("--url needs --token")
        base_http, tokens = args.url.rstrip("/"), args.token
    else:
        server, base_http, tokens, var_dir = spawn_server(args.clients, args.redis, churn=args.churn)
        args.warmup_s = max(args.warmup_s, 15.0 if args.churn else 10.0 * args.clients)
    try:
        wait_for_server(base_http, tokens[0])
        engines = EngineCounter(server.pid) if server is not None else None
        summary = asyncio.run(run(args, base_http, tokens, var_dir if server else None, engines))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
    rows = [(k, v) for k, v in summary.items() if k not in ("errors", "per_clip")]
    for key, value in rows:
        print(f"{key:28s} {value:.3f}" if isinstance(value, float) else f"{key:28s} {value}")
    if summary["errors"]:
        print(f"errors: {summary['errors'][:5]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
