"""The local renderer: turn one picture (or a prompt alone) into a short H.264 MP4.

This is a plain, synchronous library: no chat, no asyncio, no storage. The
provider that wraps it for the bot runs :func:`render_clip` in a worker thread.

How a clip is made:

1. The picture is decoded (or, with no image, a title card is drawn from the
   prompt at 1.25 times the frame size). A picture much larger than the frame,
   or so close to its size that some frame would be an exact 1:1 copy, is
   scaled once (Lanczos) to 1.25 times the frame, more than the largest zoom,
   so that the most zoomed-in frame is still sharp and every frame is a cheap
   downscale; any other picture is filmed as it is.
2. That picture is converted once to the video's own colour format, yuv420p
   (BT.709): a brightness plane Y, and two colour planes U and V at half width
   and half height.
3. For each frame, the camera position for that instant (see
   :mod:`bot.providers.local.motion`) picks a box of the picture, and that box
   of each plane is scaled to the frame by OpenCV's SIMD ``resize``, placed
   with sub-pixel precision (see :mod:`bot.providers.local.scaler`).
   No frame needs a colour conversion, and the colour planes cost a quarter of
   the brightness plane. Two worker threads draw the next frames while the
   current one is encoded.
4. The frames go to libx264 through PyAV (which ships its own FFmpeg), with
   x264's frame threads as the ffmpeg command line uses them, and the MP4 is
   written to a temporary file next to ``out_path`` and then moved into place,
   so a crash never leaves a half-written clip behind.

Frame size ("fit"): for a landscape or square picture the frame height is the
tier's resolution (720 or 1080) and the width follows the picture's aspect
ratio; for a portrait picture the frame *width* is that number and the height
follows. Both sides are rounded to even numbers, as H.264 in yuv420p requires,
and the aspect ratio is limited to 2.5:1 either way (Kling's own input rule), a
wider picture being cropped at the centre. A text-only clip is 16:9.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image, ImageOps

from bot.providers.local.motion import camera_at, choose_motion, crop_box
from bot.providers.local.scaler import (
    SOURCE_SCALE,
    box_array,
    chroma_scale,
    draw_plane,
    frame_planes,
    pad_plane,
    plan_plane,
    usable_as_is,
)
from bot.providers.local.titlecard import render_title_card

ProgressCallback = Callable[[float], None]

MAX_ASPECT = 2.5
"""The widest aspect ratio a frame may have, landscape or portrait."""

MAX_IMAGE_PIXELS = 64_000_000
"""Larger images are refused (a 10 MB JPEG from a camera is at most about 50 MP)."""

PROGRESS_UPDATES = 20
"""At most this many progress calls per clip (the last one is always 1.0)."""

RENDER_THREADS = 2
"""Threads drawing frames while the main thread encodes (the target machine has 2 cores).

Each frame is drawn on one thread: OpenCV is told not to split its work further
(its own thread pool would only add hand-offs between the same two cores).
"""
FRAMES_AHEAD = 2 * RENDER_THREADS
"""How many frames may be drawn ahead of the encoder: enough to keep the threads busy."""

# Encoder settings: x264's "veryfast" preset at constant quality 23 is a good
# balance for short clips sent in chat (about 1-3 MB for 5 s at 1080p).
CODEC = "libx264"
PRESET = "veryfast"
CRF = 23
PIXEL_FORMAT = "yuv420p"
ENCODER_THREADS = 0
"""x264 threads; 0 lets x264 choose (1.5 per core), as the ffmpeg command line does."""
ENCODER_THREAD_TYPE = "FRAME"
"""x264 works on several frames at once, as with the ffmpeg command line.

