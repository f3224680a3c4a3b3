"""Title cards: the picture a text-only clip is filmed from.

When a request has no image, the renderer draws the prompt itself, wrapped and
centred on a soft two-colour gradient, and then moves the camera over that card
exactly as it would over a photo.

Chinese needs a font with CJK glyphs. The renderer uses Noto Sans SC, which the
``pylopdf-fonts-zh-cn`` package ships (SIL Open Font License): it is found on
disk at run time, never downloaded. Without that package the text falls back to
Pillow's built-in font, which draws Latin text but shows Chinese as empty boxes.
"""

from __future__ import annotations

import colorsys
import functools
import logging
import re
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

log = logging.getLogger(__name__)

ELLIPSIS = "…"

# The text box, as a share of the card. The card is larger than the frame (the
# camera zooms and pans over it), so this box is chosen to stay in view for every
# motion: at the strongest zoom the camera sees about 83 % of the card.
_TEXT_BOX_WIDTH = 0.64
_TEXT_BOX_HEIGHT = 0.58
# Font sizes, as a share of the card height, and the line spacing.
_LARGEST_FONT = 1 / 9
_SMALLEST_FONT = 1 / 30
_LINE_SPACING = 1.35

# "Wide" characters (CJK ideographs, kana, hangul, full-width forms): a line may
# break before or after any of them, since these scripts do not separate words
# with spaces.
_WIDE = (
    "\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua000-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6"
    "\U00020000-\U0003fffd"
)
# Punctuation that must not start a line; it sticks to the character before it.
_NO_LINE_START = "，。、：；！？）」』》〉】”’…,.;:!?)"
# A token is one unbreakable piece of text plus the spaces after it: a wide
# character (with any closing punctuation that follows), or a run of other
# non-space characters (a word, a number, a URL).
_TOKEN = re.compile(
    rf"[{_WIDE}][{re.escape(_NO_LINE_START)}]*\s*"
    rf"|[^\s{_WIDE}]+[{re.escape(_NO_LINE_START)}]*\s*"
    r"|\s+"
)


@functools.cache
def cjk_font_path() -> Path | None:
    """Return the path of the bundled CJK font (Noto Sans SC), or None if it is not installed."""
    try:
        import pylopdf_fonts_zh_cn  # the font package: data only, no dependencies
    except ImportError:
        log.warning(
            "pylopdf-fonts-zh-cn is not installed: title cards use Pillow's built-in font, "
            "which cannot draw Chinese"
        )
        return None
    path = Path(pylopdf_fonts_zh_cn.sans_path())
    return path if path.is_file() else None


