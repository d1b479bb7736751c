"""Fault benchmark: what a dropped connection, a killed engine and a killed worker cost.

On dev clips (those with at least ``--min-speech-s`` of speech; ``--limit`` of them), against a
real daphne (embedded mode in a temporary folder, as ``bench/stream_bench.py`` starts it) and real
Celery workers on the same database and file broker:

* ``control``: each clip streamed at real-time pace, undisturbed (the baseline of words lost).
* ``drop_resume``: the same, but in the middle of the speech the client resets its TCP connection
  (RST, no close frame), stays offline ``--drop-s`` (5 s) while its microphone goes on, then
  reconnects, resumes (``stt_start`` with ``resume`` from its last ``stt_ack``) and sends what the
  server had not acknowledged, then the rest at real-time pace.
* ``engine_kill``: in the middle of the speech the engine process serving the stream is
  SIGKILLed (the busiest of the engines that were there before the stream began); the stream goes on.
* ``daphne_restart``: in the middle of the speech the daphne process is SIGKILLed with its engines
  (a crash, or a container restarted) and started again on its port; the client reconnects every
  0.5 s until it answers and asks to resume, which the new process cannot honour (``BAD_RESUME``:
  held streams live in the old one's memory), so it sends its audio from its last ``stt_ack`` into
  the fresh stream.
* ``worker_kill``: dev clips joined into one file of at least ``--job-minutes`` (``bench/batch_bench.py``'s)
  uploaded as a batch job, once undisturbed (the baseline) and once with the worker SIGKILLed when the job has done
  ``--kill-at`` of its progress; a new worker is started at once (as a supervisor would).

Per fault (sums and medians over clips):

* ``audio_lost_s``: audio the client captured that is not in the speaker's recording (from the
  sizes in ``GET /api/sessions/<id>/``), or, for a job, the file's length it did not transcribe;
* ``words_lost``: reference words missing from the finals (the job's transcript) beyond those
  missing in the undisturbed run of the same clip (file), counted per clip at 0 or more;
* ``audio_twice_s``: audio in the recording twice (a restart: what the dead process had stored
  but not yet acknowledged is sent again);
* ``recovery_s``: drop: from the reconnect to the first ``stt_ack`` that covers all the audio
  captured until then (back online and caught up); restart: the same, from the kill; engine:
  from the kill to the first message of the fresh engine; worker: from the kill to the job
  running again on the new worker; also
  ``extra_s`` for the worker: how much later than the undisturbed job it was done;
* ``wer`` of each run.

Usage::

    python bench/fault_bench.py [--limit 3] [--drop-s 5] [--faults drop_resume,engine_kill,...] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.batch_bench import build_long_wav  # noqa: E402
from bench.engine_bench import DEFAULT_MANIFEST  # noqa: E402
from bench.stream_bench import ClipPlan, api, load_clips, spawn_server, wait_for_server  # noqa: E402
from tests.sessions_app.celery_worker import start_worker  # noqa: E402
from tests.speech import deleted_words, word_error_rate  # noqa: E402

RATE = 16000
FRAME = int(0.05 * RATE)  # samples per frame
ENGINE_MESSAGES = {
    "stt_state", "stt_vad_start", "stt_vad_stop", "stt_recording_start", "stt_recording_stop",
    "stt_update", "stt_stabilized", "stt_final", "stt_revised",
}  # fmt: skip
LIVE_FAULTS = ("control", "drop_resume", "engine_kill", "daphne_restart")
RECONNECT_EVERY_S = 0.5  # the live page's first retry delay


class Server:
    """The spawned daphne; :meth:`restart` SIGKILLs it with its engines and starts it again on its port."""

    def __init__(self, process, base_http: str, var_dir: Path) -> None:
        self.process, self.base_http, self.var_dir = process, base_http, var_dir

    @property
    def pid(self) -> int:
        return self.process.pid

    def restart(self) -> None:
        tree = [psutil.Process(self.pid), *psutil.Process(self.pid).children(recursive=True)]
        for process in tree:  # (a machine or container that dies takes the engines with it)
            with contextlib.suppress(psutil.Error):
                process.kill()
        self.process.wait(timeout=30)
        env = {
            **os.environ,
            "VAR_DIR": str(self.var_dir),
            "DJANGO_SETTINGS_MODULE": "transcribe_site.settings",
            "STT_MAX_STREAMS_PER_USER": "1",
            "LOG_LEVEL": "WARNING",
            "STT_WARM_ENGINES": "1",
            "STT_MAX_STREAMS_PER_SERVER": "8",
        }  # fmt: skip
        # (as stream_bench.spawn_server(1, None) starts it)
        env.pop("DATABASE_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "--application-close-timeout", "60", "-b", "127.0.0.1",
             "-p", self.base_http.rsplit(":", 1)[1], "transcribe_site.asgi:application"],
            cwd=ROOT, env=env, stdout=(self.var_dir / "daphne-restarted.log").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


@dataclass
class LiveRun:
    clip: ClipPlan
    fault: str
    finals: dict[int, dict] = field(default_factory=dict)  # utterance_id -> stt_final
    errors: list[dict] = field(default_factory=list)
    acked: int = 0  # samples, the last stt_ack
    stream_id: str | None = None
    recovery_s: float | None = None
    audio_lost_s: float = 0.0
    audio_twice_s: float = 0.0  # in the recording twice (after a restart: what the dead server had not acked)
    recorded_samples: int = 0
    ack_base: int = 0  # samples of the clip before the stream that the acks count (a fresh stream after a restart)

    @property
    def text(self) -> str:
        return " ".join(f["text"] for f in sorted(self.finals.values(), key=lambda f: f["start"]))


def _connect(base_ws: str, session_id: str, token: str):
    return websockets.connect(
        f"{base_ws}/ws/sessions/{session_id}/stream/", additional_headers={"Authorization": f"Token {token}"},
        max_size=None,
    )  # fmt: skip


def _reset(ws) -> None:
    """Drop the connection as a network does: a TCP reset, no close frame."""
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()


def _engine_processes(server_pid: int) -> list[psutil.Process]:
    children = psutil.Process(server_pid).children(recursive=True)
    return [p for p in children if "spawn_main" in " ".join(p.cmdline())]


def _busiest(engines: list[psutil.Process], window_s: float = 0.5) -> psutil.Process:
    """The engine that used the most CPU in the last ``window_s`` (the one decoding the stream)."""
    before = {}
    for engine in engines:
        with contextlib.suppress(psutil.Error):
            before[engine.pid] = sum(engine.cpu_times()[:2])
    time.sleep(window_s)
    used = {}
    for engine in engines:
        with contextlib.suppress(psutil.Error):
            used[engine.pid] = sum(engine.cpu_times()[:2]) - before.get(engine.pid, 0.0)
    return max((e for e in engines if e.pid in used), key=lambda e: used[e.pid])


async def live_run(base_http: str, token: str, clip: ClipPlan, fault: str, server: Server, drop_s: float) -> LiveRun:
    """Stream one clip into a new session at real-time pace, with ``fault`` in the middle of its speech."""
    run = LiveRun(clip, fault)
    base_ws = base_http.replace("http", "ws", 1)
    session = await asyncio.to_thread(api, base_http, token, "/api/sessions/", {"title": clip.name, "language": "en"})
    pcm, total = clip.pcm, len(clip.pcm) // 2
    cut = int((clip.onset_s + 0.5 * (clip.speech_end_s - clip.onset_s)) * RATE)
    state = {"crashed_at": None, "killed_at": None, "reconnected_at": None, "catch_up": None, "stopping": False}
    idle = asyncio.Event()

    async def receive(ws) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                now = time.monotonic()
                message = json.loads(raw)
                kind = message["type"]
                if kind == "stt_ack" and message.get("stream_id") == run.stream_id:
                    run.acked = max(run.acked, run.ack_base + message["samples"])
                    if state["catch_up"] is not None and run.acked >= state["catch_up"] and run.recovery_s is None:
                        run.recovery_s = now - state["reconnected_at"]
                elif kind == "stt_final":
                    run.finals[message["utterance_id"]] = message
                elif kind == "stt_error":
                    run.errors.append(message)
                    if message.get("code") == "ENGINE_CRASHED":
                        state["crashed_at"] = now
                if (
                    kind in ENGINE_MESSAGES
                    and state["crashed_at"]
                    and run.recovery_s is None
                    and fault == "engine_kill"
                ):
                    run.recovery_s = now - state["killed_at"]
                if kind == "stt_state" and message.get("state") == "idle" and state["stopping"]:
                    idle.set()
                    return

    async def start(ws, resume: dict | None) -> dict:
        message = {"type": "stt_start", "language": "en", "sample_rate": RATE}
        if resume:
            message["resume"] = resume
        await ws.send(json.dumps(message))
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 300))
            if reply["type"] == "stt_listening":
                return reply
            if reply["type"] == "stt_error":
                run.errors.append(reply)

    engines_before = _engine_processes(server.pid)  # (before the stream: not the spare it makes the pool load)
    ws = await _connect(base_ws, session["id"], token)
    run.stream_id = (await start(ws, None))["stream_id"]
    receiver = asyncio.create_task(receive(ws))
    began = time.monotonic()  # the microphone's clock: sample n is captured at began + n / RATE
    position, faulted = 0, False
    while position < total:
        end = min(position + FRAME, total)
        delay = began + end / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if not faulted and end >= cut and fault != "control":
            faulted = True
            if fault == "drop_resume":
                _reset(ws)
                with contextlib.suppress(Exception):
                    await receiver
                await asyncio.sleep(drop_s)  # offline; the microphone goes on (its audio is kept)
                state["reconnected_at"] = time.monotonic()
                state["catch_up"] = min(int((time.monotonic() - began) * RATE), total)
                ws = await _connect(base_ws, session["id"], token)
                listening = await start(ws, {"stream_id": run.stream_id, "samples": run.acked})
                if not listening.get("resumed"):
                    run.errors.append({"type": "bench", "code": "NOT_RESUMED"})
                run.stream_id = listening["stream_id"]
                receiver = asyncio.create_task(receive(ws))
                position = run.acked  # send again all the server did not acknowledge
                continue
            if fault == "daphne_restart":
                await asyncio.to_thread(server.restart)
                state["reconnected_at"] = restarted = time.monotonic()  # (recovery counts from the kill)
                with contextlib.suppress(Exception):
                    await receiver
                while True:  # the page tries again until the new process answers
                    try:
                        ws = await _connect(base_ws, session["id"], token)
                        break
                    except (OSError, websockets.InvalidHandshake):
                        if time.monotonic() - restarted > 120:
                            raise
                        await asyncio.sleep(RECONNECT_EVERY_S)
                state["catch_up"] = min(int((time.monotonic() - began) * RATE), total)
                listening = await start(ws, {"stream_id": run.stream_id, "samples": run.acked})
                # (BAD_RESUME: the stream was in the dead process; a fresh one takes the audio from the last ack)
                run.stream_id, run.ack_base = listening["stream_id"], run.acked
                receiver = asyncio.create_task(receive(ws))
                position = run.acked
                continue
            if fault == "engine_kill":
                engine = await asyncio.to_thread(_busiest, [e for e in engines_before if e.is_running()])
                state["killed_at"] = time.monotonic()
                os.kill(engine.pid, signal.SIGKILL)
        await ws.send(pcm[position * 2 : end * 2])
        position = end
    state["stopping"] = True
    await ws.send(json.dumps({"type": "stt_stop"}))
    try:
        await asyncio.wait_for(idle.wait(), 300)
    except TimeoutError:
        run.errors.append({"type": "bench", "code": "NO_IDLE"})
    receiver.cancel()
    await ws.close()
    # The recording's size (the connection's clean-up has closed it by the time the API answers).
    for _ in range(100):
        detail = await asyncio.to_thread(api, base_http, token, f"/api/sessions/{session['id']}/")
        recordings = detail.get("recordings") or []
        if recordings:
            run.recorded_samples = (recordings[0]["bytes"] - 44) // 2
            if run.recorded_samples >= total:
                break
        await asyncio.sleep(0.1)
    run.audio_lost_s = max(total - run.recorded_samples, 0) / RATE
    run.audio_twice_s = max(run.recorded_samples - total, 0) / RATE
    return run


@dataclass
class JobRun:
    fault: str
    text: str = ""
    status: str = ""
    audio_s: float = 0.0
    done_s: float | None = None  # from the upload to done
    recovery_s: float | None = None
    errors: list[str] = field(default_factory=list)


def job_run(base_http: str, token: str, path: Path, kill_at: float, start_new_worker, worker) -> tuple[JobRun, object]:
    """Upload ``path`` as a batch job; with a ``kill_at`` fraction, SIGKILL the worker there and start another."""
    run = JobRun("worker_kill" if kill_at else "control")
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode() + path.read_bytes() + (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="language"\r\n\r\nen\r\n--{boundary}--\r\n'
    ).encode()  # fmt: skip
    request = urllib.request.Request(
        base_http + "/api/jobs/", data=body,
        headers={"Authorization": f"Token {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip
    uploaded = time.monotonic()
    with urllib.request.urlopen(request, timeout=120) as response:
        job = json.loads(response.read())
    killed_at = None
    deadline = uploaded + 1800
    while time.monotonic() < deadline:
        job = api(base_http, token, f"/api/jobs/{job['id']}/")
        if kill_at and killed_at is None and job["status"] == "running" and job["progress"] >= kill_at * 100:
            os.kill(worker.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            worker.process.wait(timeout=30)
            worker = start_new_worker()
        # (until the new worker has queued it again, the job shows what the dead one left: running)
        if killed_at and run.recovery_s is None and job["status"] == "running" and job["error_code"] == "WORKER_LOST":
            run.recovery_s = time.monotonic() - killed_at
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    run.status = job["status"]
    if job["status"] == "done":
        run.done_s = time.monotonic() - uploaded
        run.audio_s = job["audio_duration_s"] or 0.0
        transcript = urllib.request.Request(
            base_http + f"/api/jobs/{job['id']}/transcript/?format=txt", headers={"Authorization": f"Token {token}"}
        )
        with urllib.request.urlopen(transcript, timeout=60) as response:
            run.text = response.read().decode()
    else:
        run.errors.append(f"{job['status']} {job.get('error_code')}")
    if kill_at and killed_at is None:
        run.errors.append("the job finished before the kill: use a longer --job-minutes")
    return run, worker


def _median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def summarize(live: dict[str, list[LiveRun]], jobs: dict[str, JobRun], job_reference: str, job_length_s: float) -> dict:
    control = {run.clip.name: run for run in live["control"]}
    summary: dict = {"per_clip": [
        {
            "clip": r.clip.name, "fault": r.fault, "audio_lost_s": r.audio_lost_s, "audio_twice_s": r.audio_twice_s,
            "recovery_s": r.recovery_s, "deleted_words": deleted_words(r.clip.reference, r.text), "text": r.text,
            "reference": r.clip.reference,
        }
        for runs in live.values() for r in runs
    ]}  # fmt: skip
    for fault in [f for f in live if f != "control"]:
        runs = live[fault]
        lost = [
            max(deleted_words(r.clip.reference, r.text) - deleted_words(r.clip.reference, control[r.clip.name].text), 0)
            for r in runs
        ]
        summary[fault] = {
            "clips": len(runs),
            "audio_lost_s": round(sum(r.audio_lost_s for r in runs), 3),
            "audio_twice_s": round(sum(r.audio_twice_s for r in runs), 3),
            "words_lost": sum(lost),
            "recovery_s_p50": _median([r.recovery_s for r in runs]),
            "recovery_s_max": max((r.recovery_s for r in runs if r.recovery_s is not None), default=None),
            "wer": word_error_rate([r.clip.reference for r in runs], [r.text for r in runs]),
            "control_wer": word_error_rate([r.clip.reference for r in runs], [control[r.clip.name].text for r in runs]),
            "errors": [e.get("code") for r in runs for e in r.errors],
        }
    if "worker_kill" not in jobs:
        return summary
    killed, undisturbed = jobs["worker_kill"], jobs["control"]
    summary["worker_kill"] = {
        "audio_s": round(job_length_s, 1),
        "audio_lost_s": round(job_length_s - killed.audio_s, 3) if killed.status == "done" else round(job_length_s, 1),
        "words_lost": max(
            deleted_words(job_reference, killed.text) - deleted_words(job_reference, undisturbed.text), 0
        ),
        "recovery_s": killed.recovery_s,
        "extra_s": (killed.done_s - undisturbed.done_s) if killed.done_s and undisturbed.done_s else None,
        "wer": word_error_rate([job_reference], [killed.text]),
        "control_wer": word_error_rate([job_reference], [undisturbed.text]),
        "errors": killed.errors + undisturbed.errors,
    }
    return summary


async def run_live(base_http: str, token: str, clips: list[ClipPlan], server: Server, drop_s: float,
                   faults: tuple[str, ...]):  # fmt: skip
    live: dict[str, list[LiveRun]] = {fault: [] for fault in faults}
    for clip in clips:
        for fault in faults:
            run = await live_run(base_http, token, clip, fault, server, drop_s)
            live[fault].append(run)
            print(
                f"  {clip.name} {fault}: lost {run.audio_lost_s:.3f} s, recovery {run.recovery_s}, "
                f"{len(run.finals)} finals, errors {[e.get('code') for e in run.errors]}",
                flush=True,
            )
            # The pool replaces a killed engine (a restarted server loads its warm one) before the next run.
            await asyncio.sleep(12.0 if fault == "daphne_restart" else 3.0)
    return live


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--limit", type=int, default=3, help="clips (0: all that have enough speech)")
    parser.add_argument("--min-speech-s", type=float, default=6.0)
    parser.add_argument("--drop-s", type=float, default=5.0, help="how long the client stays offline")
    parser.add_argument("--job-minutes", type=float, default=2.0, help="length of the batch job's file")
    parser.add_argument("--kill-at", type=float, default=0.3, help="the job's progress when its worker is killed")
    parser.add_argument(
        "--faults", default="drop_resume,engine_kill,daphne_restart,worker_kill",
        help="which faults, comma-separated (an undisturbed control run always comes with them)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = set(faults) - {*LIVE_FAULTS, "worker_kill"} - {"control"}
    if unknown:
        raise SystemExit(f"unknown faults: {sorted(unknown)}")
    live_faults = ("control", *[f for f in LIVE_FAULTS if f in faults and f != "control"])
    clips = [c for c in load_clips(args.manifest) if c.speech_end_s - c.onset_s >= args.min_speech_s]
    if args.limit:
        clips = clips[: args.limit]
    if not clips:
        raise SystemExit(f"no clip in {args.manifest} has {args.min_speech_s} s of speech")
    queue = f"fault-bench-{uuid.uuid4().hex[:8]}"
    os.environ.update(BATCH_QUEUE=queue, STT_SESSION_AUTO_END_S="0")
    os.environ.pop("REDIS_URL", None)
    process, base_http, tokens, var_dir = spawn_server(1, None)
    server = Server(process, base_http, var_dir)
    workers = []

    def start_new_worker():
        worker = start_worker(
            {"ENGINE": "django.db.backends.sqlite3", "NAME": str(var_dir / "db.sqlite3")},
            var_dir / "media",
            var_dir / f"worker-{len(workers)}.log",
            queue=queue,
            extra_env={"VAR_DIR": str(var_dir), "LOG_LEVEL": "INFO"},
        )
        workers.append(worker)
        return worker

    try:
        wait_for_server(base_http, tokens[0])
        time.sleep(10.0)  # the server's warm engine loads
        live = asyncio.run(run_live(base_http, tokens[0], clips, server, args.drop_s, live_faults))
        jobs: dict[str, JobRun] = {}
        job_length_s, job_reference = 0.0, ""
        if "worker_kill" in faults:
            job_file = var_dir / "job.wav"
            job_length_s, job_reference = build_long_wav(job_file, args.job_minutes)
            worker = start_new_worker()
            jobs["control"], worker = job_run(base_http, tokens[0], job_file, 0.0, start_new_worker, worker)
            jobs["worker_kill"], worker = job_run(
                base_http, tokens[0], job_file, args.kill_at, start_new_worker, worker
            )
            print(f"  worker_kill: recovery {jobs['worker_kill'].recovery_s}, {jobs['worker_kill'].status}", flush=True)
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"API error {exc.code}: {exc.read()[:500]!r}") from exc
    finally:
        server.stop()
        for worker in workers:
            worker.stop()
    summary = summarize(live, jobs, job_reference, job_length_s)
    summary["options"] = {"clips": len(clips), "drop_s": args.drop_s, "job_minutes": args.job_minutes,
                          "kill_at": args.kill_at, "faults": faults}  # fmt: skip
    print(f"{'fault':14s} {'audio lost s':>12s} {'words lost':>10s} {'recovery s':>10s} {'wer':>6s} {'ctrl wer':>8s}")
    for fault in [f for f in (*LIVE_FAULTS, "worker_kill") if f in summary]:
        row = summary[fault]
        recovery = row.get("recovery_s_p50", row.get("recovery_s"))
        print(
            f"{fault:14s} {row['audio_lost_s']:12.3f} {row['words_lost']:10d} "
            f"{recovery if recovery is None else round(recovery, 2)!s:>10s} {row['wer']:6.3f} {row['control_wer']:8.3f}"
        )
        if row["errors"]:
            print(f"  {fault} errors: {row['errors']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
