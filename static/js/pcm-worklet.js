// AudioWorklet: microphone audio at the device rate -> 16 kHz mono PCM16 frames for the server.
// Resampling is band-limited (see resampler.js); frames are posted as transferable buffers
// together with their RMS level for the input meter.

import { Resampler } from "./resampler.js";

const TARGET_RATE = 16000;

class PcmWorklet extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const frameMs = options.processorOptions?.frameMs ?? 50;
    this.frameSize = Math.round((TARGET_RATE * frameMs) / 1000);
    // `sampleRate` is the AudioContext's rate, a global of the worklet scope.
    this.resampler = new Resampler(sampleRate, TARGET_RATE);
    this.frame = new Int16Array(this.frameSize);
    this.filled = 0;
    this.sumSquares = 0;
    this.mono = new Float32Array(128);
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const n = channels[0].length;
    if (this.mono.length !== n) this.mono = new Float32Array(n);
    const mono = this.mono;
    mono.set(channels[0]);
    for (let c = 1; c < channels.length; c++) {
      const channel = channels[c];
      for (let i = 0; i < n; i++) mono[i] += channel[i];
    }
    if (channels.length > 1) for (let i = 0; i < n; i++) mono[i] /= channels.length;

    const out = this.resampler.process(mono);
    for (let i = 0; i < out.length; i++) {
      const s = Math.max(-1, Math.min(1, out[i]));
      this.sumSquares += s * s;
      this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === this.frameSize) this.flush();
    }
    return true;
  }

  flush() {
    const rms = Math.sqrt(this.sumSquares / this.filled);
    this.port.postMessage({ pcm: this.frame.buffer, rms }, [this.frame.buffer]);
    this.frame = new Int16Array(this.frameSize);
    this.filled = 0;
    this.sumSquares = 0;
  }
}

registerProcessor("pcm-worklet", PcmWorklet);
