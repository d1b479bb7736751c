// The caption viewer: read-only live captions, large text, adjustable size. Before anyone
// speaks it says so, and names the speakers connected (stt_viewing's and stt_presence's speakers).

import { CLOSING_ERRORS, closeText, errorText } from "./errors.js";
import { LiveTranscript, followScrolling } from "./lines.js";
import { pageConfig, showProblem } from "./page.js";
import { ReconnectingSocket, wsUrl } from "./socket.js";

const config = pageConfig();
const $ = (id) => document.getElementById(id);
const scroller = $("caption-scroller");
const transcript = new LiveTranscript($("finals"), $("partials"), scroller);
followScrolling(scroller);

const SIZES = [1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4];
const SIZE_KEY = "captions.fontSizeIndex";
let sizeIndex = Number(localStorage.getItem(SIZE_KEY) ?? 3);
if (!(sizeIndex >= 0 && sizeIndex < SIZES.length)) sizeIndex = 3;

function applySize() {
  document.documentElement.style.setProperty("--caption-size", `${SIZES[sizeIndex]}rem`);
  $("font-size-value").textContent = `${Math.round((SIZES[sizeIndex] / 2) * 100)}%`;
  $("font-smaller").disabled = sizeIndex === 0;
  $("font-larger").disabled = sizeIndex === SIZES.length - 1;
  localStorage.setItem(SIZE_KEY, String(sizeIndex));
  transcript.scrollToEnd();
}
$("font-smaller").addEventListener("click", () => {
  sizeIndex = Math.max(0, sizeIndex - 1);
  applySize();
});
$("font-larger").addEventListener("click", () => {
  sizeIndex = Math.min(SIZES.length - 1, sizeIndex + 1);
  applySize();
});
applySize();
transcript.scrollToEnd();

const banner = $("connection-banner");
function setBanner(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

// --- before anyone speaks; who is connected ---------------------------------------------

const waiting = $("waiting");
let spoken = Boolean($("finals").children.length);

function names(speakers) {
  const list = speakers.map((s) => s.speaker_name || s.speaker);
  if (list.length <= 1) return list.join("");
  return `${list.slice(0, -1).join(", ")} and ${list[list.length - 1]}`;
}

function showPresence(speakers) {
  const who = names(speakers);
  $("waiting-who").textContent = who
    ? `${who} ${speakers.length === 1 ? "is" : "are"} connected.`
    : "No speaker is connected yet.";
  const bar = $("presence");
  bar.textContent = who ? `Connected: ${who}` : "";
  bar.hidden = !who;
}

function someoneSpoke(message) {
  if (spoken) return;
  const partial = message.type === "stt_update" || message.type === "stt_stabilized";
  if (message.type === "stt_final" || (partial && (message.text || "").trim())) {
    spoken = true;
    waiting.hidden = true;
  }
}

let lastErrorCode = "";
const query = config.token ? `?token=${encodeURIComponent(config.token)}` : "";
new ReconnectingSocket(wsUrl(`/ws/sessions/${config.sessionId}/captions/${query}`), {
  onOpen() {
    setBanner("");
    $("live-dot").dataset.live = "true";
  },
  onMessage(message) {
    if (message.type === "stt_viewing" || message.type === "stt_presence") {
      showPresence(message.speakers || []);
      return;
    }
    if (message.type === "stt_session_ended" && !spoken) {
      waiting.querySelector(".waiting-title").textContent = "This session has ended";
      waiting.classList.add("ended");
      $("waiting-who").textContent = "Nobody spoke in it.";
      return;
    }
    someoneSpoke(message);
    if (transcript.handle(message)) return;
    if (message.type !== "stt_error") return;
    lastErrorCode = message.code;
    if (!CLOSING_ERRORS.has(message.code)) showProblem($("problems"), errorText(message.code, message.error));
  },
  onClose(code, willRetry) {
    $("live-dot").dataset.live = "false";
    if (!willRetry) setBanner(closeText(code, lastErrorCode) || "The connection was closed.");
  },
  onReconnecting(delayMs) {
    setBanner(`Connection lost. Reconnecting in ${Math.ceil(delayMs / 1000)} s…`);
  },
});
