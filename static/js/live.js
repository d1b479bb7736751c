// The live session page: stream the microphone, show everyone's partials and finals.

import { CLOSING_ERRORS, closeText, errorText } from "./errors.js";
import { LiveTranscript, followScrolling } from "./lines.js";
import { MicCapture, MicError } from "./mic.js";
import { pageConfig, showProblem } from "./page.js";
import { ReconnectingSocket, wsUrl } from "./socket.js";

const MAX_QUEUED_FRAMES = 60; // 3 s of 50 ms frames kept while the server gets ready
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
let queued = [];
let releaseTimer = null;
let lastErrorCode = "";

const mic = new MicCapture({
  onFrame: (pcm) => {
    if (!(continuous || holding)) return;
    if (listening) socket.sendBinary(pcm);
    else if (queued.length < MAX_QUEUED_FRAMES) queued.push(pcm);
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
    if (mic.active) sendStart(); // resume a stream the network cut off
  },
  onMessage: handleMessage,
  onClose(code, willRetry) {
    startSent = false;
    listening = false;
    setState("offline");
    if (!willRetry) setBanner(closeText(code, lastErrorCode) || "The connection was closed.");
  },
  onReconnecting(delayMs) {
    setBanner(`Connection lost. Reconnecting in ${Math.ceil(delayMs / 1000)} s…`);
  },
});

function handleMessage(message) {
  if (transcript.handle(message)) return;
  const mine = !message.speaker || message.speaker === config.username;
  switch (message.type) {
    case "stt_listening":
      listening = true;
      setState("listening");
      for (const pcm of queued) socket.sendBinary(pcm);
      queued = [];
      break;
    case "stt_state":
      if (mine) setState(message.state);
      break;
    case "stt_error":
      if (mine) lastErrorCode = message.code;
      if (mine && !CLOSING_ERRORS.has(message.code)) showProblem(ui.problems, errorText(message.code, message.error));
      if (message.code === "ENGINE_UNAVAILABLE") {
        startSent = false; // the server did not start this stream
        stopMic();
      }
      break;
    default:
      break;
  }
}

function sendStart() {
  if (startSent || !socket.isOpen) return;
  socket.sendJson({ type: "stt_start", language: config.language || "auto", sample_rate: 16000 });
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
  if (startSent) socket.sendJson({ type: "stt_stop" });
  startSent = listening = false;
  queued = [];
  mic.stop();
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
  continuous = true;
  renderButtons();
  if (!(await openMic())) {
    continuous = false;
    renderButtons();
  }
}

async function pressHold() {
  if (holding || continuous) return;
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
  if (startSent) socket.sendJson({ type: "stt_flush" }); // finish this utterance now
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
