// The live session page: stream the microphone, show everyone's partials and finals.
//
// Audio the server has not acknowledged (stt_ack) stays in the page (up to BACKLOG_S): after a lost
// connection the page resumes its stream (stt_start with resume) and sends it again, or, when the
// server cannot continue the stream (BAD_RESUME: it was restarted, or the grace period is over),
// sends it into the fresh stream that starts instead. Beyond BACKLOG_S offline the oldest audio is
// dropped, and the page says how much.

import { AudioBacklog, SendPacer } from "./audio-backlog.js";
import { CLOSING_ERRORS, closeText, errorText } from "./errors.js";
import { LiveTranscript, followScrolling } from "./lines.js";
import { MicCapture, MicError } from "./mic.js";
import { pageConfig, showProblem } from "./page.js";
import { ReconnectingSocket, wsUrl } from "./socket.js";

const SAMPLE_RATE = 16000; // what the worklet sends, and what stt_ack counts
const BACKLOG_S = 60; // unacknowledged audio kept while offline (the server holds a stream 60 s)
const ACK_STALL_MS = 10000; // audio sent and no stt_ack for this long: the connection is dead
const RELEASE_MIC_AFTER_MS = 30000; // after push-to-talk, give the microphone back when unused

const config = pageConfig();
const $ = (id) => document.getElementById(id);
const ui = {
  toggle: $("mic-toggle"),
  hold: $("mic-hold"),
  state: $("stt-state"),
  level: $("mic-level"),
  banner: $("connection-banner"),
  problems: $("problems"),
  controls: $("mic-controls"),
};
const transcript = new LiveTranscript($("finals"), $("partials"), $("transcript-scroller"));
followScrolling($("transcript-scroller"));

const STATE_LABELS = {
  connecting: "Connecting…",
  idle: "Idle",
  listening: "Listening",
  recording: "Recording",
  transcribing: "Transcribing",
  offline: "Offline",
};

let continuous = false; // the toggle is on
let holding = false; // push-to-talk is held
let startSent = false; // stt_start was sent on the current connection
let listening = false; // the server answered stt_listening
let releaseTimer = null;
let lastErrorCode = "";

// The stream: its id (for a resume), the audio not yet acknowledged, and how far it was sent.
const backlog = new AudioBacklog({ sampleRate: SAMPLE_RATE, maxSeconds: BACKLOG_S });
const pacer = new SendPacer({ sampleRate: SAMPLE_RATE, burstS: config.audioBurstS, speed: config.maxAudioSpeed });
let streamId = null; // the server's stream that the backlog's positions count in
let sentUpTo = 0; // stream position up to which audio went out on this connection
let stopWanted = false; // the speaker stopped; stt_stop goes (again) once all audio is sent
let flushWanted = false; // push-to-talk was released; stt_flush goes once all audio is sent
let catchingUpTo = -1; // after a reconnection: the position whose acknowledgement means caught up
let lastAckAt = 0;
let pumpTimer = null;
let stopTimer = null;
let retryAt = 0;
let reportedDropped = 0;

const mic = new MicCapture({
  onFrame: (pcm) => {
    if (!(continuous || holding)) return;
    backlog.add(pcm);
    sendPending();
    showBacklog();
  },
  onLevel: (level) => {
    ui.level.value = level;
  },
});

function setState(state) {
  ui.state.dataset.state = state;
  ui.state.textContent = STATE_LABELS[state] || state;
}

function setBanner(text) {
  ui.banner.textContent = text;
  ui.banner.hidden = !text;
}

const streamPath = config.canStream
  ? `/ws/sessions/${config.sessionId}/stream/`
  : `/ws/sessions/${config.sessionId}/captions/`;

const socket = new ReconnectingSocket(wsUrl(streamPath), {
  onOpen() {
    setBanner("");
    setState("idle");
    retryAt = 0;
    if (mic.active || stopWanted) sendStart(); // resume a stream the network cut off
    showBacklog();
  },
  onMessage: handleMessage,
  onClose(code, willRetry) {
    startSent = false;
    listening = false;
    backlog.keepAll = false;
    clearTimeout(pumpTimer);
    clearTimeout(stopTimer);
    setState("offline");
    if (!willRetry) {
      retryAt = 0;
      setBanner(closeText(code, lastErrorCode) || "The connection was closed.");
      if (stopWanted) endStream(); // (nothing can take the audio any more)
    }
  },
  onReconnecting(delayMs) {
    retryAt = Date.now() + delayMs;
    showBacklog();
  },
});