def load_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Return the title-card font at ``size`` pixels.

    Each call loads a new font object (a few milliseconds): FreeType fonts must not
    be shared between threads, and several clips may render at once.
    """
    path = cjk_font_path()
    if path is not None:
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def wrap_text(
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    max_width: float,
    max_lines: int,
) -> tuple[list[str], bool]:
    """Wrap ``text`` into at most ``max_lines`` lines no wider than ``max_width`` pixels.

    Latin text breaks between words; Chinese (and other wide scripts) may break
    between any two characters, but never just before closing punctuation. A word
    too long for a line is cut between characters. Newlines in the text start a
    new line. Returns the lines and whether the text had to be cut short, in which
    case the last line ends with an ellipsis.
    """
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        paragraph = " ".join(paragraph.split())  # collapse runs of whitespace
        line = ""
        for token in _split_long_tokens(_TOKEN.findall(paragraph), font, max_width):
            candidate = line + token
            if line and font.getlength(candidate.rstrip()) > max_width:
                lines.append(line.rstrip())
                line = token.lstrip()
            else:
                line = candidate
            if len(lines) > max_lines:
                break
        lines.append(line.rstrip())
        if len(lines) > max_lines:
            break

    # Drop empty lines at the end (a trailing newline in the prompt, for instance).
    while len(lines) > 1 and not lines[-1]:
        lines.pop()
    if len(lines) <= max_lines:
        return lines, False

    # Too long: keep what fits and end the last kept line with an ellipsis.
    kept = lines[:max_lines]
    last = kept[-1]
    while last and font.getlength(last.rstrip() + ELLIPSIS) > max_width:
        last = last[:-1]
    kept[-1] = last.rstrip() + ELLIPSIS
    return kept, True


def _split_long_tokens(
    tokens: list[str],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    max_width: float,
) -> list[str]:
    """Cut any token wider than a whole line into one-character tokens."""
    result: list[str] = []
    for token in tokens:
        if len(token) > 1 and font.getlength(token.rstrip()) > max_width:
            result.extend(token)
        else:
            result.append(token)
    return result


def layout_text(
    text: str, box_width: int, box_height: int
) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, list[str], int]:
    """Choose the largest font that fits ``text`` in the box, and wrap the text with it.

    Returns the font, the lines and the line height in pixels. Text that does not
    fit even at the smallest size is cut short with an ellipsis.
    """
    card_height = box_height / _TEXT_BOX_HEIGHT
    smallest = max(8, round(card_height * _SMALLEST_FONT))
    size = max(smallest, round(card_height * _LARGEST_FONT))
    while True:
        font = load_font(size)
        line_height = max(1, round(size * _LINE_SPACING))
        max_lines = max(1, box_height // line_height)
        lines, truncated = wrap_text(text, font, box_width, max_lines)
        if not truncated or size <= smallest:
            return font, lines, line_height
        size = max(smallest, int(size * 0.88))


def render_title_card(prompt: str, size: tuple[int, int]) -> Image.Image:
    """Draw ``prompt`` centred on a gradient background of ``size`` pixels (an RGB image).

    The colours are derived from the prompt, so the same prompt always gives the
    same card.
    """
    width, height = size
    card = _gradient_background(prompt, size)

    box_width = round(width * _TEXT_BOX_WIDTH)
    box_height = round(height * _TEXT_BOX_HEIGHT)
    font, lines, line_height = layout_text(prompt.strip(), box_width, box_height)

    # Draw the text on a mask first, then use it twice: blurred and offset as a soft
    # shadow for legibility, and sharp in white on top.
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    top = (height - line_height * len(lines)) / 2
    for index, line in enumerate(lines):
        y = top + index * line_height + line_height / 2
        draw.text((width / 2, y), line, fill=255, font=font, anchor="mm")

    shadow_offset = max(1, line_height // 16)
    shadow = mask.filter(ImageFilter.GaussianBlur(max(1, line_height // 10)))
    card.paste((10, 10, 30), (shadow_offset, shadow_offset), shadow)
    card.paste((255, 255, 255), (0, 0), mask)
    return card


def _gradient_background(prompt: str, size: tuple[int, int]) -> Image.Image:
    """Return a diagonal two-colour gradient with a few soft light spots."""
    width, height = size
    hue = (zlib.crc32(prompt.encode("utf-8")) % 360) / 360.0
    start = _rgb(hue, 0.75, 0.55)
    end = _rgb((hue + 0.15) % 1.0, 0.85, 0.22)

    # Work at a small size and scale up at the end: gradients and blurred spots have
    # no fine detail, and this keeps the card cheap even at 1080p.
    small_w, small_h = max(2, width // 8), max(2, height // 8)
    # 0 at the top-left corner, 255 at the bottom-right one.
    diagonal = np.add.outer(np.linspace(0.0, 127.5, small_h), np.linspace(0.0, 127.5, small_w))
    ramp = Image.fromarray(diagonal.astype(np.uint8), "L")
    background = Image.composite(
        Image.new("RGB", (small_w, small_h), end),
        Image.new("RGB", (small_w, small_h), start),
        ramp,
    )

    spots = Image.new("L", (small_w, small_h), 0)
    spot_draw = ImageDraw.Draw(spots)
    seed = zlib.crc32(prompt.encode("utf-8"), 7)
    for index in range(5):
        x = (seed >> (index * 5)) % 97 / 97 * small_w
        y = (seed >> (index * 3 + 2)) % 89 / 89 * small_h
        radius = small_h * (0.12 + 0.05 * index)
        spot_draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=70)
    spots = spots.filter(ImageFilter.GaussianBlur(small_h / 10))
    background.paste(_rgb((hue + 0.08) % 1.0, 0.45, 1.0), (0, 0), spots)

    return background.resize(size, Image.Resampling.BICUBIC)


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    """Convert an HSV colour (each part 0..1) to 8-bit RGB."""
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)
