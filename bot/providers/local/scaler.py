"""Sub-pixel crops scaled by libswscale: how the local renderer draws each frame.

Every frame of a clip is a box of the prepared picture (with fractional corners,
from :func:`bot.providers.local.motion.crop_box`) scaled to the frame size, for
each of the three yuv420p planes. libswscale, FFmpeg's scaler, does that
scaling in SIMD C through PyAV, several times faster than Pillow; but it scales
whole images only: it cannot start at a fractional pixel, and an integer crop
followed by a scale would make the camera jump by whole pixels and the zoom
step unevenly (the judder of ffmpeg's ``zoompan``).

So the box is placed on libswscale's grid instead. Along each axis an integer
span ``[start, start + span)`` of the plane is scaled to ``scaled`` pixels, and
the frame is the window ``[offset, offset + out)`` of the result. Output pixel
``x`` then shows plane position ``start + (offset + x + 0.5) * span / scaled -
0.5`` (libswscale's bilinear and bicubic filters are centre-aligned), where the
box asks for ``lo + (x + 0.5) * (hi - lo) / out - 0.5``. Both are straight
lines in ``x``; :func:`plan_axis` tries a few hundred integer triples near the
box and keeps the one whose first and last output pixels land closest to where
the box puts them. The remaining error is a few hundredths of a pixel, well
below what bilinear sampling itself blurs.

This needs two things from the caller. No frame may be an exact 1:1 copy of
the picture (at 1:1 the only positions on the grid are whole pixels), so every
frame's scale factor must stay clearly away from 1: :func:`usable_as_is` says
whether the picture already ensures that, and otherwise the renderer resamples
it once to :data:`SOURCE_SCALE` times the frame, more than the largest zoom.
And each plane is padded with :data:`PAD` copied edge pixels
(:func:`pad_plane`), so that a box touching the picture's edge still has room
to shift its span.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from bot.providers.local.motion import MAX_ZOOM

MIN_STEP = 0.04
"""Every frame's scale factor is at least this far (4%) from 1:1, up or down."""

SOURCE_SCALE = 1.25
"""A picture that must be resampled first is resampled to cover this many times the frame.

It is more than :data:`~bot.providers.local.motion.MAX_ZOOM` (1.2) by more than
:data:`MIN_STEP`, so even the most zoomed-in frame is a 4% downscale: still
about one picture pixel per frame pixel (sharp), and never an exact 1:1 copy.
"""
assert SOURCE_SCALE >= MAX_ZOOM * (1 + MIN_STEP)

MAX_SOURCE_SCALE = 1.5
"""A picture larger than this many times the frame is resampled first (cheaper frames)."""


def usable_as_is(size_ratio: float) -> bool:
    """Whether a picture ``size_ratio`` times the frame can be filmed without resampling it first.

    ``size_ratio`` is how many picture pixels cover one frame pixel at zoom 1 (the
    widest view). Every frame then scales by ``zoom / size_ratio``, for zooms
    from 1 to :data:`~bot.providers.local.motion.MAX_ZOOM`. The picture is
    used as it is if all those frames are upscales, or all downscales, by at
    least :data:`MIN_STEP`, and it is not needlessly large (drawing a frame
    from a bigger picture costs more). Filming the original directly also
    saves one resampling, so the frames are a little closer to it.
    """
    always_up = size_ratio * (1 + MIN_STEP) <= 1.0
    always_down = MAX_ZOOM * (1 + MIN_STEP) <= size_ratio <= MAX_SOURCE_SCALE
    return always_up or always_down


PAD = 32
"""Edge pixels copied around each plane, room for the span to start before the edge.

It also keeps libswscale's SIMD reads past the end of a row inside the array.
"""

MARGIN = 3
"""Plane pixels kept on each side of the box, so the filter sees real neighbours."""

SEARCH = 16
"""How many span starts and span ends are tried along each axis (``SEARCH**2 * 2`` triples)."""

ENLARGE = "BICUBIC"
"""libswscale's filter when a frame enlarges the picture: edges stay sharper than bilinear.

It is also what ffmpeg's ``zoompan`` uses.
"""
SHRINK = "BILINEAR"
"""libswscale's filter when a frame shrinks the picture.

Shrinking widens either filter over several picture pixels, so bicubic is only a
little sharper here (about 1 dB PSNR on the sample picture), and bilinear costs
about 40% less per frame. It is also the filter the renderer used before, in Pillow.
"""


@dataclass(frozen=True)
class AxisPlan:
    """Where each frame's box lies on libswscale's grid along one axis (arrays, one per frame).

    ``start`` and ``span`` pick plane pixels ``[start, start + span)`` (``start``
    may be negative, down to ``-PAD``: the padding), scaled to ``scaled`` pixels,
    of which ``[offset, offset + out)`` are kept. ``error`` is the largest
    distance, in plane pixels, between where an output pixel's sample is taken
    and where the exact box puts it.
    """

    start: np.ndarray
    span: np.ndarray
    scaled: np.ndarray
    offset: np.ndarray
    error: np.ndarray


