"""Model names of the OpenAI-compatible API: OpenAI's names map to the configured final model.

A client written for OpenAI sends ``whisper-1`` (or one of the ``gpt-4o-*-transcribe`` names);
here they all mean ``STT_FINAL_MODEL``. Our own names (``base``, ``tiny.en``, the configured
model) are accepted as they are, like ``POST /api/jobs/`` accepts them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from sessions_app.jobs import allowed_models

__all__ = ["OPENAI_ALIASES", "accepted_model_names", "model_list", "model_object", "resolve_model"]

OPENAI_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
# A fixed creation time (2023-03-01, when whisper-1 was published): clients only display it.
CREATED = 1677628800
OWNED_BY = "transcribe-platform"


def accepted_model_names() -> list[str]:
    return [*OPENAI_ALIASES, *(name for name in allowed_models() if name not in OPENAI_ALIASES)]


def resolve_model(name: str) -> str | None:
    """The engine model a client's model name stands for, or None when the name is unknown."""
    name = (name or "").strip()
    if name in OPENAI_ALIASES:
        return settings.STT_FINAL_MODEL
    return name if name in allowed_models() else None


def model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": CREATED, "owned_by": OWNED_BY}


def model_list() -> dict[str, Any]:
    """``GET /v1/models``: every accepted name, as OpenAI lists its models."""
    return {"object": "list", "data": [model_object(name) for name in accepted_model_names()]}