/** The banner while the stream's audio is not all with the server, and the counts for tests. */
function showBacklog() {
  const { controls } = ui;
  if (controls) {
    controls.dataset.capturedSamples = String(backlog.captured);
    controls.dataset.bufferedSamples = String(backlog.held);
    controls.dataset.droppedSamples = String(backlog.dropped);
  }
  const dropped = backlog.dropped - reportedDropped;
  const lost = dropped > 0 ? `; the oldest ${seconds(dropped)} s was dropped (at most ${BACKLOG_S} s is kept)` : "";
  if (!socket.isOpen) {
    if (!retryAt) return; // (closed for good: its banner says why)
    const inS = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    const retry = inS > 0 ? `Reconnecting in ${inS} s…` : "Reconnecting…";
    if (streaming() || backlog.held) {
      const kept = lost || ` (up to ${BACKLOG_S} s is kept)`;
      setBanner(`Offline - ${seconds(backlog.held)} s of audio buffered${kept}. ${retry}`);
    } else {
      setBanner(`Connection lost. ${retry}`);
    }
  } else if (!listening && startSent && streamId !== null) {
    setBanner(`Back online - resuming the stream, ${seconds(backlog.held)} s of audio buffered${lost}…`);
  } else if (catchingUpTo >= 0) {
    setBanner(`Back online - sending ${seconds(backlog.held)} s of buffered audio${lost}…`);
  }
}

function seconds(samples) {
  return (samples / SAMPLE_RATE).toFixed(1);
}

function streaming() {
  return streamId !== null || startSent || continuous || holding;
}

/** Send the audio after `sentUpTo`, as fast as the server's allowance lets us. */
function sendPending() {
  clearTimeout(pumpTimer);
  if (!listening) return;
  const now = performance.now();
  for (const piece of backlog.from(sentUpTo)) {
    if (pacer.room(now) < piece.pcm.length) {
      pumpTimer = setTimeout(sendPending, 100);
      return;
    }
    if (!socket.sendBinary(piece.pcm)) return;
    pacer.used(piece.pcm.length);
    sentUpTo = piece.start + piece.pcm.length;
  }
  if (flushWanted && !stopWanted) socket.sendJson({ type: "stt_flush" }); // (after the audio it ends)
  flushWanted = false;
  if (stopWanted && sentUpTo === backlog.end && startSent) {
    socket.sendJson({ type: "stt_stop" }); // (all the audio went before it)
    startSent = listening = false;
    // Its stt_ack says the server holds everything; none comes if it had acknowledged all already,
    // nor for audio it refused (RATE_LIMITED): the stream is over all the same.
    if (backlog.held === 0) endStream();
    else stopTimer = setTimeout(endStream, 5000);
  }
}

function onListening(message) {
  listening = true;
  backlog.keepAll = false;
  if (!message.resumed) backlog.startFresh(); // (a fresh stream counts from 0: what is held goes first)
  streamId = message.stream_id;
  sentUpTo = backlog.start; // (a resume continues from the count it named: the server skips what it has)
  pacer.begin(performance.now());
  lastAckAt = Date.now();
  if (backlog.dropped > reportedDropped) {
    showProblem(ui.problems, `${seconds(backlog.dropped - reportedDropped)} s of audio recorded while offline ` +
      `was lost: at most ${BACKLOG_S} s is kept.`, { keepMs: 0 });
    reportedDropped = backlog.dropped;
  }
  catchingUpTo = backlog.held > 0 ? backlog.end : -1;
  sendPending();
  showBacklog();
  if (catchingUpTo < 0) setBanner("");
}

function onAck(message) {
  if (message.stream_id !== streamId) return;
  lastAckAt = Date.now();
  backlog.acknowledge(message.samples);
  if (catchingUpTo >= 0 && backlog.start >= catchingUpTo) {
    catchingUpTo = -1;
    if (socket.isOpen) setBanner("");
  }
  if (stopWanted && !startSent && backlog.held === 0) endStream(); // stt_stop went and all is held
  showBacklog();
}

/** The stream is over: nothing more to resume or send. */
function endStream() {
  clearTimeout(stopTimer);
  stopWanted = false;
  streamId = null;
  catchingUpTo = -1;
  backlog.clear();
  showBacklog();
}

// A connection that takes audio and never acknowledges it is dead (the network went away without
// a TCP reset reaching the browser): give it up and reconnect, the audio is kept.
setInterval(() => {
  if (listening && backlog.held > 0 && Date.now() - lastAckAt > ACK_STALL_MS) socket.drop();
  if (!socket.isOpen) showBacklog(); // (the countdown)
}, 1000);

