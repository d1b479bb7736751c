"""Batch throughput benchmark: end-to-end real-time factor and worker peak memory.

Builds a long WAV (``--minutes``, default 10) by concatenating the dev clips (with 0.6 s
pauses) until it is long enough, uploads it through the REST API and polls until the job is
done, sampling the worker's resident memory with psutil all along.

Mode: in-process. The API is driven with DRF's test client inside this process, against a
fresh SQLite database and file broker in a temporary folder (or ``--database-url``), and the
job runs in a REAL Celery worker subprocess (``--pool=solo``) started by this script, whose
pid is sampled. No server has to be running.

    .venv/bin/python bench/batch_bench.py --minutes 10 --json var/bench/batch.json
    .venv/bin/python bench/batch_bench.py --minutes 60 --beam-size 1   # the memory check

``--json PATH`` writes audio_s, rtf (wall time from upload to done / audio length),
processing_rtf (worker time only), worker_peak_rss_mb, worker_idle_rss_mb, wer and the options.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAUSE_S = 0.6
RATE = 16000


def build_long_wav(path: Path, minutes: float) -> tuple[float, str]:
    """Write a WAV of at least ``minutes`` of dev speech; return its length and reference text."""
    from faster_whisper import decode_audio

    from tests.speech import dev_clips

    clips = dev_clips()
    pause = np.zeros(int(PAUSE_S * RATE), dtype=np.int16)
    total, texts = 0, []
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        while total < minutes * 60 * RATE:
            for clip in clips:
                samples = (np.clip(decode_audio(str(clip.path), sampling_rate=RATE), -1, 1) * 32767).astype(np.int16)
                out.writeframes(samples.tobytes() + pause.tobytes())
                total += len(samples) + len(pause)
                texts.append(clip.text)
                if total >= minutes * 60 * RATE:
                    break
    return total / RATE, " ".join(texts)


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = 0
        self.stop_event = threading.Event()

    def rss(self) -> int:
        processes = [self.process, *self.process.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes)

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.peak = max(self.peak, self.rss())
            except Exception:  # the worker may be exiting
                return
            time.sleep(self.interval_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", default="base")
    parser.add_argument("--beam-size", type=int, default=1, help="the server default (STT_BATCH_BEAM_SIZE)")
    parser.add_argument("--cpu-threads", type=int, default=0, help="0: CTranslate2 picks (all cores)")
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file in a temp folder")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--timeout-s", type=float, default=3 * 3600)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (WAV, database, log)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    os.environ["VAR_DIR"] = str(work / "var")
    os.environ["MEDIA_ROOT"] = str(work / "media")
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{work / 'bench.sqlite3'}"
    os.environ["STT_BATCH_BEAM_SIZE"] = str(args.beam_size)
    os.environ["STT_BATCH_CPU_THREADS"] = str(args.cpu_threads)
    os.environ["UPLOAD_THROTTLE_RATE"] = "1000/hour"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "transcribe_site.settings")
    (work / "var").mkdir()

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from rest_framework.test import APIClient

    from tests.sessions_app.celery_worker import start_worker
    from tests.speech import word_error_rate

    call_command("migrate", verbosity=0)
    wav = work / "long.wav"
    audio_s, reference = build_long_wav(wav, args.minutes)
    print(f"built {wav} ({audio_s / 60:.1f} min, {wav.stat().st_size / 1e6:.0f} MB)", flush=True)

    worker = start_worker(dict(connection.settings_dict), Path(settings.MEDIA_ROOT), work / "worker.log")
    settings.BATCH_QUEUE = worker.queue
    sampler = RssSampler(worker.pid)
    idle_rss = sampler.rss()
    sampler.start()
    user, _ = get_user_model().objects.get_or_create(username="batch-bench")
    api = APIClient()
    api.force_authenticate(user)
    try:
        started = time.monotonic()
        with wav.open("rb") as handle:
            response = api.post("/api/jobs/", {"file": handle, "model": args.model}, format="multipart")
        if response.status_code != 202:
            print(f"upload refused: {response.status_code} {response.content[:500]!r}", file=sys.stderr)
            return 1
        job_id = response.json()["id"]
        last = -1
        while time.monotonic() - started < args.timeout_s:
            body = api.get(f"/api/jobs/{job_id}/").json()
            if body["progress"] != last:
                last = body["progress"]
                print(f"{time.monotonic() - started:7.1f} s  {body['status']:8s} {last:3d}%", flush=True)
            if body["status"] in ("done", "failed"):
                break
            time.sleep(1.0)
        wall_s = time.monotonic() - started
        if body["status"] != "done":
            print(f"job ended as {body['status']}: {body.get('error_code')} {body.get('error_message')}")
            print(worker.log()[-3000:])
            return 1
        from sessions_app.models import BatchJob

        job = BatchJob.objects.get(pk=job_id)
        processing_s = (job.finished_at - job.started_at).total_seconds()
        hypothesis = api.get(f"/api/jobs/{job_id}/transcript/", {"format": "txt"}).content.decode()
    finally:
        sampler.stop_event.set()
        sampler.join(timeout=2)
        worker.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "audio_s": round(audio_s, 1),
        "rtf": round(wall_s / audio_s, 4),
        "processing_rtf": round(processing_s / audio_s, 4),
        "worker_peak_rss_mb": round(sampler.peak / 2**20, 1),
        "worker_idle_rss_mb": round(idle_rss / 2**20, 1),
        "wer": round(word_error_rate([reference], [hypothesis]), 4),
        "model": args.model,
        "beam_size": args.beam_size,
        "cpu_threads": args.cpu_threads,
        "cpu_count": os.cpu_count(),
        "mode": "in-process API client + real Celery worker subprocess (solo pool)",
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
