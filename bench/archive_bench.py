"""Meeting-record benchmark: live finals, refined turns and the post-session pass, on the same clips.

Each clip of a manifest is streamed over a real WebSocket at real-time pace into its own session
(``bench/stream_bench.py``'s speaker), while a caption viewer of that session records every
``stt_final`` and ``stt_revised`` (``replaces``: the ids it supersedes, ``utterances``: the new
rows). Then the session is ended (``POST /api/sessions/<id>/end/``), the bench waits for
``transcript_state == "final"`` and scores the JSON export's ``segments``.

Reported (WER after Whisper's English normalizer, pooled over clips):
``live_wer`` (the live finals), ``refined_wer`` (the current transcript before the end: live finals
with the revisions applied; equal to ``live_wer`` when no revision came), ``archive_wer`` (the
export after the post-session pass), ``offline_wer`` (faster-whisper base, beam 5, on the raw clips),
``revision_after_turn_end_p50`` (seconds from the end of the speech of a revised turn's last live
final, on the stream clock, to the arrival of its ``stt_revised``), ``archive_ready_s_p50`` (from
the end request to the transcript state ``final``), ``clips``.

It starts its own server (daphne, embedded mode in a temporary folder, as stream_bench does) and a
real Celery worker on the same database and file broker (``tests/sessions_app/celery_worker.py``).

Usage::

    python bench/archive_bench.py [--limit N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import urllib.error
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine_bench import DEFAULT_MANIFEST  # noqa: E402
from bench.stream_bench import (  # noqa: E402
    ClipPlan,
    api,
    load_clips,
    percentile,
    run_speaker,
    spawn_server,
    wait_for_server,
)
from tests.sessions_app.celery_worker import start_worker  # noqa: E402
from tests.speech import word_error_rate  # noqa: E402

QUIET_S = 2.0  # the session's messages have settled when none came for this long
SETTLE_MAX_S = 30.0
ARCHIVE_TIMEOUT_S = 300.0


@dataclass
class SessionRecord:
    clip: ClipPlan
    finals: list[tuple[float, dict]] = field(default_factory=list)  # (arrival, message), seen by the viewer
    revisions: list[tuple[float, dict]] = field(default_factory=list)
    last_message_at: float = 0.0
    sent_at: list[tuple[float, float]] = field(default_factory=list)  # the speaker's (stream second, wall)
    refined_text: str = ""
    archive_text: str = ""
    archive_ready_s: float | None = None
    state: str = ""
    errors: list[dict] = field(default_factory=list)

    def wall_time_of(self, stream_s: float) -> float:
        for second, wall in self.sent_at:
            if second >= stream_s:
                return wall
        return self.sent_at[-1][1]


async def watch_session(
    base_ws: str, session: dict, record: SessionRecord, done: asyncio.Event, ready: asyncio.Event
) -> None:
    """A caption viewer of the session: keeps every final and revision with its arrival time."""
    url = f"{base_ws}/ws/sessions/{session['id']}/captions/?token={session['share_token']}"
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()  # stt_viewing
        record.last_message_at = time.monotonic()
        ready.set()
        while not done.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.25)
            except TimeoutError:
                continue
            except websockets.ConnectionClosed:
                return
            now = time.monotonic()
            message = json.loads(raw)
            record.last_message_at = now
            if message["type"] == "stt_final":
                record.finals.append((now, message))
            elif message["type"] == "stt_revised":
                record.revisions.append((now, message))


def current_text(record: SessionRecord, before: float) -> str:
    """The transcript as a page shows it at ``before``: the live finals with the revisions applied."""
    rows: dict[int, dict] = {}
    events = [(wall, "final", m) for wall, m in record.finals] + [(wall, "revised", m) for wall, m in record.revisions]
    for wall, kind, message in sorted(events, key=lambda e: e[0]):
        if wall > before:
            break
        if kind == "final":
            rows[message["utterance_id"]] = message
        else:
            for replaced in message.get("replaces") or []:
                rows.pop(replaced, None)
            for utterance in message.get("utterances") or []:
                rows[utterance["utterance_id"]] = utterance
    return " ".join(m["text"] for m in sorted(rows.values(), key=lambda m: (m["start"], m.get("sequence", 0))))


def revision_delays(record: SessionRecord) -> list[float]:
    """For each revision: its arrival minus when the speech of the last final it replaced ended."""
    ends = {m["utterance_id"]: m["end"] for _, m in record.finals}
    delays = []
    for wall, message in sorted(record.revisions, key=lambda r: r[0]):
        replaced = [ends[i] for i in message.get("replaces") or [] if i in ends]
        if replaced and record.sent_at:
            delays.append(wall - record.wall_time_of(max(replaced)))
        for utterance in message.get("utterances") or []:
            ends[utterance["utterance_id"]] = utterance["end"]
    return delays


async def run_clip(base_http: str, token: str, clip: ClipPlan) -> SessionRecord:
    record = SessionRecord(clip)
    base_ws = base_http.replace("http", "ws", 1)
    session = await asyncio.to_thread(api, base_http, token, "/api/sessions/", {"title": clip.name, "language": "en"})
    done = asyncio.Event()
    viewer_in = asyncio.Event()
    viewer = asyncio.create_task(watch_session(base_ws, session, record, done, viewer_in))
    await asyncio.wait_for(viewer_in.wait(), 30)  # the viewer is in before the first frame
    result = await run_speaker(base_ws, session["id"], token, [clip])
    record.sent_at, record.errors = result.sent_at, result.errors
    # Revisions forced by the stop come after the speaker's idle: wait until the session is quiet.
    deadline = time.monotonic() + SETTLE_MAX_S
    while True:
        now = time.monotonic()
        if now - record.last_message_at >= QUIET_S or now >= deadline:
            break
        await asyncio.sleep(0.2)
    ended_at = time.monotonic()
    record.refined_text = current_text(record, ended_at)
    await asyncio.to_thread(api, base_http, token, f"/api/sessions/{session['id']}/end/", {})
    deadline = ended_at + ARCHIVE_TIMEOUT_S
    while time.monotonic() < deadline:
        state = await asyncio.to_thread(api, base_http, token, f"/api/sessions/{session['id']}/")
        record.state = state["transcript_state"]
        if record.state in ("final", "failed"):
            break
        await asyncio.sleep(0.25)
    if record.state == "final":
        record.archive_ready_s = time.monotonic() - ended_at
    else:
        record.errors.append(
            {"type": "bench", "code": state.get("refine_error_code") or "NOT_FINAL", "state": record.state}
        )
    export = await asyncio.to_thread(api, base_http, token, f"/api/sessions/{session['id']}/export/?format=json")
    record.archive_text = " ".join(segment["text"] for segment in export["segments"])
    done.set()
    with contextlib.suppress(Exception):
        await viewer
    print(
        f"  {clip.name}: {len(record.finals)} finals, {len(record.revisions)} revisions, "
        f"archive {record.state} in {record.archive_ready_s or 0:.1f} s",
        flush=True,
    )
    return record


def offline_texts(clips: list[ClipPlan], manifest: Path) -> list[str]:
    """faster-whisper base, beam 5, on each raw clip (after the server and worker have stopped)."""
    from stt_engine.batch import load_model, transcribe_file

    model = load_model("base")
    texts = []
    for clip in clips:
        result = transcribe_file(manifest / clip.name, beam_size=5, language="en", model=model)
        texts.append(" ".join(segment.text for segment in result.segments))
    return texts


async def run_all(base_http: str, token: str, clips: list[ClipPlan]) -> list[SessionRecord]:
    return [await run_clip(base_http, token, clip) for clip in clips]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--limit", type=int, default=0, help="the first N clips (0: all)")
    parser.add_argument("--redis", help="use this Redis for the channel layer (and stt_transcript_state)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    clips = load_clips(args.manifest)
    if args.limit:
        clips = clips[: args.limit]
    # The server and the worker share the spawned server's folder: its SQLite file, media and file
    # broker; a private queue keeps a development worker from taking the bench's passes.
    queue = f"archive-bench-{uuid.uuid4().hex[:8]}"
    os.environ.update(BATCH_QUEUE=queue, STT_SESSION_AUTO_END_S="0")
    os.environ.pop("REDIS_URL", None)  # (the worker's broker must be the server's: files, or --redis)
    server, base_http, tokens, var_dir = spawn_server(1, args.redis)
    worker = None
    try:
        worker = start_worker(
            {"ENGINE": "django.db.backends.sqlite3", "NAME": str(var_dir / "db.sqlite3")},
            var_dir / "media",
            var_dir / "worker.log",
            queue=queue,
            extra_env={
                "VAR_DIR": str(var_dir),
                "LOG_LEVEL": "WARNING",
                **({"REDIS_URL": args.redis} if args.redis else {}),
            },
        )
        wait_for_server(base_http, tokens[0])
        time.sleep(10.0)  # the server's warm engine loads
        records = asyncio.run(run_all(base_http, tokens[0], clips))
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"API error {exc.code}: {exc.read()[:500]!r}") from exc
    finally:
        server.terminate()
        server.wait(timeout=60)
        if worker is not None:
            worker.stop()
    references = [clip.reference for clip in clips]
    live = [current_text(SessionRecord(r.clip, finals=r.finals), float("inf")) for r in records]
    offline = offline_texts(clips, args.manifest)
    summary = {
        "live_wer": word_error_rate(references, live),
        "refined_wer": word_error_rate(references, [r.refined_text for r in records]),
        "archive_wer": word_error_rate(references, [r.archive_text for r in records]),
        "offline_wer": word_error_rate(references, offline),
        "revision_after_turn_end_p50": percentile([d for r in records for d in revision_delays(r)], 50),
        "revisions": sum(len(r.revisions) for r in records),
        "archive_ready_s_p50": percentile([r.archive_ready_s for r in records if r.archive_ready_s is not None], 50),
        "archives_not_final": sum(r.state != "final" for r in records),
        "clips": len(records),
        "errors": [e for r in records for e in r.errors],
        "per_clip": [
            {
                "clip": r.clip.name,
                "reference": r.clip.reference,
                "live": text,
                "refined": r.refined_text,
                "archive": r.archive_text,
                "offline": offline_text,
                "revisions": len(r.revisions),
                "archive_ready_s": r.archive_ready_s,
            }
            for r, text, offline_text in zip(records, live, offline, strict=True)
        ],
    }
    for key, value in summary.items():
        if key in ("errors", "per_clip"):
            continue
        print(f"{key:30s} {value:.3f}" if isinstance(value, float) else f"{key:30s} {value}")
    if summary["errors"]:
        print(f"errors: {summary['errors'][:5]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
