// The transcript page: utterances by speaker and time, playback with word seeking and highlighting,
// corrections through the REST API, and a client-side search.

import { el, formatSeconds } from "./lines.js";
import { csrfToken, pageConfig, showProblem } from "./page.js";

const config = pageConfig();
const $ = (id) => document.getElementById(id);
const list = $("utterances");
const problems = $("problems");

// speaker id -> <audio>; speaker id -> [{start, end, node}] sorted by start
const players = new Map();
const wordsBySpeaker = new Map();
for (const audio of document.querySelectorAll("audio[data-speaker-id]")) {
  players.set(audio.dataset.speakerId, audio);
}

function render() {
  wordsBySpeaker.clear();
  list.replaceChildren(...config.utterances.map(renderUtterance));
  for (const words of wordsBySpeaker.values()) words.sort((a, b) => a.start - b.start);
  applyFilter();
}

function wordSpans(utterance) {
  const speakerId = String(utterance.speaker_id);
  if (!utterance.words.length) return [document.createTextNode(utterance.text)];
  const spans = [];
  for (const word of utterance.words) {
    if (spans.length) spans.push(" ");
    const node = el("span", {
      class: "word",
      text: word.word.trim(),
      title: `${formatSeconds(word.start)}`,
      "data-start": word.start,
      "data-speaker-id": speakerId,
    });
    if (!wordsBySpeaker.has(speakerId)) wordsBySpeaker.set(speakerId, []);
    wordsBySpeaker.get(speakerId).push({ start: word.start, end: word.end, node });
    spans.push(node);
  }
  return spans;
}

function renderUtterance(u) {
  const speakerId = String(u.speaker_id);
  const hasAudio = players.has(speakerId);
  const actions = el("div", { class: "utt-actions" });
  if (hasAudio) {
    actions.append(
      el("button", {
        type: "button",
        class: "play",
        text: "▶ Play",
        "aria-label": `Play ${u.speaker} from ${formatSeconds(u.start)}`,
        onclick: () => seek(speakerId, u.start),
      }),
    );
  }
  if (config.canCorrect) {
    actions.append(el("button", { type: "button", class: "edit", text: "Correct", onclick: () => edit(u, item) }));
  }
  const body = el("div", { class: "utt-body" });
  if (u.corrected_text) {
    body.append(
      el("p", { class: "text corrected", text: u.corrected_text }),
      el(
        "p",
        { class: "original" },
        el("span", { class: "label", text: `Original (corrected by ${u.corrected_by || "a reviewer"}): ` }),
        ...wordSpans(u),
      ),
    );
  } else {
    body.append(el("p", { class: "text" }, ...wordSpans(u)));
  }
  const item = el(
    "li",
    { class: "utt", "data-utterance-id": u.id, "data-speaker": u.speaker },
    el(
      "div",
      { class: "utt-head" },
      el("span", { class: "who", text: u.speaker }),
      el("span", { class: "when", text: `${formatSeconds(u.start)} – ${formatSeconds(u.end)}` }),
      actions,
    ),
    body,
  );
  return item;
}

// --- playback -----------------------------------------------------------------------------

function seek(speakerId, seconds) {
  const audio = players.get(speakerId);
  if (!audio) return;
  for (const other of players.values()) if (other !== audio) other.pause();
  audio.currentTime = seconds;
  audio.play().catch((error) => showProblem(problems, `The audio could not play: ${error.message}`));
  highlight(speakerId, seconds);
}

list.addEventListener("click", (event) => {
  const word = event.target.closest(".word");
  if (word) seek(word.dataset.speakerId, Number(word.dataset.start));
});

let current = null;
function highlight(speakerId, time) {
  const words = wordsBySpeaker.get(speakerId) || [];
  // The last word starting at or before `time`, if `time` is still inside it (or within a short gap).
  let lo = 0;
  let hi = words.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (words[mid].start <= time + 0.02) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  const word = found >= 0 && time <= words[found].end + 0.3 ? words[found].node : null;
  if (word === current) return;
  current?.classList.remove("current");
  current?.removeAttribute("aria-current");
  current = word;
  if (word) {
    word.classList.add("current");
    word.setAttribute("aria-current", "true");
    if ($("follow-playback").checked) word.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }
}

for (const [speakerId, audio] of players) {
  let frame = 0;
  const tick = () => {
    highlight(speakerId, audio.currentTime);
    if (!audio.paused) frame = requestAnimationFrame(tick);
  };
  audio.addEventListener("play", () => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(tick);
  });
  audio.addEventListener("seeked", () => highlight(speakerId, audio.currentTime));
}

// --- corrections --------------------------------------------------------------------------

function edit(u, item) {
  const box = el("textarea", { rows: 3, value: u.corrected_text || u.text, name: "corrected_text" });
  const form = el(
    "form",
    { class: "correct-form" },
    el("label", {}, "Corrected text (leave empty to restore the original)", box),
    el(
      "div",
      { class: "row" },
      el("button", { type: "submit", class: "primary", text: "Save" }),
      el("button", { type: "button", text: "Cancel", onclick: () => item.replaceWith(renderUtterance(u)) }),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch(`/api/sessions/${config.sessionId}/utterances/${u.id}/`, {
      method: "PATCH",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({ corrected_text: box.value }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      showProblem(problems, `Saving failed: ${body.error || body.detail || response.statusText}`);
      return;
    }
    const saved = await response.json();
    Object.assign(u, { corrected_text: saved.corrected_text, corrected_by: saved.corrected_by || "" });
    render();
    list.querySelector(`[data-utterance-id="${u.id}"] .edit`)?.focus();
  });
  item.querySelector(".utt-body").replaceChildren(form);
  box.focus();
}

// --- search -------------------------------------------------------------------------------

const search = $("search");
const speakerFilter = $("speaker-filter");
function applyFilter() {
  const needle = search.value.trim().toLowerCase();
  const speaker = speakerFilter.value;
  let shown = 0;
  for (const item of list.children) {
    const u = config.utterances.find((row) => String(row.id) === item.dataset.utteranceId);
    const haystack = `${u.text} ${u.corrected_text}`.toLowerCase();
    const visible = (!needle || haystack.includes(needle)) && (!speaker || u.speaker === speaker);
    item.hidden = !visible;
    if (visible) shown += 1;
  }
  $("search-count").textContent =
    needle || speaker ? `${shown} of ${config.utterances.length} utterances match.` : "";
}
search.addEventListener("input", applyFilter);
speakerFilter.addEventListener("change", applyFilter);

render();
