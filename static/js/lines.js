// Rendering of live transcript lines, shared by the live page and the caption viewer.
// Finals are grouped into turns (one name and time, then the speaker's utterances as one
// paragraph, as the server renders them: sessions_app/meeting_record/turns.py); a revised turn
// (stt_revised) replaces its fragments in place, without moving what the reader looks at.
// Each speaker's partial line shows the stabilized text firm and the still-changing rest in grey
// italics.

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

export class LiveTranscript {
  /**
   * @param {HTMLElement} finals   list (<ol>) that finals are appended to
   * @param {HTMLElement} partials container of the per-speaker partial lines
   * @param {HTMLElement} scroller element to keep scrolled to the bottom (unless the reader scrolled up)
   */
  constructor(finals, partials, scroller) {
    this.finals = finals;
    this.partials = partials;
    this.scroller = scroller;
    this.bySpeaker = new Map();
    this.seen = new Set(
      [...finals.querySelectorAll("[data-utterance-id]")].map((node) => node.dataset.utteranceId),
    );
    // The server wrote its own clock's times; show them in the reader's, as live turns are.
    localizeTimes(finals);
  }

  handle(message) {
    switch (message.type) {
      case "stt_update":
        this.partial(message.speaker).update = message.text || "";
        this.renderPartial(message.speaker);
        break;
      case "stt_stabilized":
        this.partial(message.speaker).stable = message.text || "";
        this.renderPartial(message.speaker);
        break;
      case "stt_final":
        this.addFinal(message);
        break;
      case "stt_revised":
        this.applyRevision(message);
        break;
      default:
        return false;
    }
    return true;
  }

  partial(speaker) {
    let state = this.bySpeaker.get(speaker);
    if (!state) {
      const line = el("p", { class: "partial-line", "data-speaker": speaker });
      line.hidden = true;
      this.partials.append(line);
      state = { stable: "", update: "", line };
      this.bySpeaker.set(speaker, state);
    }
    return state;
  }

  renderPartial(speaker) {
    const state = this.partial(speaker);
    const { stable, update } = state;
    const rest = update.startsWith(stable) ? update.slice(stable.length) : wordsAfterCommonPrefix(stable, update);
    state.line.replaceChildren(
      el("span", { class: "who", text: speaker }),
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
      else this.finals.append(turnItem(message, span));
    });
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
    });
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
  return el("span", attrs, el("span", { class: "text", text: message.text }), " ");
}

function turnItem(message, span) {
  const when = spokenAt(message) || new Date();
  return el(
    "li",
    { class: "turn", "data-speaker": message.speaker, "data-speaker-id": String(message.speaker_id ?? "") },
    el(
      "div",
      { class: "turn-head" },
      el("span", { class: "who", text: message.speaker }),
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
  if (!sameSpeaker) return false;
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
