// Rendering of live transcript lines, shared by the live page and the caption viewer.
// Finals are grouped into turns (one name and time, then the speaker's utterances as one
// paragraph, as the server renders them: sessions_app/meeting_record/turns.py); a revised turn
// (stt_revised) replaces its fragments in place, without moving what the reader looks at.
// Each speaker's partial line shows the stabilized text firm and the still-changing rest in grey
// italics. Speakers are shown by their display name in the session and in their colour
// (speaker-c0 to speaker-c7, site.css): the page's config lists them (`speakers`), every message
// names its speaker (`speaker_name`, `speaker_colour`), and `stt_speakers` renames them in place.
// A line of a diarized stream (a room microphone) carries `speaker_label` ("S2"): it is shown by
// its label's name ("Speaker 2" until the owner renames it: the config's `labels`, stt_speakers'
// `labels`) and colour, and a turn is one (speaker, label)'s, as sessions_app/speakers.py has it.

import { pageConfig } from "./page.js";

// A longer pause between two utterances of one speaker starts a new turn (as MAX_PAUSE_S).
export const MAX_PAUSE_S = 30;

// One clock on every page: the viewer's time zone, 24-hour, "14:20:14" (the page's locale's digits
// and separators). Server-rendered times come as <time datetime="ISO"> and are formatted on load
// (localizeTimes); live ones are formatted here as they arrive.
const CLOCK = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});
const DATE_TIME = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
  timeZoneName: "short",
});

export function formatClock(date) {
  return CLOCK.format(date);
}

/** Every <time datetime> under `root` in the viewer's time zone (data-format="datetime": with the date). */
export function localizeTimes(root = document) {
  for (const time of root.querySelectorAll("time[datetime]")) {
    const when = new Date(time.dateTime);
    if (Number.isNaN(when.getTime())) continue;
    time.textContent = time.dataset.format === "datetime" ? DATE_TIME.format(when) : formatClock(when);
    time.title = when.toString();
  }
}

