// Microphone capture: getUserMedia -> AudioWorklet (pcm-worklet.js) -> 16 kHz PCM16 frames.

const WORKLET_URL = new URL("./pcm-worklet.js", import.meta.url);

export class MicCapture {
  /**
   * @param {{onFrame: (pcm: ArrayBuffer) => void, onLevel?: (level: number) => void, frameMs?: number}} options
   *   onLevel gets 0..1 (a -60..0 dBFS scale) for each frame.
   */
  constructor({ onFrame, onLevel, frameMs = 50 }) {
    this.onFrame = onFrame;
    this.onLevel = onLevel;
    this.frameMs = frameMs;
    this.stream = null;
    this.context = null;
  }

  get active() {
    return this.context !== null;
  }

  /** Ask for the microphone and start posting frames. Throws MicError with a readable message. */
  async start() {
    if (this.active) return;
    if (!navigator.mediaDevices?.getUserMedia || typeof AudioWorkletNode === "undefined") {
      throw new MicError("This browser cannot capture audio here (it needs HTTPS or localhost and a recent browser).");
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
    } catch (error) {
      throw new MicError(micErrorText(error));
    }
    const context = new AudioContext();
    await context.audioWorklet.addModule(WORKLET_URL);
    const source = context.createMediaStreamSource(this.stream);
    const node = new AudioWorkletNode(context, "pcm-worklet", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      processorOptions: { frameMs: this.frameMs },
    });
    node.port.onmessage = (event) => {
      const { pcm, rms } = event.data;
      this.onLevel?.(levelOf(rms));
      this.onFrame(pcm);
    };
    // A silent sink keeps the graph pulled by the audio clock without playing the mic back.
    const mute = context.createGain();
    mute.gain.value = 0;
    source.connect(node).connect(mute).connect(context.destination);
    if (context.state === "suspended") await context.resume();
    this.context = context;
  }

  stop() {
    this.stream?.getTracks().forEach((track) => track.stop());
    this.context?.close();
    this.stream = null;
    this.context = null;
    this.onLevel?.(0);
  }
}

export class MicError extends Error {}

function micErrorText(error) {
  switch (error?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was denied. Allow the microphone for this site in the browser's settings, then try again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Plug one in and try again.";
    case "NotReadableError":
      return "The microphone is busy in another application.";
    default:
      return `The microphone could not be opened: ${error?.message || error}`;
  }
}

function levelOf(rms) {
  if (!(rms > 0)) return 0;
  const db = 20 * Math.log10(rms);
  return Math.max(0, Math.min(1, (db + 60) / 60));
}
