// A WebSocket that reconnects by itself with exponential backoff and keeps the line alive with pings.

import { FINAL_CLOSE_CODES } from "./errors.js";

const PING_EVERY_MS = 25000;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;

export function wsUrl(path) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path}`;
}

export class ReconnectingSocket {
  /**
   * @param {string} url  ws:// or wss:// address
   * @param {{onOpen?: Function, onMessage?: Function, onClose?: Function, onReconnecting?: Function}} handlers
   *   onMessage gets parsed JSON; onClose(code, willRetry); onReconnecting(delayMs, attempt).
   */
  constructor(url, handlers = {}) {
    this.url = url;
    this.handlers = handlers;
    this.attempt = 0;
    this.closedByUs = false;
    this.ws = null;
    this.pingTimer = null;
    this.retryTimer = null;
    this.connect();
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.attempt = 0;
      this.pingTimer = setInterval(() => this.sendJson({ type: "ping" }), PING_EVERY_MS);
      this.handlers.onOpen?.();
    });
    ws.addEventListener("message", (event) => {
      if (ws !== this.ws || typeof event.data !== "string") return; // (a socket given up by drop())
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.handlers.onMessage?.(message);
    });
    ws.addEventListener("close", (event) => {
      if (ws !== this.ws) return; // (given up by drop(): its loss was handled then)
      clearInterval(this.pingTimer);
      const willRetry = !this.closedByUs && !FINAL_CLOSE_CODES.has(event.code);
      this.handlers.onClose?.(event.code, willRetry);
      if (willRetry) this.scheduleRetry();
    });
  }

  scheduleRetry() {
    // Exponential backoff with jitter, so that many pages do not all come back at the same instant.
    const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt += 1;
    this.handlers.onReconnecting?.(delay, this.attempt);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  sendJson(message) {
    if (this.isOpen) this.ws.send(JSON.stringify(message));
  }

  sendBinary(buffer) {
    if (!this.isOpen) return false;
    this.ws.send(buffer);
    return true;
  }

  /**
   * Give up a connection that looks dead (nothing came back for too long) and connect again: a
   * network that went away without a TCP reset leaves a socket "open" for a long time.
   */
  drop() {
    const ws = this.ws;
    if (ws === null || this.closedByUs || ws.readyState >= WebSocket.CLOSING) return;
    clearInterval(this.pingTimer);
    this.ws = null;
    ws.close(4000, "no answer");
    this.handlers.onClose?.(1006, true);
    this.scheduleRetry();
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.ws?.close(1000);
  }
}
