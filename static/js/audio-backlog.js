// Microphone audio that the server has not acknowledged yet (stt_ack), kept so that it can be sent
// again after a lost connection, and the pace at which it may be sent (the server's RATE_LIMITED
// allowance). Positions are samples of the server's stream at the client's rate, counted from the
// stream's stt_start, as the server counts `samples`. Plain ES module, no DOM.

export class AudioBacklog {
  /**
   * @param {{sampleRate?: number, maxSeconds?: number}} options
   *   maxSeconds: the most audio kept; beyond it the oldest is dropped and counted in `dropped`.
   */
  constructor({ sampleRate = 16000, maxSeconds = 60 } = {}) {
    this.sampleRate = sampleRate;
    this.maxSamples = Math.round(maxSeconds * sampleRate);
    this.chunks = []; // {start, pcm: Int16Array}, oldest first, contiguous
    this.start = 0; // stream position of the oldest sample held: everything before it is acknowledged
    this.held = 0; // samples held (not acknowledged)
    this.captured = 0; // samples ever added
    this.dropped = 0; // samples dropped unacknowledged, over maxSamples
    this.gap = false; // audio was dropped since the stream began: it cannot be continued without a hole
    this.keepAll = false; // drop nothing for now (a resume from `start` is on its way)
  }

  /** Stream position after the newest sample held. */
  get end() {
    return this.start + this.held;
  }

  get heldSeconds() {
    return this.held / this.sampleRate;
  }

  /** Keep `pcm` (an ArrayBuffer or Int16Array of PCM16); returns the kept samples. */
  add(pcm) {
    const samples = pcm instanceof Int16Array ? pcm : new Int16Array(pcm);
    this.chunks.push({ start: this.end, pcm: samples });
    this.held += samples.length;
    this.captured += samples.length;
    if (this.held > this.maxSamples && !this.keepAll) {
      const over = this.held - this.maxSamples;
      this.dropFront(over);
      this.dropped += over;
      this.gap = true;
    }
    return samples;
  }

  /** The server holds the stream's first `samples`: forget them. */
  acknowledge(samples) {
    if (samples > this.start) this.dropFront(Math.min(samples, this.end) - this.start);
  }

  /** What is held becomes the beginning of a fresh stream (the server's count restarts at 0). */
  startFresh() {
    let position = 0;
    for (const chunk of this.chunks) {
      chunk.start = position;
      position += chunk.pcm.length;
    }
    this.start = 0;
    this.gap = false;
  }

  /** Forget everything held (the stream is over). */
  clear() {
    this.chunks = [];
    this.start = this.end;
    this.held = 0;
  }

  /** The held audio from stream position `position` on, as {start, pcm} pieces, oldest first. */
  *from(position) {
    for (const chunk of this.chunks) {
      const chunkEnd = chunk.start + chunk.pcm.length;
      if (chunkEnd <= position) continue;
      if (chunk.start >= position) yield chunk;
      else yield { start: position, pcm: chunk.pcm.subarray(position - chunk.start) };
    }
  }

  dropFront(count) {
    let left = count;
    while (left > 0 && this.chunks.length) {
      const first = this.chunks[0];
      if (first.pcm.length <= left) {
        this.chunks.shift();
        left -= first.pcm.length;
        this.start += first.pcm.length;
        this.held -= first.pcm.length;
      } else {
        first.pcm = first.pcm.subarray(left);
        first.start += left;
        this.start += left;
        this.held -= left;
        left = 0;
      }
    }
  }
}

/**
 * How much audio a stream may be sent so far without the server dropping it as faster than real
 * time (STT_AUDIO_BURST_S ahead, then STT_MAX_AUDIO_SPEED times real time, counted from the
 * stream's start), with a margin: our clock starts after the server's, so we are never ahead of it.
 */
export class SendPacer {
  /** @param {{sampleRate?: number, burstS?: number, speed?: number}} options the server's allowance */
  constructor({ sampleRate = 16000, burstS = 5, speed = 2 } = {}) {
    this.sampleRate = sampleRate;
    this.burst = 0.8 * burstS * sampleRate;
    this.perMs = (0.9 * speed * sampleRate) / 1000;
    this.begin(0);
  }

  /** A stream (fresh or resumed) began at `nowMs`; nothing was sent on it yet. */
  begin(nowMs) {
    this.startedAt = nowMs;
    this.sent = 0;
  }

  /** Samples that may be sent at `nowMs`. */
  room(nowMs) {
    return this.burst + this.perMs * (nowMs - this.startedAt) - this.sent;
  }

  used(samples) {
    this.sent += samples;
  }
}
