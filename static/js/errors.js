// Readable messages for the server's error codes and WebSocket close codes (sessions_app/protocol.py).

const ERROR_TEXT = {
  BAD_MESSAGE: "The page sent a message the server could not read.",
  UNKNOWN_TYPE: "The page sent a message type the server does not know.",
  BAD_START: "The server refused the audio settings (sample rate or language).",
  ALREADY_STARTED: "The microphone stream is already running.",
  NOT_STARTED: "Audio arrived before the stream was started; it was ignored.",
  BAD_AUDIO: "The server received broken audio.",
  FRAME_TOO_LARGE: "An audio frame was too large for the server.",
  RATE_LIMITED: "Audio arrived faster than real time; some of it was dropped.",
  READ_ONLY: "This caption view is read-only.",
  FORBIDDEN: "You may not do that in this session (not a speaker, or the session is closed).",
  ACCESS_REVOKED: "Your access was withdrawn: the owner renewed this link or changed who may join.",
  TOO_MANY_STREAMS: "Too many live streams right now; try again in a moment.",
  ENGINE_UNAVAILABLE: "The speech engine is not available right now; try again shortly.",
  ENGINE_CRASHED: "The speech engine crashed; a fresh one has taken over.",
  IDLE_TIMEOUT: "The connection was closed after a long silence.",
  SESSION_TOO_LONG: "The stream reached its longest allowed duration.",
  SESSION_ENDED: "The session has ended; its transcript is being finalized.",
};

const CLOSE_TEXT = {
  4403: "Access refused: you may not use this session.",
  4408: "Closed after a long silence.",
  4410: "The session has ended.",
  4413: "The stream reached its longest allowed duration.",
  4429: "Too many live streams right now.",
  4503: "The speech engine is not available.",
};

// Close codes after which reconnecting cannot help.
export const FINAL_CLOSE_CODES = new Set([4403, 4410, 4413]);

export function errorText(code, serverText) {
  const known = ERROR_TEXT[code];
  if (known && serverText && serverText !== known) return `${known} (${serverText})`;
  return known || serverText || `Error ${code}`;
}

// Codes that end the connection: the banner of its close says it, not a second message.
export const CLOSING_ERRORS = new Set(["ACCESS_REVOKED", "SESSION_ENDED"]);

export function closeText(code, lastErrorCode = "") {
  if (code === 4403 && CLOSING_ERRORS.has(lastErrorCode)) return ERROR_TEXT[lastErrorCode];
  return CLOSE_TEXT[code] || "";
}
