// Rendering of live transcript lines, shared by the live page and the caption viewer:
// finals are appended with speaker and time; each speaker's partial line shows the stabilized
// text firm and the still-changing rest in grey italics.

export function formatClock(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
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
    const now = new Date();
    this.finals.append(
      el(
        "li",
        { class: "final", "data-utterance-id": id, "data-speaker": message.speaker, "data-start": message.start },
        el("span", { class: "who", text: message.speaker }),
        " ",
        el("time", { dateTime: now.toISOString(), text: formatClock(now) }),
        " ",
        el("span", { class: "text", text: message.text }),
      ),
    );
    this.scrollToEnd();
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

function wordsAfterCommonPrefix(stable, update) {
  const a = stable.trim().split(/\s+/);
  const b = update.trim().split(/\s+/);
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return (i ? " " : "") + b.slice(i).join(" ");
}