PyAV asks for slice threads by default, which split each frame instead: they
keep the cores less busy and compress a little worse.
"""
# Colours are converted and tagged as BT.709 (the HD standard), so that every
# player shows them the same way.
_BT709 = 1  # AVCOL_PRI_BT709 / AVCOL_TRC_BT709 / AVCOL_SPC_BT709 in FFmpeg
_LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG: the usual "TV" range, 16-235


@dataclass(frozen=True)
class RenderRequest:
    """What to render.

    ``image`` is JPEG or PNG bytes (already validated by the caller), or None for
    a text-only title card. ``prompt`` may be in any language; it picks the
    camera motion and is the title card's text. ``height`` is the tier's
    resolution (720 or 1080; see the module docstring for how the frame size
    follows from it), ``duration_s`` the clip length in seconds and ``fps`` the
    frame rate.
    """

    image: bytes | None
    prompt: str
    height: int
    duration_s: int
    fps: int = 24


@dataclass(frozen=True)
class RenderResult:
    """What was rendered: the file, its frame size, length, frame count and motion."""

    path: Path
    width: int
    height: int
    duration_s: float
    frames: int
    motion: str


def frame_size(image_width: int, image_height: int, resolution: int) -> tuple[int, int]:
    """Return the (width, height) of the frames for a picture of the given size.

    Landscape or square pictures get ``resolution`` as the frame height; portrait
    pictures get it as the frame width. The other side follows the aspect ratio
    (limited to 2.5:1) and both sides are rounded to even numbers.
    """
    if image_width <= 0 or image_height <= 0:
        raise ValueError(f"invalid image size {image_width}x{image_height}")
    aspect = min(max(image_width / image_height, 1 / MAX_ASPECT), MAX_ASPECT)
    if aspect >= 1.0:
        return _even(resolution * aspect), _even(resolution)
    return _even(resolution), _even(resolution / aspect)


def render_clip(
    request: RenderRequest,
    out_path: Path,
    progress: ProgressCallback | None = None,
) -> RenderResult:
    """Render ``request`` into an H.264 MP4 at ``out_path`` and describe the result.

    ``progress``, if given, is called in the calling thread with the fraction of
    frames encoded (0 < fraction <= 1), at most :data:`PROGRESS_UPDATES` times;
    the last call is 1.0, made once the clip is in place. An exception raised by ``progress``
    aborts the render (a way to cancel it) and is passed on to the caller.

    The clip is written to a temporary file in ``out_path``'s folder (created if
    missing) and moved to ``out_path`` only when complete: whatever goes wrong,
    ``out_path`` is either untouched or a whole clip.

    Raises ``ValueError`` for a request that cannot be rendered: an image that
    cannot be decoded, a text-only request with an empty prompt, or a
    non-positive height, duration or frame rate.
    """
    _check_request(request)
    motion = choose_motion(request.prompt)

    if request.image is not None:
        picture = decode_image(request.image)
        width, height = frame_size(picture.width, picture.height, request.height)
        source = _prepare_source(picture, (width, height))
    else:
        width, height = _even(request.height * 16 / 9), _even(request.height)
        source = render_title_card(
            request.prompt, (math.ceil(width * SOURCE_SCALE), math.ceil(height * SOURCE_SCALE))
        )

    frames = request.fps * request.duration_s
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{out_path.name}.", suffix=".part", dir=out_path.parent
    )
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        _encode(source, (width, height), motion, request.fps, frames, temp_path, progress)
        temp_path.chmod(0o644)  # mkstemp makes the file private; a clip is not a secret
        os.replace(temp_path, out_path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise

    if progress is not None:
        progress(1.0)
    return RenderResult(
        path=out_path,
        width=width,
        height=height,
        duration_s=frames / request.fps,
        frames=frames,
        motion=motion,
    )


def decode_image(data: bytes) -> Image.Image:
    """Decode JPEG/PNG bytes into an upright RGB picture with an aspect ratio of at most 2.5:1.

    The EXIF orientation of phone photos is applied, transparent areas become
    black, and a picture wider (or taller) than 2.5:1 is cropped at the centre.
    Raises ``ValueError`` if the bytes are not a readable image, or if the image
    is larger than :data:`MAX_IMAGE_PIXELS`.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"it is too large ({opened.width}x{opened.height} pixels)")
            opened.load()
            picture = _flatten(ImageOps.exif_transpose(opened))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        # Pillow reports unreadable or truncated files as OSError (a few as SyntaxError
        # or ValueError).
        raise ValueError(f"cannot decode the image: {error}") from error
    return _crop_to_aspect(picture, MAX_ASPECT)


def _check_request(request: RenderRequest) -> None:
    """Raise ``ValueError`` if the request's numbers or prompt make no sense."""
    if request.height < 16:
        raise ValueError(f"height must be at least 16 pixels, got {request.height}")
    if request.duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {request.duration_s}")
    if request.fps <= 0:
        raise ValueError(f"fps must be positive, got {request.fps}")
    if request.image is None and not request.prompt.strip():
        raise ValueError("a text-only clip needs a prompt")


def _even(value: float) -> int:
    """Round to the nearest even integer, at least 2."""
    return max(2, 2 * round(value / 2))


def _flatten(picture: Image.Image) -> Image.Image:
    """Return the picture in RGB, with any transparent parts laid over black."""
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        black = Image.new("RGBA", picture.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, picture.convert("RGBA")).convert("RGB")
    return picture.convert("RGB")


def _crop_to_aspect(picture: Image.Image, max_aspect: float) -> Image.Image:
    """Crop the centre of a picture whose aspect ratio is beyond ``max_aspect`` either way."""
    width, height = picture.size
    if width > height * max_aspect:
        new_width = round(height * max_aspect)
        left = (width - new_width) // 2
        return picture.crop((left, 0, left + new_width, height))
    if height > width * max_aspect:
        new_height = round(width * max_aspect)
        top = (height - new_height) // 2
        return picture.crop((0, top, width, top + new_height))
    return picture


def _prepare_source(picture: Image.Image, frame: tuple[int, int]) -> Image.Image:
    """Return the picture the camera films for ``frame``: ``picture`` itself, or resampled once.

    See :func:`bot.providers.local.scaler.usable_as_is` for when the picture
    is used as it is; otherwise it is scaled to cover
    :data:`~bot.providers.local.scaler.SOURCE_SCALE` times the frame.
    """
    size_ratio = min(picture.width / frame[0], picture.height / frame[1])
    if usable_as_is(size_ratio):
        return picture
    return _scale_to_cover(picture, frame, SOURCE_SCALE)


