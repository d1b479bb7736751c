// Band-limited resampling of float audio: a windowed-sinc (Blackman) FIR low-pass evaluated at
// fractional positions, so every input sample contributes and nothing above the new Nyquist
// frequency folds back (aliasing). Used by the AudioWorklet; plain ES module, no DOM.

export class Resampler {
  /**
   * @param {number} inRate  the input sample rate (the AudioContext's, e.g. 44100 or 48000)
   * @param {number} outRate the output sample rate (16000 for the speech engine)
   * @param {{zeroCrossings?: number, phases?: number, rolloff?: number}} options
   *   zeroCrossings: sinc lobes on each side (filter length); phases: fractional positions in the
   *   kernel table; rolloff: cutoff as a fraction of the lower Nyquist frequency (margin for the
   *   transition band).
   */
  constructor(inRate, outRate, { zeroCrossings = 16, phases = 256, rolloff = 0.9 } = {}) {
    this.inRate = inRate;
    this.outRate = outRate;
    this.step = inRate / outRate; // input samples per output sample
    // Cutoff in cycles per input sample: below the output's Nyquist when downsampling.
    const cutoff = 0.5 * Math.min(1, outRate / inRate) * rolloff;
    this.half = Math.ceil(zeroCrossings / (2 * cutoff));
    this.taps = 2 * this.half;
    this.phases = phases;
    this.table = buildKernelTable(cutoff, this.half, phases);
    // History: starts with half-1 zeros so the first output is centred on the first input sample.
    this.buffer = new Float32Array(4096 + this.taps);
    this.length = this.half - 1;
    this.position = this.half - 1;
    this.output = new Float32Array(0);
  }

  /**
   * Feed input samples; returns the output samples that can be computed so far (a view that is
   * only valid until the next call).
   * @param {Float32Array} input
   * @returns {Float32Array}
   */
  process(input) {
    this.append(input);
    const maxOut = Math.ceil((this.length - this.position) / this.step) + 1;
    if (this.output.length < maxOut) this.output = new Float32Array(maxOut * 2);
    const { buffer, table, taps, half, phases, step } = this;
    let produced = 0;
    let position = this.position;
    for (;;) {
      let index = Math.floor(position);
      let phase = Math.round((position - index) * phases);
      if (phase === phases) {
        phase = 0;
        index += 1;
      }
      if (index + half >= this.length) break; // needs samples that have not arrived yet
      const first = index - half + 1;
      const row = phase * taps;
      let sum = 0;
      for (let k = 0; k < taps; k++) sum += buffer[first + k] * table[row + k];
      this.output[produced++] = sum;
      position += step;
    }
    // Drop history that no future output needs.
    const drop = Math.floor(position) - half + 1;
    if (drop > 0) {
      buffer.copyWithin(0, drop, this.length);
      this.length -= drop;
      position -= drop;
    }
    this.position = position;
    return this.output.subarray(0, produced);
  }

  append(input) {
    if (this.length + input.length > this.buffer.length) {
      const bigger = new Float32Array((this.length + input.length) * 2);
      bigger.set(this.buffer.subarray(0, this.length));
      this.buffer = bigger;
    }
    this.buffer.set(input, this.length);
    this.length += input.length;
  }
}

function buildKernelTable(cutoff, half, phases) {
  const taps = 2 * half;
  const table = new Float32Array((phases + 1) * taps);
  for (let p = 0; p <= phases; p++) {
    const frac = p / phases;
    let total = 0;
    for (let k = 0; k < taps; k++) {
      const t = k - half + 1 - frac; // distance (input samples) from the output instant
      const value = 2 * cutoff * sinc(2 * cutoff * t) * blackman(t / half);
      table[p * taps + k] = value;
      total += value;
    }
    for (let k = 0; k < taps; k++) table[p * taps + k] /= total; // unity gain at 0 Hz
  }
  return table;
}

function sinc(x) {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

function blackman(x) {
  // x in [-1, 1]; 0 outside.
  if (x <= -1 || x >= 1) return 0;
  return 0.42 + 0.5 * Math.cos(Math.PI * x) + 0.08 * Math.cos(2 * Math.PI * x);
}
