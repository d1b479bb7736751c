"""OpenAI-compatible API: `/v1/audio/transcriptions`, `/v1/models`, and `/v1/realtime` (transcription).

The shapes follow OpenAI's API reference so that its SDK and the tools built on it work unchanged;
the work is done by the same jobs, engines and limits as our own API and WebSocket protocol.
"""
