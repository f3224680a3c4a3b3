"""Sub-pixel crops scaled by OpenCV: how the local renderer draws each frame.

Every frame of a clip is a box of the prepared picture (with fractional corners,
from :func:`bot.providers.local.motion.crop_box`) scaled to the frame size, for
each of the three yuv420p planes. OpenCV's ``cv2.resize`` does that scaling in
SIMD C++ with the GIL released, and, unlike libswscale (FFmpeg's scaler), it
takes any fractional scale factor and sets nothing up per call: libswscale only
scales between whole sizes and rebuilds its filters for every new pair of sizes,
which every frame of a zoom is, so that setting up cost as much as a third of
each frame.

``cv2.resize`` cannot start at a fractional pixel, and an integer crop would
make the camera jump by whole pixels (the judder of ffmpeg's ``zoompan``). So
along each axis an integer span ``[start, start + span)`` of the plane is
scaled by exactly the box's factor, and the frame is the window ``[skip, skip +
out)`` of the result. Output pixel ``x`` then shows plane position ``start +
(skip + x + 0.5) * step - 0.5`` (OpenCV's filters are centre-aligned), where
``step`` is the box's size over the frame's and the box asks for ``lo + (x +
0.5) * step - 0.5``: the same slope, so the error is the same for every pixel,
``start + skip * step - lo``. :func:`plan_axis` tries :data:`SKIPS` values of
``skip`` per frame and keeps the smallest that brings it within
:data:`TOLERANCE` (1/32 of a pixel), or else the closest.

This needs two things from the caller. No frame may be an exact 1:1 copy of the
picture (at 1:1 ``skip * step`` is always whole, so only whole-pixel positions
are reachable; OpenCV also copies instead of scaling then), so every frame's
scale factor must stay clearly away from 1: :func:`usable_as_is` says whether
the picture already ensures that, and otherwise the renderer resamples it once
to :data:`SOURCE_SCALE` times the frame, more than the largest zoom. And each
plane is padded with :data:`PAD` copied edge pixels (:func:`pad_plane`), so
that a box touching the picture's edge still has room to skip pixels before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import cv2
import numpy as np

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


SKIPS = 40
"""How many numbers of skipped output pixels (0 to 39) are tried per frame and axis.

Near the closest allowed scale factor (4% from 1:1), ``skip * step`` moves by
0.04 of a pixel per skipped pixel, so 40 of them reach every fraction of a pixel.
"""

TOLERANCE = 1 / 32
"""A placement error (plane pixels) small enough to stop looking for a closer one."""

MARGIN = 3
"""Plane pixels kept between the span's ends and the frame's samples (OpenCV's bicubic
reads 2 past a sample), so every sample sees its real neighbours."""

PAD = 64
"""Edge pixels copied around each plane: room for the span to start before the picture.

It covers :data:`SKIPS` skipped pixels at a step of up to 1.5 plane pixels, plus
the margin.
"""

ENLARGE = cv2.INTER_CUBIC
"""OpenCV's filter when a frame enlarges the brightness plane: edges stay sharper than bilinear.

Bicubic is also what ffmpeg's ``zoompan`` uses.
"""
ENLARGE_COLOUR = cv2.INTER_LINEAR
"""OpenCV's filter when a frame enlarges a colour plane: bilinear.

