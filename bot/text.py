"""Cleaning text that members type, before it is parsed, stored or shown again."""

from __future__ import annotations

import unicodedata

INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
"""Characters outside the format category that draw nothing all the same.

The Hangul fillers and the blank Braille pattern: favourites for "empty"
names and prompts.
"""


def clean_text(text: str) -> str:
    """Drop control characters (whitespace ones become a space) and lone surrogates; trim.

    Emoji joiners and other format characters (category Cf) are kept inside
    text, so family emoji and Arabic or Hebrew marks survive; but text made
    only of invisible characters (see :func:`is_blank`) cleans to ``""``.
    """
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cc":
            if ch.isspace():
                out.append(" ")
        elif category != "Cs":
            out.append(ch)
    cleaned = "".join(out).strip()
    return "" if is_blank(cleaned) else cleaned


def is_blank(text: str) -> bool:
    """True when nothing in ``text`` would be visible.

    Whitespace, format characters (zero-width space and joiners, the byte
    order mark, bidi marks) and the fillers above draw nothing.
    """
    return all(is_invisible(ch) for ch in text)


def is_invisible(ch: str) -> bool:
    """Whitespace, a format character (category Cf), or one of :data:`INVISIBLE_LETTERS`."""
    return ch.isspace() or ch in INVISIBLE_LETTERS or unicodedata.category(ch) == "Cf"
