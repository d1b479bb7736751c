"""Query-string filters of the utterance list."""

from __future__ import annotations

from collections.abc import Mapping

from django.db.models import Q, QuerySet

from sessions_app.models import Utterance


class BadFilterError(ValueError):
    pass


def _seconds(params: Mapping[str, str], name: str) -> float | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadFilterError(f"{name} must be a number of seconds.") from None


def filter_utterances(queryset: QuerySet[Utterance], params: Mapping[str, str]) -> QuerySet[Utterance]:
    """Apply ``speaker`` (username or id), ``start_after``, ``end_before`` and ``search``."""
    if any("\x00" in str(value) for value in params.values()):  # (PostgreSQL refuses NUL in text)
        raise BadFilterError("Filters may not contain NUL characters.")
    speaker = (params.get("speaker") or "").strip()
    if speaker:
        by_name = Q(speaker__username=speaker)
        # "²" is a digit to str.isdigit() but not to int(); ids past 64 bits overflow the database.
        is_id = speaker.isascii() and speaker.isdecimal() and int(speaker) < 2**63
        queryset = queryset.filter(by_name | Q(speaker_id=int(speaker)) if is_id else by_name)
    start_after = _seconds(params, "start_after")
    if start_after is not None:
        queryset = queryset.filter(start_s__gte=start_after)
    end_before = _seconds(params, "end_before")
    if end_before is not None:
        queryset = queryset.filter(end_s__lte=end_before)
    search = (params.get("search") or "").strip()
    if search:
        queryset = queryset.filter(Q(text__icontains=search) | Q(corrected_text__icontains=search))
    return queryset
