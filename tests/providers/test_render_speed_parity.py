"""The renderer's fast path keeps the motion: OpenCV frames match the exact sub-pixel crop.

Frames are drawn by OpenCV's resize from an integer span of each plane, with
whole output pixels skipped to reach the box's fractional position
(bot/providers/local/scaler.py), and x264 runs frame threads. These tests check
that the camera path did not move: every output pixel's sample lies within a
fraction of a pixel of where the exact box puts it, the drawn planes match the
same filter evaluated at the exact box and Pillow's fractional-box resize of
the same plane, and the encoder settings are the ones the benchmark compares
with the ffmpeg command line. No timings here: speed is measured by
bench/render_vs_ffmpeg.py.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from bot.providers.local import MOTIONS, RenderRequest, frame_size, render_clip
from bot.providers.local.motion import MAX_ZOOM, camera_at, crop_box
from bot.providers.local.render import _prepare_source, _yuv_planes, decode_image
from bot.providers.local.scaler import (
    PAD,
    SOURCE_SCALE,
    box_array,
    chroma_scale,
    draw_plane,
    pad_plane,
    plan_plane,
    usable_as_is,
)

SAMPLE = Path(__file__).resolve().parents[2] / "bot" / "assets" / "sample.jpg"


def boxes_for(motion: str, frame: tuple[int, int], source: tuple[int, int], frames: int):
    times = [index / (frames - 1) for index in range(frames)]
    return box_array([crop_box(camera_at(motion, t), frame, source) for t in times])


def kernel_weights(lo: float, hi: float, size: int, out: int, cubic: bool) -> np.ndarray:
    """The ``(out, size)`` matrix of a 1-D resampling of ``[lo, hi)`` onto ``out`` pixels.

    OpenCV's filters, written out: two-tap linear, or four-tap cubic with a = -0.75,
    centre-aligned, the edge pixel repeated past the ends, at the exact box.
    """
    weights = np.zeros((out, size))
    for x in range(out):
        position = lo + (x + 0.5) * (hi - lo) / out - 0.5
        base = math.floor(position)
        t = position - base
        if cubic:
            a = -0.75
            taps = {
                -1: ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
                0: ((a + 2) * t - (a + 3)) * t * t + 1,
                1: ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
            }
            taps[2] = 1.0 - sum(taps.values())
        else:
            taps = {0: 1.0 - t, 1: t}
        for offset, weight in taps.items():
            weights[x, min(max(base + offset, 0), size - 1)] += weight
    return weights


def exact_resample(
    plane: np.ndarray, box: tuple[float, ...], out: tuple[int, int], *, colour: bool = False
) -> np.ndarray:
    """Resample the fractional ``box`` of ``plane`` to ``out`` with the renderer's filter.

    Bicubic when enlarging the brightness plane, bilinear otherwise.
    """
    left, top, right, bottom = box
    cubic = not colour and out[0] * out[1] > (right - left) * (bottom - top)
    across = kernel_weights(left, right, plane.shape[1], out[0], cubic)
    down = kernel_weights(top, bottom, plane.shape[0], out[1], cubic)
    return np.clip(np.rint(down @ plane.astype(np.float64) @ across.T), 0, 255)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / max(mse, 1e-12))


@pytest.mark.parametrize("motion", MOTIONS)
@pytest.mark.parametrize("frame", [(960, 720), (1440, 1080), (720, 1280), (256, 144), (28, 16)])
def test_every_box_is_placed_within_a_fifth_of_a_pixel(motion: str, frame: tuple[int, int]) -> None:
    source = (math.ceil(frame[0] * SOURCE_SCALE), math.ceil(frame[1] * SOURCE_SCALE))
    chroma = (math.ceil(source[0] / 2), math.ceil(source[1] / 2))
    boxes = boxes_for(motion, frame, source, 240)

    luma = plan_plane(boxes, (1.0, 1.0), source, frame)
    colour = plan_plane(
        boxes,
        (chroma[0] / source[0], chroma[1] / source[1]),
        chroma,
        (frame[0] // 2, frame[1] // 2),
    )

    assert luma.error < 0.2
    assert colour.error < 0.2
    colour_scale = (chroma[0] / source[0], chroma[1] / source[1])
    for plan, size, scale in ((luma, source, (1.0, 1.0)), (colour, chroma, colour_scale)):
        for axis, length, out, (lo, hi), factor in (
            (plan.x, size[0], plan.out[0], (boxes[:, 0], boxes[:, 2]), scale[0]),
            (plan.y, size[1], plan.out[1], (boxes[:, 1], boxes[:, 3]), scale[1]),
        ):
            # The span stays inside the padded plane, and the kept window inside the
            # span as OpenCV scales it (it rounds the scaled size to the nearest pixel).
            assert (axis.start >= -PAD).all()
            assert (axis.start + axis.span <= length + PAD).all()
            scaled = np.rint(axis.span * axis.factor)
            assert (axis.skip >= 0).all()
            assert (axis.skip + out <= scaled).all()
            # Where the first and last kept pixels sample the plane, against where the
            # exact box puts them (centre-aligned pixels on both sides).
            lo, hi = lo * factor, hi * factor
            for x in (0, out - 1):
                got = axis.start + (axis.skip + x + 0.5) / axis.factor - 0.5
                want = lo + (x + 0.5) * (hi - lo) / out - 0.5
                assert np.abs(got - want).max() < 0.2
            # With MARGIN real pixels around the samples, none is clamped at the span's ends.
            first = axis.start + (axis.skip + 0.5) / axis.factor - 0.5
            last = axis.start + (axis.skip + out - 0.5) / axis.factor - 0.5
            assert (first - axis.start >= 1.5).all()
            assert (axis.start + axis.span - 1 - last >= 2).all()


@pytest.mark.parametrize("motion", MOTIONS)
@pytest.mark.parametrize("resolution", [360, 720, 1080])  # resampled, downscaled, upscaled
def test_drawn_planes_match_the_exact_fractional_box_resize(motion: str, resolution: int) -> None:
    picture = decode_image(SAMPLE.read_bytes())  # 1280x960
    frame = frame_size(*picture.size, resolution)
    source = _prepare_source(picture, frame)
    y_plane, u_plane, _ = _yuv_planes(source)
    boxes = boxes_for(motion, frame, source.size, 6)
    half = (frame[0] // 2, frame[1] // 2)
    luma = plan_plane(boxes, (1.0, 1.0), source.size, frame)
    scale = chroma_scale(y_plane, u_plane)
    colour = plan_plane(boxes, scale, (u_plane.shape[1], u_plane.shape[0]), half)
    padded_y, padded_u = pad_plane(y_plane), pad_plane(u_plane)

    for index, box in enumerate(boxes):
        drawn_y = np.empty((frame[1], frame[0]), np.uint8)
        drawn_u = np.empty((half[1], half[0]), np.uint8)
        draw_plane(padded_y, luma, index, drawn_y)
        draw_plane(padded_u, colour, index, drawn_u, colour=True)
        chroma_box = (box[0] * scale[0], box[1] * scale[1], box[2] * scale[0], box[3] * scale[1])
        # The same filter evaluated at the exact fractional box: only the placement
        # error (at most a fifth of a pixel) and OpenCV's fixed-point rounding differ.
        assert psnr(drawn_y, exact_resample(y_plane, tuple(box), frame)) > 52.0, f"frame {index}"
        exact_u = exact_resample(u_plane, chroma_box, half, colour=True)
        assert psnr(drawn_u, exact_u) > 52.0, f"frame {index}"
        # And Pillow's resize of the same box with the same kind of filter (it widens the
        # filter when shrinking, so it is a little softer there): the same picture.
        enlarging = frame[0] > box[2] - box[0]
        kind = Image.Resampling.BICUBIC if enlarging else Image.Resampling.BILINEAR
        exact_y = Image.fromarray(y_plane).resize(frame, kind, box=tuple(box))
        kind = Image.Resampling.BILINEAR
        exact_u = Image.fromarray(u_plane).resize(half, kind, box=chroma_box)
        assert psnr(drawn_y, np.asarray(exact_y)) > 45.0, f"frame {index}"
        assert psnr(drawn_u, np.asarray(exact_u)) > 45.0, f"frame {index}"


@pytest.mark.parametrize(
    ("resolution", "as_is"),
    [(1080, True), (720, True), (360, False), (900, False), (990, False)],
)
def test_the_picture_is_resampled_first_only_when_needed(resolution: int, as_is: bool) -> None:
    picture = decode_image(SAMPLE.read_bytes())  # 1280x960: 0.89, 1.33, 2.67, 1.07, 0.97 frames
    frame = frame_size(*picture.size, resolution)

    source = _prepare_source(picture, frame)

    assert (source is picture) is as_is
    ratio = min(source.width / frame[0], source.height / frame[1])
    # Whatever the path, no frame (zoom 1 to MAX_ZOOM) is within 4% of a 1:1 copy.
    for zoom in np.linspace(1.0, MAX_ZOOM, 41):
        assert abs(zoom / ratio - 1.0) >= 0.04 - 1e-9
    assert usable_as_is(ratio)
    if not as_is:
        assert ratio == pytest.approx(SOURCE_SCALE, abs=0.01)


def test_push_in_frames_match_the_exact_motion_after_encoding(tmp_path: Path) -> None:
    image = SAMPLE.read_bytes()
    picture = decode_image(image)
    result = render_clip(RenderRequest(image, "push in", 144, 2), tmp_path / "clip.mp4")

    with av.open(str(result.path)) as container:
        decoded = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    frame = (result.width, result.height)
    last = len(decoded) - 1

    def exact(index: int) -> np.ndarray:
        box = crop_box(camera_at("push_in", index / last), frame, picture.size)
        return np.asarray(picture.resize(frame, Image.Resampling.LANCZOS, box=box).convert("L"))

    # Each frame is close to the exact frame of its own instant, and clearly closer to it
    # than to the frames at the other instants: the camera moved, in the right direction.
    instants = (0, last // 2, last)
    for index in instants:
        near = psnr(decoded[index], exact(index))
        assert near > 30.0, f"frame {index}"
        for other in instants:
            if other != index:
                assert near > psnr(decoded[index], exact(other)) + 3.0, f"{index} vs {other}"


def test_x264_uses_frame_threads_as_the_ffmpeg_command_line_does(tmp_path: Path) -> None:
    result = render_clip(RenderRequest(SAMPLE.read_bytes(), "pan", 144, 1), tmp_path / "c.mp4")

    options = re.search(rb"x264 - core \d+.*? - options: ([^\x00]*)", result.path.read_bytes())
    assert options is not None
    settings = dict(item.split("=", 1) for item in options.group(1).decode().split())
    assert settings["sliced_threads"] == "0"
    assert int(settings["threads"]) >= 1
    assert settings["crf"] == "23.0"
