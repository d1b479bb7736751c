"""The languages Whisper knows, and the check every entry point applies to a requested one."""

from __future__ import annotations

AUTO = "auto"

# Whisper's language codes, as faster-whisper lists them (tokenizer._LANGUAGE_CODES; a test keeps
# the two equal). Copied so that the web process need not import faster-whisper and CTranslate2.
WHISPER_LANGUAGES: frozenset[str] = frozenset((
    "af", "am", "ar", "as", "az", "ba", "be", "bg", "bn", "bo", "br", "bs", "ca", "cs", "cy", "da",
    "de", "el", "en", "es", "et", "eu", "fa", "fi", "fo", "fr", "gl", "gu", "ha", "haw", "he", "hi",
    "hr", "ht", "hu", "hy", "id", "is", "it", "ja", "jw", "ka", "kk", "km", "kn", "ko", "la", "lb",
    "ln", "lo", "lt", "lv", "mg", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "ne", "nl", "nn",
    "no", "oc", "pa", "pl", "ps", "pt", "ro", "ru", "sa", "sd", "si", "sk", "sl", "sn", "so", "sq",
    "sr", "su", "sv", "sw", "ta", "te", "tg", "th", "tk", "tl", "tr", "tt", "uk", "ur", "uz", "vi",
    "yi", "yo", "zh", "yue"
))


def normalize_language(value: object) -> str | None:
    """``"auto"`` or a Whisper language code in lower case; ``None`` when ``value`` is neither.

    An unknown code must be refused where it is asked for: the decoder fails on it only
    later, once audio arrives (a probe saw ``"zz"``, ``"eng"`` and ``0`` accepted at start).
    """
    if not isinstance(value, str):
        return None
    code = value.strip().lower()
    return code if code == AUTO or code in WHISPER_LANGUAGES else None