The colour planes have half the resolution, and eyes see less detail in colour
than in brightness. Bicubic there cost about 10% of drawing a 1080p frame of
the sample picture, and made the clip 0.3 dB closer to the exact one (PSNR of
all planes; the brightness plane's SSIM is the same either way).
"""
SHRINK = cv2.INTER_LINEAR
"""OpenCV's filter when a frame shrinks the picture: bilinear, two taps.

OpenCV's bilinear does not widen when shrinking; at the renderer's shrink
factors (at most 1.5) that keeps detail, and the frames are closer to the exact
(Lanczos) ones than libswscale's wider bilinear made them. Bicubic would be
about 2 dB closer still before compression, for about 40% more time per frame.
"""


@dataclass(frozen=True)
class AxisPlan:
    """Where each frame's box lies along one axis (arrays, one value per frame).

    Plane pixels ``[start, start + span)`` (``start`` may be negative, down to
    ``-PAD``: the padding) are scaled by ``factor`` (frame pixels per plane
    pixel), and ``[skip, skip + out)`` of the result are kept. ``error`` is the
    distance, in plane pixels, between where each output pixel's sample is
    taken and where the exact box puts it (the same for every pixel of a frame).
    """

    start: np.ndarray
    span: np.ndarray
    skip: np.ndarray
    factor: np.ndarray
    error: np.ndarray


def plan_axis(lo: np.ndarray, hi: np.ndarray, size: int, out: int) -> AxisPlan:
    """Place the boxes ``[lo, hi)`` (one per frame) of a plane ``size`` long onto ``out`` pixels.

    Vectorised over frames. The box must lie inside ``[0, size]`` and must not be
    ``out`` pixels long (see :data:`MIN_STEP`).
    """
    lo = np.asarray(lo, dtype=np.float64)[:, None]
    hi = np.asarray(hi, dtype=np.float64)[:, None]
    step = (hi - lo) / out  # plane pixels per output pixel
    skip = np.arange(SKIPS, dtype=np.float64)[None, :]
    start = np.round(lo - skip * step)
    error = np.abs(start + skip * step - lo)
    # The frame's first sample must have MARGIN real pixels before it, inside the padding.
    usable = (lo - start >= MARGIN) & (start >= -PAD)
    # The fewest skipped pixels (the less to scale) that place the frame within
    # TOLERANCE, or else the closest placement.
    cost = np.where(error <= TOLERANCE, skip, SKIPS + error)
    best = np.where(usable, cost, np.inf).argmin(axis=1)
    rows = np.arange(lo.shape[0])

    def pick(values: np.ndarray) -> np.ndarray:
        return np.broadcast_to(values, error.shape)[rows, best]

    chosen_start, chosen_skip, step = pick(start), pick(skip), step[:, 0]
    # The last sample, ``start + (skip + out - 0.5) * step - 0.5``, also needs MARGIN after it.
    end = np.ceil(chosen_start + (chosen_skip + out) * step) + MARGIN
    # OpenCV copies a span whose scaled size rounds to its own size instead of scaling it:
    # a tiny span is lengthened until its size changes by at least one pixel.
    with np.errstate(divide="ignore"):
        shortest = np.ceil(1.0 / np.abs(1.0 / step - 1.0))
    end = np.minimum(np.maximum(end, chosen_start + shortest), size + PAD)
    return AxisPlan(
        start=chosen_start.astype(np.int64),
        span=(end - chosen_start).astype(np.int64),
        skip=chosen_skip.astype(np.int64),
        factor=1.0 / step,
        error=pick(error),
    )


@dataclass(frozen=True)
class PlanePlan:
    """The placement of every frame's box on one plane, along both axes."""

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
    padded: np.ndarray, plan: PlanePlan, index: int, target: np.ndarray, *, colour: bool = False
) -> None:
    """Draw frame ``index``'s box of a padded plane into ``target`` (``out`` sized).

    ``colour`` says that the plane is a colour plane (U or V), enlarged with
    :data:`ENLARGE_COLOUR` instead of :data:`ENLARGE`. The span is handed to
    OpenCV without a copy (a view of the padded plane) and scaled with the GIL
    released, so worker threads draw in parallel.
    """
    x, y = plan.x, plan.y
    left, top = PAD + int(x.start[index]), PAD + int(y.start[index])
    span = padded[top : top + int(y.span[index]), left : left + int(x.span[index])]
    factor_x, factor_y = float(x.factor[index]), float(y.factor[index])
    scaled = cv2.resize(
        span,
        None,  # no size: OpenCV then scales by exactly these factors
        fx=factor_x,
        fy=factor_y,
        interpolation=(
            SHRINK if factor_x * factor_y <= 1.0 else ENLARGE_COLOUR if colour else ENLARGE
        ),
    )
    out_width, out_height = plan.out
    column, row = int(x.skip[index]), int(y.skip[index])
    target[...] = scaled[row : row + out_height, column : column + out_width]


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
