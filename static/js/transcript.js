// The transcript page: turns (one speaker's consecutive utterances as one paragraph), playback
// with word seeking and highlighting, corrections of an utterance through the REST API, a
// client-side search that marks its hits, and while the post-session pass runs its progress,
// then its transcript. A turn's head shows its session-relative time (0:05) and its wall-clock
// time in the viewer's zone; its Play button plays that turn and stops at its end. Speakers go by
// their display name in the session and their colour; the session's owner renames them in the
// Speakers panel (PATCH /api/sessions/<id>/speakers/<user id>/). The voices of a room microphone
// (a diarized stream's labels, config `labels`) are listed there too, "Speaker 2" until the owner
// names them (PATCH /api/sessions/<id>/speaker-labels/); a turn of a labelled voice goes by its name.
//
// A batch job's transcript page is this page too (sessions_app/job_pages.py): its config gives one
// player (the uploaded file, "speaker" id "upload"), one turn per segment, no speakers (no panel, no
// filter), `correctionUrl` /api/jobs/<id>/segments/{id}/ ({id}: the segment's index), `unit`
// "segment", and no transcriptState (no refine pass to follow).

import { Speakers, colourClass, el, formatClock, formatSeconds, labelDisplayName, localizeTimes } from "./lines.js";
import { csrfToken, pageConfig, showProblem } from "./page.js";

const config = pageConfig();
const $ = (id) => document.getElementById(id);
const list = $("utterances");
const problems = $("problems");
const speakers = new Speakers(config.speakers, config.labels);
const speakerFilter = $("speaker-filter"); // (none on a job's page)
const [unit, units] = config.unit || ["utterance", "utterances"];

// speaker id -> <audio>; speaker id -> [{start, end, node}] sorted by start
const players = new Map();
const wordsBySpeaker = new Map();
for (const audio of document.querySelectorAll("audio[data-speaker-id]")) {
  players.set(audio.dataset.speakerId, audio);
}

function render() {
  renderSpeakers();
  wordsBySpeaker.clear();
  const byId = new Map(config.utterances.map((u) => [u.id, u]));
  list.replaceChildren(
    ...config.turns.map((turn) => renderTurn(turn, turn.utterance_ids.map((id) => byId.get(id)).filter(Boolean))),
  );
  for (const words of wordsBySpeaker.values()) words.sort((a, b) => a.start - b.start);
  applyFilter();
}

function renderTurn(turn, utterances) {
  const speakerId = String(turn.speaker_id);
  const label = turn.speaker_label || "";
  const name = speakers.name(speakerId, turn.speaker, label);
  const head = el("div", { class: "turn-head" }, name ? el("span", { class: "who", text: name }) : null);
  const offset = turn.offset ?? turn.start;
  head.append(el("span", { class: "when", text: formatSeconds(offset), title: config.offsetTitle || "Time into the session" }));
  const when = turn.spoken_at ? new Date(turn.spoken_at) : null;
  if (when && !Number.isNaN(when.getTime())) {
    head.append(el("time", { dateTime: when.toISOString(), text: formatClock(when), title: when.toString() }));
  }
  if (players.has(speakerId)) {
    head.append(
      el("button", {
        type: "button",
        class: "play",
        text: "▶ Play",
        "aria-label": name ? `Play ${name} at ${formatSeconds(offset)}` : `Play from ${formatSeconds(offset)}`,
        onclick: () => seek(speakerId, turn.start, turn.end),
      }),
    );
  }
  const attrs = { class: `turn ${colourClass(speakers.colour(speakerId, label))}`, "data-speaker": turn.speaker, "data-speaker-id": speakerId };
  if (label) attrs["data-speaker-label"] = label;
  return el(
    "li",
    attrs,
    head,
    el("div", { class: "turn-text" }, ...utterances.map(renderUtterance)),
  );
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
  const item = el("span", {
    class: "utt",
    "data-utterance-id": u.id,
    "data-speaker": u.speaker,
    "data-source": u.source || "live",
  });
  if (u.corrected_text) {
    item.append(
      el("span", { class: "text corrected", text: u.corrected_text }),
      " ",
      el(
        "span",
        { class: "original" },
        el("span", { class: "label", text: `(original, corrected by ${u.corrected_by || "a reviewer"}: ` }),
        ...wordSpans(u),
        ")",
      ),
    );
  } else {
    item.append(el("span", { class: "text" }, ...wordSpans(u)));
  }
  if (config.canCorrect) {
    item.append(
      el("button", {
        type: "button",
        class: "edit",
        text: "✎",
        title: `Correct this ${unit}`,
        "aria-label": "Correct",
        onclick: () => edit(u, item),
      }),
    );
  }
  item.append(" ");
  return item;
}