def _scale_to_cover(picture: Image.Image, frame: tuple[int, int], margin: float) -> Image.Image:
    """Resize a picture once so that it covers ``margin`` times the frame.

    Every frame is then a crop of this picture shrunk by at most ``margin``,
    which bicubic sampling does well, whatever the size of the original.
    """
    scale = margin * max(frame[0] / picture.width, frame[1] / picture.height)
    size = (max(1, math.ceil(picture.width * scale)), max(1, math.ceil(picture.height * scale)))
    if size == picture.size:
        return picture
    return picture.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _yuv_planes(picture: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert an RGB picture to BT.709 yuv420p, as three 2-D ``uint8`` arrays.

    Y (brightness) has the picture's size; U and V (colour) have half its width
    and height, as in the video itself.
    """
    yuv = av.VideoFrame.from_image(picture).reformat(format=PIXEL_FORMAT, dst_colorspace="ITU709")
    planes = []
    for plane in yuv.planes:
        # FFmpeg pads each row to an aligned length: keep only the real pixels.
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
        planes.append(np.ascontiguousarray(rows[:, : plane.width]))
    return planes[0], planes[1], planes[2]


def _encode(
    source: Image.Image,
    frame: tuple[int, int],
    motion: str,
    fps: int,
    frames: int,
    path: Path,
    progress: ProgressCallback | None,
) -> None:
    """Film ``frames`` frames of the camera moving over ``source`` into an MP4 at ``path``."""
    width, height = frame
    half = (width // 2, height // 2)
    time_base = Fraction(1, fps)
    y_plane, u_plane, v_plane = _yuv_planes(source)
    cv2.setNumThreads(1)  # frames are drawn in parallel instead (RENDER_THREADS)
    # Where every frame's box lies, for the brightness plane
    # and for the colour planes (half size, so the boxes are scaled down to match).
    times = [index / (frames - 1) if frames > 1 else 0.0 for index in range(frames)]
    boxes = box_array([crop_box(camera_at(motion, t), frame, source.size) for t in times])
    luma_size = (y_plane.shape[1], y_plane.shape[0])
    chroma_size = (u_plane.shape[1], u_plane.shape[0])
    luma_plan = plan_plane(boxes, (1.0, 1.0), luma_size, frame)
    chroma_plan = plan_plane(boxes, chroma_scale(y_plane, u_plane), chroma_size, half)
    padded = [pad_plane(plane) for plane in (y_plane, u_plane, v_plane)]

    def draw(index: int) -> av.VideoFrame:
        """Draw frame ``index``: scale the camera's box of each plane to the frame."""
        video_frame = av.VideoFrame(width, height, PIXEL_FORMAT)
        y, u, v = frame_planes(video_frame)
        draw_plane(padded[0], luma_plan, index, y)
        draw_plane(padded[1], chroma_plan, index, u, colour=True)
        draw_plane(padded[2], chroma_plan, index, v, colour=True)
        video_frame.pts = index
        video_frame.time_base = time_base
        return video_frame

    # Report progress every `step` frames: at most PROGRESS_UPDATES - 1 times here,
    # the final 1.0 being reported by the caller once the file is in place.
    step = max(1, math.ceil(frames / PROGRESS_UPDATES))

    # "+faststart" puts the index at the front, so chat apps can play the clip
    # while it downloads.
    with (
        av.open(
            str(path), mode="w", format="mp4", container_options={"movflags": "+faststart"}
        ) as container,
        ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="render-frame") as pool,
    ):
        stream = container.add_stream(CODEC, rate=fps, options={"preset": PRESET, "crf": str(CRF)})
        stream.width = width
        stream.height = height
        stream.pix_fmt = PIXEL_FORMAT
        stream.time_base = time_base
        codec = stream.codec_context
        codec.thread_type = ENCODER_THREAD_TYPE
        codec.thread_count = ENCODER_THREADS
        codec.color_primaries = _BT709
        codec.color_trc = _BT709
        codec.colorspace = _BT709
        codec.color_range = _LIMITED_RANGE

        # Worker threads draw the next few frames while this thread encodes the
        # current one (OpenCV and x264 run with the GIL released). Only a
        # few frames are in flight at a time, so memory stays small.
        pending: deque[Future[av.VideoFrame]] = deque()
        next_to_draw = 0
        try:
            for index in range(frames):
                while next_to_draw < frames and len(pending) < FRAMES_AHEAD:
                    pending.append(pool.submit(draw, next_to_draw))
                    next_to_draw += 1
                container.mux(stream.encode(pending.popleft().result()))

                done = index + 1
                if progress is not None and done % step == 0 and done < frames:
                    progress(done / frames)
        finally:
            for future in pending:  # on an error, drop the frames not yet drawn
                future.cancel()

        container.mux(stream.encode(None))  # flush the frames x264 still holds
