"""One clip showing several clips side by side, each under its label (``/compare``).

Made with the local renderer's own tools: PyAV decodes the clips and encodes
the result with libx264, OpenCV scales each frame, Pillow draws the labels
(with the title cards' font, so Chinese tier names show). A plain,
synchronous function: run it in a worker thread.

Every panel has the same height (the lowest clip's, at most ``max_height``),
its width following its clip's aspect ratio; the whole is at most
``max_width`` wide (the panels shrink together). Above each panel a dark
strip carries its label. The clips are read in lockstep, frame by frame, so
the result is as long as the shortest one and all panels stay in step; only
one frame of each clip is in memory at a time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
from PIL import Image, ImageDraw

from bot.providers.local.render import ENCODER_THREAD_TYPE, ENCODER_THREADS, _yuv_planes
from bot.providers.local.scaler import frame_planes
from bot.providers.local.titlecard import load_font

GAP = 4
"""Pixels of black between two panels."""

LABEL_SHARE = 0.1
"""The label strip's height, as a share of the panel height (at least 24 pixels)."""

CODEC = "libx264"
PRESET = "veryfast"
CRF = 26


@dataclass(frozen=True, slots=True)
class Panel:
    """One clip and the label shown above it."""

    path: Path
    label: str


@dataclass(frozen=True, slots=True)
class SideBySide:
    """What :func:`side_by_side` wrote: the frame size, frame count and rate."""

    width: int
    height: int
    frames: int
    fps: int


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def _frames(container: av.container.InputContainer) -> Iterator[av.VideoFrame]:
    for frame in container.decode(video=0):
        yield frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")


def _label_strip(labels: Sequence[str], widths: Sequence[int], height: int) -> Image.Image:
    """The strip above the panels: each label centred over its panel, black in the gaps."""
    total = sum(widths) + GAP * (len(widths) - 1)
    strip = Image.new("RGB", (total, height), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    left = 0
    for label, width in zip(labels, widths, strict=True):
        draw.rectangle((left, 0, left + width - 1, height - 1), fill=(40, 40, 46))
        size = max(10, int(height * 0.6))
        font = load_font(size)
        while size > 8 and draw.textlength(label, font=font) > width - 8:
            size -= 2
            font = load_font(size)
        x0, y0, x1, y1 = draw.textbbox((0, 0), label, font=font)
        x = left + (width - (x1 - x0)) / 2 - x0
        y = (height - (y1 - y0)) / 2 - y0
        draw.text((x, y), label, font=font, fill=(255, 255, 255))
        left += width + GAP
    return strip


def layout(sizes: Sequence[tuple[int, int]], max_width: int, max_height: int) -> tuple[int, ...]:
    """The panels' widths and, last, their common height, for clips of these sizes."""
    height = min(max_height, *(h for _, h in sizes))
    gaps = GAP * (len(sizes) - 1)
    natural = sum(w * height / h for w, h in sizes)
    if natural + gaps > max_width:
        height = height * (max_width - gaps) / natural
    height = _even(height)
    return (*(_even(w * height / h) for w, h in sizes), height)


def side_by_side(
    panels: Sequence[Panel], out_path: Path, *, max_width: int = 1280, max_height: int = 720
) -> SideBySide:
    """Write the panels side by side, labelled, as an H.264 MP4 at ``out_path``.

    The file is written next to ``out_path`` and moved into place, so a
    crash never leaves half a clip there.
    """
    if len(panels) < 2:
        raise ValueError("a side-by-side clip needs two clips at least")
    containers = [av.open(str(panel.path)) for panel in panels]
    try:
        streams = [container.streams.video[0] for container in containers]
        sizes = [(stream.codec_context.width, stream.codec_context.height) for stream in streams]
        *widths, height = layout(sizes, max_width, max_height)
        strip = max(24, _even(height * LABEL_SHARE))
        total_width = sum(widths) + GAP * (len(panels) - 1)
        total_height = height + strip
        rates = [stream.average_rate or stream.guessed_rate or Fraction(24) for stream in streams]
        fps = max(1, round(min(rates)))
        # Worked in the video's own colour format (yuv420p), as the renderer does: the
        # label strip is converted once, each clip's planes are scaled into place.
        label_planes = _yuv_planes(_label_strip([p.label for p in panels], widths, strip))
        lefts = [sum(widths[:n]) + GAP * n for n in range(len(panels))]
        descriptor, temporary = tempfile.mkstemp(
            suffix=".mp4", prefix=".compare-", dir=out_path.parent
        )
        os.close(descriptor)
        frames = 0
        cv2.setNumThreads(1)
        try:
            with av.open(
                temporary, mode="w", format="mp4", container_options={"movflags": "+faststart"}
            ) as output:
                stream = output.add_stream(
                    CODEC, rate=fps, options={"preset": PRESET, "crf": str(CRF)}
                )
                stream.width = total_width
                stream.height = total_height
                stream.pix_fmt = "yuv420p"
                stream.codec_context.thread_type = ENCODER_THREAD_TYPE
                stream.codec_context.thread_count = ENCODER_THREADS
                readers = [_frames(container) for container in containers]
                for pictures in zip(*readers, strict=False):
                    frame = av.VideoFrame(total_width, total_height, "yuv420p")
                    for index, (out, label) in enumerate(
                        zip(frame_planes(frame), label_planes, strict=True)
                    ):
                        shift = 0 if index == 0 else 1  # colour planes: half size
                        out[: strip >> shift] = label
                        out[strip >> shift :] = 16 if index == 0 else 128  # black gaps
                        for picture, left, width in zip(pictures, lefts, widths, strict=True):
                            source = frame_planes(picture)[index]
                            out[
                                strip >> shift :, left >> shift : (left + width) >> shift
                            ] = cv2.resize(
                                source,
                                (width >> shift, height >> shift),
                                interpolation=cv2.INTER_LINEAR,
                            )
                    frame.pts = frames
                    frame.time_base = Fraction(1, fps)
                    output.mux(stream.encode(frame))
                    frames += 1
                output.mux(stream.encode(None))
            if frames == 0:
                raise ValueError("the clips have no frames")
            os.chmod(temporary, 0o644)  # mkstemp makes the file private; a clip is not a secret
            os.replace(temporary, out_path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    finally:
        for container in containers:
            container.close()
    return SideBySide(total_width, total_height, frames, fps)