export function formatSeconds(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export const SPEAKER_COLOURS = 8;

/** The class that gives an element its speaker's colour (as --speaker). */
export function colourClass(colour) {
  const n = Number(colour);
  return `speaker-c${Number.isInteger(n) && n >= 0 ? n % SPEAKER_COLOURS : 0}`;
}

/** Give `node` the colour class `colour` (replacing the one it had). */
export function setColour(node, colour) {
  for (const name of [...node.classList]) if (/^speaker-c\d+$/.test(name)) node.classList.remove(name);
  node.classList.add(colourClass(colour));
}

/** The number of a diarizer's label ("S3" -> 3); 0 for anything else. */
export function labelNumber(label) {
  const match = /^S([1-9][0-9]*)$/.exec(label || "");
  return match ? Number(match[1]) : 0;
}

/** What an unnamed label reads as: "S3" -> "Speaker 3" (as speakers.label_display_name). */
export function labelDisplayName(label) {
  const n = labelNumber(label);
  return n ? `Speaker ${n}` : label;
}

/**
 * Who is who in a session: speaker id -> {speaker (username), speaker_name, colour}, and the
 * labels of diarized streams: "id:label" -> {name, colour}.
 */
export class Speakers {
  constructor(list = [], labels = []) {
    this.byId = new Map();
    this.labels = new Map();
    this.update(list);
    this.updateLabels(labels);
  }

  /** Take labels as stt_speakers carries them ({speaker_id, label, name, colour}); returns the keys that changed. */
  updateLabels(list) {
    const changed = [];
    for (const entry of list || []) {
      if (!entry.label) continue;
      const key = labelKey(entry.speaker_id, entry.label);
      const before = this.labels.get(key);
      const after = { name: entry.name || labelDisplayName(entry.label), colour: entry.colour };
      if (!before || before.name !== after.name || before.colour !== after.colour) changed.push(key);
      this.labels.set(key, after);
    }
    return changed;
  }

  /** Take a list as stt_speakers carries it; returns the ids whose name or colour changed. */
  update(list) {
    const changed = [];
    for (const entry of list || []) {
      const id = String(entry.speaker_id);
      const before = this.byId.get(id);
      const after = { speaker: entry.speaker, speaker_name: entry.speaker_name || entry.speaker, colour: entry.colour };
      if (!before || before.speaker_name !== after.speaker_name || before.colour !== after.colour) changed.push(id);
      this.byId.set(id, after);
    }
    return changed;
  }

  /** Learn a speaker from a live message (stt_final etc.) that the page's list did not have. */
  learn(message) {
    const id = String(message.speaker_id ?? "");
    if (!id || this.byId.has(id) || !message.speaker) return;
    this.byId.set(id, {
      speaker: message.speaker,
      speaker_name: message.speaker_name || message.speaker,
      colour: message.speaker_colour ?? Number(id) % SPEAKER_COLOURS,
    });
  }

  /** The name a line of speaker `id` is shown with: its label's when it has one, else the speaker's. */
  name(id, fallback = "", label = "") {
    if (label) return this.labels.get(labelKey(id, label))?.name || labelDisplayName(label);
    return this.byId.get(String(id))?.speaker_name || fallback;
  }

  /** A line's colour: its label's (by default the speaker's plus the label's number), else the speaker's. */
  colour(id, label = "") {
    const named = label ? this.labels.get(labelKey(id, label)) : undefined;
    if (named && Number.isInteger(named.colour)) return named.colour;
    const known = this.byId.get(String(id));
    const own = known ? known.colour : Number(id) % SPEAKER_COLOURS || 0;
    return label ? (own + labelNumber(label)) % SPEAKER_COLOURS : own;
  }
}

export function labelKey(id, label) {
  return `${id}:${label}`;
}

/** The label of a turn or line element ("" when it has none). */
function labelOf(node) {
  return node.dataset.speakerLabel || "";
}

export class LiveTranscript {
  /**
   * @param {HTMLElement} finals   list (<ol>) that finals are appended to
   * @param {HTMLElement} partials container of the per-speaker partial lines
   * @param {HTMLElement} scroller element to keep scrolled to the bottom (unless the reader scrolled up)
   * @param {Speakers} speakers    names and colours (by default the page config's `speakers`)
   */
  constructor(finals, partials, scroller, speakers = new Speakers(pageConfig().speakers, pageConfig().labels)) {
    this.finals = finals;
    this.partials = partials;
    this.scroller = scroller;
    this.speakers = speakers;
    this.bySpeaker = new Map();
    this.seen = new Set(
      [...finals.querySelectorAll("[data-utterance-id]")].map((node) => node.dataset.utteranceId),
    );
    // The server wrote its own clock's times; show them in the reader's, as live turns are.
    localizeTimes(finals);
  }

  handle(message) {
    if (message.speaker_id !== undefined) this.speakers.learn(message);
    switch (message.type) {
      case "stt_update":
        this.partial(message).update = message.text || "";
        this.renderPartial(message.speaker);
        break;
      case "stt_stabilized":
        this.partial(message).stable = message.text || "";
        this.renderPartial(message.speaker);
        break;
      case "stt_final":
        this.addFinal(message);
        break;
      case "stt_revised":
        this.applyRevision(message);
        break;
      case "stt_speakers":
        this.renameSpeakers(message.speakers, message.labels);
        break;
      default:
        return false;
    }
    return true;
  }

  /** The partial line of a message's speaker (by username, as the protocol's `speaker`). */
  partial(message) {
    const speaker = typeof message === "string" ? message : message.speaker;
    let state = this.bySpeaker.get(speaker);
    if (!state) {
      const id = typeof message === "string" ? "" : String(message.speaker_id ?? "");
      const line = el("p", { class: "partial-line", "data-speaker": speaker, "data-speaker-id": id });
      if (id) setColour(line, this.speakers.colour(id));
      line.hidden = true;
      this.partials.append(line);
      state = { stable: "", update: "", line, id };
      this.bySpeaker.set(speaker, state);
    }
    return state;
  }

  renderPartial(speaker) {
    const state = this.partial(speaker);
    const { stable, update } = state;
    const rest = update.startsWith(stable) ? update.slice(stable.length) : wordsAfterCommonPrefix(stable, update);
    state.line.replaceChildren(
      el("span", { class: "who", text: this.speakers.name(state.id, speaker) }),
      " ",
      el("span", { class: "stable", text: stable }),
      el("span", { class: "unstable", text: rest }),
    );
    state.line.hidden = !(stable || rest).trim();
    this.scrollToEnd();
  }

  clearPartial(speaker) {
    const state = this.bySpeaker.get(speaker);
    if (!state) return;
    state.stable = state.update = "";
    state.line.replaceChildren();
    state.line.hidden = true;
  }

  addFinal(message) {
    this.clearPartial(message.speaker);
    const id = String(message.utterance_id);
    if (this.seen.has(id)) return;
    this.seen.add(id);
    const span = finalSpan(message);
    this.keepingScroll(() => {
      const last = this.finals.lastElementChild;
      if (last && continuesTurn(last, message)) last.querySelector(".turn-text").append(span);
      else this.finals.append(turnItem(message, span, this.speakers));
    });
  }

  /**
   * stt_speakers: show every turn and partial line of a renamed (or recoloured) speaker or label as
   * they are now (a speaker's new colour moves the default colours of their labels too).
   */
  renameSpeakers(list, labels = []) {
    const ids = new Set(this.speakers.update(list));
    const keys = new Set(this.speakers.updateLabels(labels));
    if (!ids.size && !keys.size) return;
    for (const node of [...this.finals.querySelectorAll(".turn"), ...this.partials.querySelectorAll(".partial-line")]) {
      const id = node.dataset.speakerId || "";
      const label = labelOf(node);
      if (!id || !(ids.has(id) || keys.has(labelKey(id, label)))) continue;
      setColour(node, this.speakers.colour(id, label));
      const who = node.querySelector(".who");
      if (who) who.textContent = this.speakers.name(id, who.textContent, label);
    }
  }

  /** stt_revised: the utterances of `replaces` give way to `utterances`, where the first of them was. */
  applyRevision(message) {
    const replaced = (message.replaces || [])
      .map((id) => this.finals.querySelector(`.final[data-utterance-id="${CSS.escape(String(id))}"]`))
      .filter(Boolean);
    const fresh = (message.utterances || []).filter((u) => !this.seen.has(String(u.utterance_id)));
    for (const u of fresh) this.seen.add(String(u.utterance_id));
    // Nothing of it on the page (older than what the page shows, or already the current version).
    if (!replaced.length) return;
    const spans = document.createDocumentFragment();
    for (const u of fresh) spans.append(finalSpan({ ...u, speaker: message.speaker }));
    this.keepingScroll(() => {
      // One synchronous change: the browser paints the old fragments or the new turn, nothing between.
      const touched = new Set(replaced.map((node) => node.closest(".turn")));
      replaced[0].replaceWith(spans);
      for (const node of replaced.slice(1)) node.remove();
      for (const turn of touched) if (turn && !turn.querySelector(".final")) turn.remove();
      for (const turn of touched) if (turn?.isConnected) this.splitByLabel(turn);
    });
  }

  /**
   * A revision of a diarized stream may have split an utterance at a change of voice: give each
   * run of lines of one label in `turn` a turn of its own (the first keeps `turn`, relabelled).
   */
  splitByLabel(turn) {
    const lines = [...turn.querySelectorAll(".turn-text > .final")];
    if (!lines.length) return;
    const runs = [];
    for (const line of lines) {
      const last = runs[runs.length - 1];
      if (last && labelOf(last[0]) === labelOf(line)) last.push(line);
      else runs.push([line]);
    }
    if (runs.length === 1 && labelOf(runs[0][0]) === labelOf(turn)) return;
    this.labelTurn(turn, labelOf(runs[0][0]));
    let previous = turn;
    for (const run of runs.slice(1)) {
      const when = spokenAt({ spoken_at: run[0].dataset.spokenAt }) || new Date(turn.querySelector("time")?.dateTime || Date.now());
      const item = turnItem(
        { speaker: turn.dataset.speaker, speaker_id: turn.dataset.speakerId, speaker_label: labelOf(run[0]), spoken_at: when.toISOString() },
        null,
        this.speakers,
      );
      item.querySelector(".turn-text").append(...run);
      previous.after(item);
      previous = item;
    }
  }

  /** Show `turn` as a turn of `label` of its speaker ("" : the speaker's own). */
  labelTurn(turn, label) {
    const id = turn.dataset.speakerId || "";
    if (label) turn.dataset.speakerLabel = label;
    else delete turn.dataset.speakerLabel;
    setColour(turn, this.speakers.colour(id, label));
    const who = turn.querySelector(".who");
    if (who) who.textContent = this.speakers.name(id, who.textContent, label);
  }

  /**
   * Run a DOM change without moving what the reader sees: a reader at the bottom stays at the
   * bottom; otherwise the first turn in view keeps its place on the screen.
   */
  keepingScroll(change) {
    const s = this.scroller;
    if (!s || s.dataset.follow !== "false") {
      change();
      this.scrollToEnd();
      return;
    }
    const top = s.getBoundingClientRect().top;
    const anchor = [...this.finals.children].find((turn) => turn.getBoundingClientRect().bottom > top);
    const before = anchor ? anchor.getBoundingClientRect().top : 0;
    change();
    if (anchor && anchor.isConnected) s.scrollTop += anchor.getBoundingClientRect().top - before;
  }

  scrollToEnd() {
    const s = this.scroller;
    if (!s) return;
    // Follow the text only while the reader is at (or near) the bottom.
    if (s.dataset.follow !== "false") s.scrollTop = s.scrollHeight;
  }
}

export function followScrolling(scroller) {
  scroller.addEventListener("scroll", () => {
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
    scroller.dataset.follow = atBottom ? "true" : "false";
  });
}

function spokenAt(message) {
  const when = message.spoken_at ? new Date(message.spoken_at) : null;
  return when && !Number.isNaN(when.getTime()) ? when : null;
}

function finalSpan(message) {
  const attrs = {
    class: "final",
    "data-utterance-id": String(message.utterance_id),
    "data-speaker": message.speaker,
    "data-start": message.start,
    "data-end": message.end,
    "data-source": message.source || "live",
  };
  if (message.spoken_at) attrs["data-spoken-at"] = message.spoken_at;
  if (message.speaker_label) attrs["data-speaker-label"] = message.speaker_label;
  return el("span", attrs, el("span", { class: "text", text: message.text }), " ");
}

function turnItem(message, span, speakers) {
  const when = spokenAt(message) || new Date();
  const id = String(message.speaker_id ?? "");
  const label = message.speaker_label || "";
  const name = speakers.name(id, message.speaker_name || message.speaker, label);
  const attrs = { class: `turn ${colourClass(speakers.colour(id, label))}`, "data-speaker": message.speaker, "data-speaker-id": id };
  if (label) attrs["data-speaker-label"] = label;
  return el(
    "li",
    attrs,
    el(
      "div",
      { class: "turn-head" },
      el("span", { class: "who", text: name }),
      " ",
      el("time", { dateTime: when.toISOString(), text: formatClock(when), title: when.toString() }),
    ),
    el("p", { class: "turn-text" }, span),
  );
}

/** Whether a final belongs to the turn `item` (same speaker, no long pause since its last utterance). */
function continuesTurn(item, message) {
  const sameSpeaker =
    message.speaker_id !== undefined && item.dataset.speakerId
      ? item.dataset.speakerId === String(message.speaker_id)
      : item.dataset.speaker === message.speaker;
  if (!sameSpeaker || labelOf(item) !== (message.speaker_label || "")) return false;
  const previous = item.querySelector(".turn-text")?.lastElementChild;
  const now = spokenAt(message);
  if (!previous || !now || !previous.dataset.spokenAt) return true;
  const ended =
    new Date(previous.dataset.spokenAt).getTime() +
    (Number(previous.dataset.end) - Number(previous.dataset.start)) * 1000;
  return (now.getTime() - ended) / 1000 <= MAX_PAUSE_S;
}

function wordsAfterCommonPrefix(stable, update) {
  const a = stable.trim().split(/\s+/);
  const b = update.trim().split(/\s+/);
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return (i ? " " : "") + b.slice(i).join(" ");
}