def plan_axis(lo: np.ndarray, hi: np.ndarray, size: int, out: int) -> AxisPlan:
    """Place the boxes ``[lo, hi)`` (one per frame) of a plane ``size`` long onto ``out`` pixels.

    Vectorised over frames. The box must lie inside ``[0, size]``.
    """
    lo = np.asarray(lo, dtype=np.float64)[:, None, None, None]
    hi = np.asarray(hi, dtype=np.float64)[:, None, None, None]
    want = (hi - lo) / out  # plane pixels per output pixel, as the box asks
    tries = np.arange(SEARCH, dtype=np.float64)
    start = np.maximum(np.floor(lo) - MARGIN - tries[None, :, None, None], -PAD)
    end = np.minimum(np.ceil(hi) + MARGIN + tries[None, None, :, None], size + PAD)
    span = end - start
    scaled = np.maximum(np.floor(span / want) + np.arange(2)[None, None, None, :], out)
    step = span / scaled  # plane pixels per output pixel, as libswscale will do it
    offset = np.clip(np.round((lo - start + 0.5 * want) / step - 0.5), 0, scaled - out)
    first = (start - lo) + (offset + 0.5) * step - 0.5 * want  # error at output pixel 0
    last = first + (out - 1) * (step - want)  # error at output pixel out - 1
    error = np.maximum(np.abs(first), np.abs(last))

    frames = error.shape[0]
    best = error.reshape(frames, -1).argmin(axis=1)
    rows = np.arange(frames)

    def pick(values: np.ndarray) -> np.ndarray:
        return np.broadcast_to(values, error.shape).reshape(frames, -1)[rows, best]

    return AxisPlan(
        start=pick(start).astype(np.int64),
        span=pick(span).astype(np.int64),
        scaled=pick(scaled).astype(np.int64),
        offset=pick(offset).astype(np.int64),
        error=pick(error),
    )


@dataclass(frozen=True)
class PlanePlan:
    """The grid placement of every frame's box on one plane, along both axes."""

    x: AxisPlan
    y: AxisPlan
    out: tuple[int, int]

    @property
    def error(self) -> float:
        """The largest placement error over all frames and both axes, in plane pixels."""
        return float(max(self.x.error.max(initial=0.0), self.y.error.max(initial=0.0)))


def plan_plane(
    boxes: np.ndarray, scale: tuple[float, float], size: tuple[int, int], out: tuple[int, int]
) -> PlanePlan:
    """Plan every frame for one plane.

    ``boxes`` is an ``(n, 4)`` array of ``(left, top, right, bottom)`` boxes in
    picture pixels, ``scale`` the plane's size over the picture's along x and y
    (0.5 for yuv420p's colour planes), ``size`` the plane's ``(width, height)``
    and ``out`` the frame plane's ``(width, height)``.
    """
    sx, sy = scale
    return PlanePlan(
        x=plan_axis(boxes[:, 0] * sx, boxes[:, 2] * sx, size[0], out[0]),
        y=plan_axis(boxes[:, 1] * sy, boxes[:, 3] * sy, size[1], out[1]),
        out=out,
    )


def pad_plane(plane: np.ndarray) -> np.ndarray:
    """Return a plane with :data:`PAD` copies of its edge pixels on every side."""
    return np.ascontiguousarray(np.pad(plane, PAD, mode="edge"))


def draw_plane(
    padded: np.ndarray,
    plan: PlanePlan,
    index: int,
    target: np.ndarray,
    reformatter: VideoReformatter | None = None,
) -> None:
    """Draw frame ``index``'s box of a padded plane into ``target`` (``out`` sized).

    The span is handed to libswscale without a copy (a view of the padded
    plane) and scaled with the GIL released, so worker threads draw in parallel.
    Planes drawn with the same plan (U and V) should share one ``reformatter``:
    libswscale then sets its filters up once for both.
    """
    x, y = plan.x, plan.y
    left, top = PAD + int(x.start[index]), PAD + int(y.start[index])
    span = padded[top : top + int(y.span[index]), left : left + int(x.span[index])]
    source = av.VideoFrame.from_numpy_buffer(span, format="gray")
    width, height = int(x.scaled[index]), int(y.scaled[index])
    enlarging = width * height > span.shape[0] * span.shape[1]
    scaled = (reformatter or VideoReformatter()).reformat(
        source,
        width=width,
        height=height,
        interpolation=ENLARGE if enlarging else SHRINK,
        threads=1,  # the renderer already draws frames on several threads
    )
    plane = scaled.planes[0]
    rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
    out_width, out_height = plan.out
    column, row = int(x.offset[index]), int(y.offset[index])
    target[...] = rows[row : row + out_height, column : column + out_width]


def frame_planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Return writable views of a yuv420p frame's three planes, without their row padding."""
    views = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
        views.append(rows[:, : plane.width])
    return views


def box_array(boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Stack boxes into an ``(n, 4)`` float array (an empty list gives shape ``(0, 4)``)."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def chroma_scale(luma: np.ndarray, chroma: np.ndarray) -> tuple[float, float]:
    """Return a colour plane's size over the brightness plane's, along x and y."""
    return chroma.shape[1] / luma.shape[1], chroma.shape[0] / luma.shape[0]
