"""Camera motions for the local renderer: which one a prompt asks for, and where the camera is.

A clip is a virtual camera moving over one still picture (the user's image, or a
generated title card). Each frame is a crop of that picture scaled to the output
size. This module holds the pure maths:

- :func:`choose_motion` reads the prompt (English or Chinese) and picks a motion;
- :func:`camera_at` says where the camera is at time ``t`` (0 = first frame,
  1 = last frame) for that motion;
- :func:`crop_box` turns a camera position into the part of the picture the
  frame shows, kept inside the picture (no black borders, whatever the motion).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

PUSH_IN = "push_in"
PULL_OUT = "pull_out"
PAN = "pan"
ORBIT = "orbit"
FOLLOW = "follow"

MOTIONS: tuple[str, ...] = (PUSH_IN, PULL_OUT, PAN, ORBIT, FOLLOW)
"""Every motion the renderer knows, the default first."""

DEFAULT_MOTION = PUSH_IN

MAX_ZOOM = 1.2
"""The largest zoom any motion uses: the source picture is prepared at this much
more than the frame size, so the most zoomed-in frame is still sharp (about one
source pixel per output pixel)."""

# Keywords, checked case-insensitively. English words must stand alone ("pan" does
# not match "Japan" or "panda"); Chinese has no spaces, so Chinese keywords match
# anywhere. When a prompt holds several keywords, the one written first wins, and at
# the same position the longer one wins (so "拉近", "pull closer", beats "拉").
_ENGLISH_KEYWORDS: tuple[tuple[str, str], ...] = (
    (r"push(?:es|ed|ing)?", PUSH_IN),
    (r"zoom(?:s|ed|ing)?\s+in", PUSH_IN),
    (r"dolly\s+in", PUSH_IN),
    (r"pull(?:s|ed|ing)?", PULL_OUT),
    (r"zoom(?:s|ed|ing)?\s+out", PULL_OUT),
    (r"dolly\s+out", PULL_OUT),
    (r"pan(?:s|ned|ning)?", PAN),
    (r"orbit(?:s|ed|ing)?", ORBIT),
    (r"around", ORBIT),
    (r"follow(?:s|ed|ing)?", FOLLOW),
    (r"tracking", FOLLOW),
)
_CHINESE_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("拉近", PUSH_IN),
    ("推", PUSH_IN),
    ("拉", PULL_OUT),
    ("平移", PAN),
    ("摇", PAN),
    ("环绕", ORBIT),
    ("围绕", ORBIT),
    ("跟随", FOLLOW),
    ("跟拍", FOLLOW),
)
_KEYWORD_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rf"\b{pattern}\b", re.IGNORECASE), motion) for pattern, motion in _ENGLISH_KEYWORDS
) + tuple((re.compile(re.escape(word)), motion) for word, motion in _CHINESE_KEYWORDS)


def choose_motion(prompt: str) -> str:
    """Pick the camera motion a prompt asks for.

    English and Chinese keywords are recognised, case-insensitively:
    push / zoom in / 推 -> ``push_in``; pull / zoom out / 拉 -> ``pull_out``;
    pan / 平移 / 摇 -> ``pan``; orbit / around / 环绕 / 围绕 -> ``orbit``;
    follow / 跟随 / 跟拍 -> ``follow``. The keyword written first wins. A prompt with
    no keyword gets ``push_in``, the safest motion for any picture.
    """
    best: tuple[int, int, str] | None = None  # (position, -length, motion)
    for pattern, motion in _KEYWORD_PATTERNS:
        match = pattern.search(prompt)
        if match is None:
            continue
        candidate = (match.start(), -(match.end() - match.start()), motion)
        if best is None or candidate[:2] < best[:2]:
            best = candidate
    return best[2] if best is not None else DEFAULT_MOTION


@dataclass(frozen=True)
class Camera:
    """Where the virtual camera is for one frame.

    ``zoom`` is 1.0 when the picture exactly covers the frame and grows as the
    camera moves in. ``offset_x`` and ``offset_y`` run from -1 to 1: the share of
    the free room (the part of the picture outside the crop) used on each side,
    so -1 means "as far left (or up) as the picture allows", at any zoom.
    """

    zoom: float = 1.0
    offset_x: float = 0.0
    offset_y: float = 0.0


def ease_in_out(t: float) -> float:
    """Smoothly map 0..1 to 0..1, starting and ending at rest (a cosine ease)."""
    t = min(max(t, 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * t)


def camera_at(motion: str, t: float) -> Camera:
    """Return the camera for ``motion`` at time ``t`` (0 = first frame, 1 = last frame).

    The motions are deliberately distinct: push-in and pull-out zoom in opposite
    directions; pan glides from the left edge to the right one; orbit circles
    along an ellipse while the distance to the subject breathes in and out;
    follow tracks sideways at a steady pace with a small walking bob. Raises
    ``ValueError`` for an unknown motion name.
    """
    eased = ease_in_out(t)
    turn = 2.0 * math.pi * t  # one full cycle over the clip, for the periodic motions
    if motion == PUSH_IN:
        return Camera(zoom=1.0 + (MAX_ZOOM - 1.0) * eased)
    if motion == PULL_OUT:
        return Camera(zoom=MAX_ZOOM - (MAX_ZOOM - 1.0) * eased)
    if motion == PAN:
        return Camera(zoom=MAX_ZOOM, offset_x=-1.0 + 2.0 * eased)
    if motion == ORBIT:
        return Camera(
            zoom=MAX_ZOOM - 0.05 * (1.0 - math.cos(turn)),
            offset_x=0.9 * math.sin(turn),
            offset_y=-0.6 * math.cos(turn),
        )
    if motion == FOLLOW:
        return Camera(
            zoom=1.12 + 0.05 * eased,
            offset_x=-0.8 + 1.6 * t,  # linear: a steady tracking speed
            offset_y=0.25 * math.sin(4.0 * turn),  # four small steps of bob
        )
    raise ValueError(f"unknown motion {motion!r}; expected one of {', '.join(MOTIONS)}")


def crop_box(
    camera: Camera,
    frame_size: tuple[int, int],
    source_size: tuple[int, int],
) -> tuple[float, float, float, float]:
    """Return the part of the source the camera sees, as ``(left, top, right, bottom)``.

    The box has the frame's aspect ratio, is centred on the camera, shrinks as the
    zoom grows, and always lies inside the source (so no frame shows an edge of
    the picture). Its corners are fractional, and the renderer honours them to
    a fraction of a pixel (see :mod:`bot.providers.local.scaler`), which keeps
    slow moves smooth instead of jumping a whole pixel at a time.
    """
    frame_w, frame_h = frame_size
    source_w, source_h = source_size
    # Output pixels per source pixel: the picture just covers the frame at zoom 1.
    cover = max(frame_w / source_w, frame_h / source_h)
    scale = cover * max(camera.zoom, 1.0)
    crop_w, crop_h = frame_w / scale, frame_h / scale

    # The free room on each side of the crop, and where the camera puts the crop in it.
    room_x = (source_w - crop_w) / 2.0
    room_y = (source_h - crop_h) / 2.0
    centre_x = source_w / 2.0 + _clamp_unit(camera.offset_x) * room_x
    centre_y = source_h / 2.0 + _clamp_unit(camera.offset_y) * room_y
    left = min(max(centre_x - crop_w / 2.0, 0.0), source_w - crop_w)
    top = min(max(centre_y - crop_h / 2.0, 0.0), source_h - crop_h)
    return (left, top, left + crop_w, top + crop_h)


def _clamp_unit(value: float) -> float:
    """Clamp a value to the range -1..1."""
    return min(max(value, -1.0), 1.0)