function handleMessage(message) {
  if (transcript.handle(message)) return;
  const mine = !message.speaker || message.speaker === config.username;
  switch (message.type) {
    case "stt_listening":
      if (!mine) break;
      setState("listening");
      onListening(message);
      break;
    case "stt_ack":
      onAck(message);
      break;
    case "stt_state":
      if (mine) setState(message.state);
      break;
    case "stt_error":
      if (mine) lastErrorCode = message.code;
      if (message.code === "BAD_RESUME") {
        // A fresh stream starts at once; the audio held here goes into it (onListening).
        showProblem(ui.problems, "The server could not continue the stream (it may have restarted); " +
          "a new one started with the audio kept here.");
        break;
      }
      if (mine && !CLOSING_ERRORS.has(message.code)) showProblem(ui.problems, errorText(message.code, message.error));
      if (message.code === "ENGINE_UNAVAILABLE") {
        startSent = listening = false; // the server ended this stream (its audio is on disk)
        endStream();
        stopMic();
      }
      break;
    default:
      break;
  }
}

function sendStart() {
  if (startSent || !socket.isOpen) return;
  const start = { type: "stt_start", language: config.language || "auto", sample_rate: SAMPLE_RATE };
  // Continue the stream from the last acknowledged sample, unless audio was dropped meanwhile (a
  // hole cannot be resumed over: the server ends that stream and the held audio starts a fresh one).
  if (streamId !== null && !backlog.gap) {
    start.resume = { stream_id: streamId, samples: backlog.start };
    backlog.keepAll = true; // (until the answer: the audio from that count on must all be there)
  }
  socket.sendJson(start);
  startSent = true;
}

async function openMic() {
  clearTimeout(releaseTimer);
  if (!mic.active) {
    try {
      await mic.start();
    } catch (error) {
      showProblem(ui.problems, error instanceof MicError ? error.message : String(error), { keepMs: 0 });
      return false;
    }
  }
  sendStart();
  return true;
}

function stopMic() {
  continuous = holding = false;
  clearTimeout(releaseTimer);
  mic.stop();
  if (streamId !== null || startSent || backlog.held > 0) {
    // stt_stop follows the audio not yet sent (at once, or after reconnecting); the stream is over
    // once the server has acknowledged all of it.
    stopWanted = true;
    sendPending();
  }
  renderButtons();
}

function renderButtons() {
  ui.toggle.setAttribute("aria-pressed", String(continuous));
  ui.toggle.textContent = continuous ? "Stop microphone" : "Start microphone";
  ui.toggle.classList.toggle("on", continuous);
  ui.hold.disabled = continuous;
  ui.hold.classList.toggle("on", holding);
}

async function toggle() {
  if (continuous) {
    stopMic();
    return;
  }
  if (stopWanted) {
    showProblem(ui.problems, "The last recording is still being sent; start again once it is.");
    return;
  }
  continuous = true;
  renderButtons();
  if (!(await openMic())) {
    continuous = false;
    renderButtons();
  }
}

async function pressHold() {
  if (holding || continuous || stopWanted) return;
  flushWanted = false; // (talking again: an earlier release's flush is not due any more)
  holding = true;
  renderButtons();
  if (!(await openMic())) {
    holding = false;
    renderButtons();
  }
}

function releaseHold() {
  if (!holding) return;
  holding = false;
  renderButtons();
  if (startSent) {
    flushWanted = true; // finish this utterance now: once the audio not yet sent has gone
    sendPending();
  }
  clearTimeout(releaseTimer);
  releaseTimer = setTimeout(() => {
    if (!continuous && !holding) stopMic();
  }, RELEASE_MIC_AFTER_MS);
}

if (config.canStream) {
  ui.toggle.addEventListener("click", toggle);
  ui.hold.addEventListener("pointerdown", (event) => {
    ui.hold.setPointerCapture?.(event.pointerId);
    pressHold();
  });
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    ui.hold.addEventListener(type, releaseHold);
  }
  ui.hold.addEventListener("keydown", (event) => {
    if ((event.key === " " || event.key === "Enter") && !event.repeat) {
      event.preventDefault();
      pressHold();
    }
  });
  ui.hold.addEventListener("keyup", (event) => {
    if (event.key === " " || event.key === "Enter") {
      event.preventDefault();
      releaseHold();
    }
  });
  ui.hold.addEventListener("blur", releaseHold);
  renderButtons();
}
setState("connecting");
window.addEventListener("pagehide", () => {
  if (mic.active) stopMic();
  socket.close();
});
