"""Cleaning text that members type, before it is parsed, stored or shown again."""

from __future__ import annotations

import unicodedata


def clean_text(text: str) -> str:
    """Drop control characters (whitespace ones become a space) and lone surrogates; trim.

    Emoji joiners and other format characters (category Cf) are kept, so
    family emoji and Arabic or Hebrew marks survive.
    """
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cc":
            if ch.isspace():
                out.append(" ")
        elif category != "Cs":
            out.append(ch)
    return "".join(out).strip()