// --- playback -----------------------------------------------------------------------------

// speaker id -> where its playback stops by itself (the end of the turn whose Play started it)
const stopAt = new Map();

/** Play a speaker's audio from `seconds`; with `until`, pause there (a turn's Play). */
function seek(speakerId, seconds, until = null) {
  const audio = players.get(speakerId);
  if (!audio) return;
  for (const other of players.values()) if (other !== audio) other.pause();
  if (until === null) stopAt.delete(speakerId);
  else stopAt.set(speakerId, until);
  audio.currentTime = seconds;
  audio.play().catch((error) => {
    // (AbortError: a pause or another seek came before playback began; nothing went wrong)
    if (error.name !== "AbortError") showProblem(problems, `The audio could not play: ${error.message}`);
  });
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

function stopIfDone(speakerId, audio) {
  const end = stopAt.get(speakerId);
  if (end === undefined || audio.currentTime < end) return;
  stopAt.delete(speakerId);
  audio.pause();
}

for (const [speakerId, audio] of players) {
  let frame = 0;
  const tick = () => {
    stopIfDone(speakerId, audio);
    highlight(speakerId, audio.currentTime);
    if (!audio.paused) frame = requestAnimationFrame(tick);
  };
  // (requestAnimationFrame does not run in a background tab; timeupdate still does.)
  audio.addEventListener("timeupdate", () => stopIfDone(speakerId, audio));
  // The reader's own play or seek on the controls plays on past the turn's end.
  audio.addEventListener("seeking", () => {
    const end = stopAt.get(speakerId);
    if (end !== undefined && audio.currentTime > end) stopAt.delete(speakerId);
  });
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
      el("button", { type: "button", text: "Cancel", onclick: () => render() }),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch(config.correctionUrl.replace("{id}", encodeURIComponent(u.id)), {
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
  item.replaceChildren(form);
  box.focus();
}

// --- speakers: names, colours, renaming -------------------------------------------------------

function renderSpeakers() {
  const panel = $("speakers");
  if (!panel) return; // (a job's page: no speakers)
  panel.replaceChildren(...config.speakers.map(renderSpeaker), ...(config.labels || []).map(renderLabel));
  // The speaker filter and the players' labels say the same names.
  for (const option of speakerFilter?.querySelectorAll("option[value]:not([value=''])") || []) {
    const [id, label = ""] = option.value.split(":");
    option.textContent = speakers.name(id, option.textContent, label);
  }
  for (const label of document.querySelectorAll(".player label[data-speaker-id]")) {
    label.textContent = speakers.name(label.dataset.speakerId, label.textContent);
  }
}

function renderSpeaker(entry) {
  const id = String(entry.speaker_id);
  const name = speakers.name(id, entry.speaker);
  const item = el(
    "li",
    { class: `speaker ${colourClass(speakers.colour(id))}`, "data-speaker-id": id },
    el("span", { class: "swatch", "aria-hidden": "true" }),
    el("span", { class: "who", text: name }),
  );
  if (name !== entry.speaker) item.append(el("span", { class: "help username", text: `(${entry.speaker})` }));
  if (config.canRename) item.append(renameButton(name, () => renameForm(entry, item)));
  return item;
}

function renameButton(name, onclick) {
  return el("button", { type: "button", class: "rename", text: "Rename", "aria-label": `Rename ${name}`, onclick });
}

/**
 * Replace a Speakers panel row by a rename form: PATCH ``url`` with ``payload(value)``, then
 * ``onSaved(body)``, render, and focus the row's Rename again (``rowSelector``).
 */
function showRenameForm(item, { value, placeholder, label, url, payload, onSaved, rowSelector }) {
  const box = el("input", { type: "text", name: "display_name", value, maxLength: 80, placeholder, autocomplete: "off" });
  const form = el(
    "form",
    { class: "rename-form" },
    el("label", {}, label, box),
    el(
      "div",
      { class: "row" },
      el("button", { type: "submit", class: "primary", text: "Save" }),
      el("button", { type: "button", text: "Cancel", onclick: () => renderSpeakers() }),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch(url, {
      method: "PATCH",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(payload(box.value)),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      showProblem(problems, `Renaming failed: ${body.error || response.statusText}`);
      return;
    }
    onSaved(body);
    render();
    $("speakers").querySelector(`${rowSelector()} .rename`)?.focus();
  });
  item.replaceChildren(form);
  box.focus();
  box.select();
}

function renameForm(entry, item) {
  const id = String(entry.speaker_id);
  showRenameForm(item, {
    value: speakers.name(id, entry.speaker),
    placeholder: entry.speaker,
    label: `Name of ${entry.speaker} in this session (empty: ${entry.speaker})`,
    url: `/api/sessions/${config.sessionId}/speakers/${id}/`,
    payload: (value) => ({ display_name: value }),
    onSaved: (body) => {
      const saved = { speaker_id: body.speaker_id, speaker: body.speaker, speaker_name: body.speaker_name, colour: body.colour };
      speakers.update([saved]);
      Object.assign(entry, saved);
    },
    rowSelector: () => `[data-speaker-id="${CSS.escape(id)}"]`,
  });
}

/** One voice of a speaker's room microphone in the Speakers panel (with Rename for the owner). */
function renderLabel(entry) {
  const id = String(entry.speaker_id);
  const name = speakers.name(id, entry.name, entry.label);
  const item = el(
    "li",
    { class: `speaker voice ${colourClass(speakers.colour(id, entry.label))}`, "data-speaker-id": id, "data-speaker-label": entry.label },
    el("span", { class: "swatch", "aria-hidden": "true" }),
    el("span", { class: "who", text: name }),
    el("span", { class: "help microphone", text: `(${entry.speaker}'s microphone)` }),
  );
  if (config.canRename) item.append(renameButton(name, () => labelRenameForm(entry, item)));
  return item;
}

function labelRenameForm(entry, item) {
  const id = String(entry.speaker_id);
  const unnamed = labelDisplayName(entry.label);
  showRenameForm(item, {
    value: speakers.name(id, entry.name, entry.label),
    placeholder: unnamed,
    label: `Name of ${unnamed} on ${entry.speaker}'s microphone (empty: ${unnamed})`,
    url: `/api/sessions/${config.sessionId}/speaker-labels/`,
    payload: (value) => ({ speaker_id: entry.speaker_id, label: entry.label, display_name: value }),
    onSaved: (body) => {
      speakers.updateLabels([body]);
      Object.assign(entry, body);
    },
    rowSelector: () => `[data-speaker-id="${CSS.escape(id)}"][data-speaker-label="${CSS.escape(entry.label)}"]`,
  });
}

// --- search -------------------------------------------------------------------------------

const search = $("search");
function applyFilter() {
  const needle = search.value.trim().toLowerCase();
  const [speaker = "", label = null] = (speakerFilter?.value || "").split(":");
  const byId = new Map(config.utterances.map((u) => [String(u.id), u]));
  let shown = 0;
  let hits = 0;
  for (const turn of list.children) {
    let any = false;
    for (const item of turn.querySelectorAll(".utt")) {
      const u = byId.get(item.dataset.utteranceId);
      const haystack = `${u.text} ${u.corrected_text}`.toLowerCase();
      const whose = (!speaker || String(u.speaker_id) === speaker) && (label === null || (u.speaker_label || "") === label);
      const visible = (!needle || haystack.includes(needle)) && whose;
      item.hidden = !visible;
      unmark(item);
      if (visible && needle) hits += markHits(item, needle);
      if (visible) shown += 1;
      any ||= visible;
    }
    turn.hidden = !any;
  }
  const found = needle ? ` (${hits} ${hits === 1 ? "hit" : "hits"})` : "";
  $("search-count").textContent =
    needle || speaker ? `${shown} of ${config.utterances.length} ${units} match${found}.` : "";
  if (needle) list.querySelector("mark.hit")?.scrollIntoView({ block: "nearest" });
}

function unmark(root) {
  for (const mark of root.querySelectorAll("mark.hit")) mark.replaceWith(...mark.childNodes);
  root.normalize();
}

/**
 * Wrap every occurrence of `needle` in the item's shown text in <mark class="hit">, also where
 * it spans several word spans (each piece of it gets its own mark). Returns how many were found.
 */
function markHits(root, needle) {
  const nodes = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => (node.parentElement.closest("button, .label") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  while (walker.nextNode()) nodes.push(walker.currentNode);
  const text = nodes.map((node) => node.nodeValue).join("").toLowerCase();
  const ranges = [];
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + needle.length)) {
    ranges.push([at, at + needle.length]);
  }
  if (!ranges.length) return 0;
  let offset = 0;
  for (const node of nodes) {
    const start = offset;
    const end = offset + node.nodeValue.length;
    offset = end;
    // The parts of this text node inside a hit, last first (splitting keeps the earlier offsets).
    const parts = ranges
      .map(([a, b]) => [Math.max(a, start) - start, Math.min(b, end) - start])
      .filter(([a, b]) => a < b)
      .reverse();
    for (const [a, b] of parts) {
      const hit = node.splitText(a);
      hit.splitText(b - a);
      if (!hit.nodeValue.trim()) continue; // (the space between two words stays unmarked)
      const mark = el("mark", { class: "hit" });
      hit.replaceWith(mark);
      mark.append(hit);
    }
  }
  return ranges.length;
}
search.addEventListener("input", applyFilter);
speakerFilter?.addEventListener("change", applyFilter);

// --- the post-session pass ----------------------------------------------------------------

const REFINE_POLL_MS = 3000;
const refineStatus = $("refine-status");

function showRefineState(state, progress) {
  const text = {
    refining: `Refining the transcript… ${Math.round(progress || 0)}%`,
    failed: "The transcript could not be refined; this is the live transcript.",
  }[state];
  refineStatus.textContent = text || "";
  refineStatus.hidden = !text;
}

/** The page's transcript as the server renders it now (its page-config), shown in place. */
async function reloadTranscript() {
  const response = await fetch(window.location.href, { credentials: "same-origin" });
  if (!response.ok) throw new Error(response.statusText);
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = JSON.parse(page.getElementById("page-config").textContent);
  Object.assign(config, { utterances: fresh.utterances, turns: fresh.turns });
  render();
}

async function pollRefining() {
  let session;
  try {
    const response = await fetch(`/api/sessions/${config.sessionId}/`, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error(response.statusText);
    session = await response.json();
  } catch {
    setTimeout(pollRefining, REFINE_POLL_MS * 2); // a blip: try again a little later
    return;
  }
  if (session.transcript_state === "refining") {
    showRefineState("refining", session.refine_progress);
    setTimeout(pollRefining, REFINE_POLL_MS);
    return;
  }
  showRefineState(session.transcript_state);
  if (session.transcript_state === "final") {
    try {
      await reloadTranscript();
    } catch (error) {
      showProblem(problems, `The refined transcript could not be loaded: ${error.message}. Reload the page.`);
    }
  }
}

localizeTimes(document.querySelector(".page-head"));
render();
if (config.transcriptState === "refining") {
  showRefineState("refining", config.refineProgress);
  setTimeout(pollRefining, REFINE_POLL_MS);
} else {
  showRefineState(config.transcriptState);
}
