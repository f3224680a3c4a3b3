"""Benchmark: our local renderer against the ffmpeg command line doing the same push-in.

Run it with ``python bench/render_vs_ffmpeg.py`` (needs the ``dev`` extra for
``imageio-ffmpeg``, which ships an ffmpeg binary). For 5 s clips at 720p and
1080p made from ``bot/assets/sample.jpg``, it renders:

- ours: :func:`bot.providers.local.render_clip` with a push-in prompt;
- ffmpeg ``zoompan``: the usual ffmpeg way to animate a still picture;
- ffmpeg ``scale+crop``: the picture rescaled every frame, then cropped at the centre.

What is the same on every side: the input file, the frame size, 120 frames at
24 fps, the cosine-eased zoom from 1.0 to 1.2 centred on the picture, BT.709
limited-range yuv420p tagged as such, and libx264 with preset veryfast, CRF 23
and x264's own thread choice (``threads=0``: frame threads, 1.5 per core). The
script reads x264's settings back from each clip (x264 writes them into the
stream) and says whether they are identical.

Each method runs once per round, in an order that rotates from round to round,
for ``--repeats`` rounds; a round's ratio ours / ffmpeg compares runs made
within seconds of each other, so a busy moment on the shared machine is mostly
felt by both. It prints, per resolution, the median and the best of those
ratios, the CPU seconds, the size of each clip, and its quality against a
reference: the same motion drawn exactly (each frame's box cut from the
original picture with Lanczos in Pillow, at sub-pixel precision, and converted
to BT.709 yuv420p without compression). PSNR counts all three planes; SSIM is
the brightness plane's, computed as ffmpeg's ``ssim`` filter does (8x8 windows
at a 4-pixel stride). A clip that is faster but further from the reference
would show it there.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import imageio_ffmpeg
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from bot.providers.local import RenderRequest, frame_size, render_clip  # noqa: E402
from bot.providers.local.motion import MAX_ZOOM, PUSH_IN, camera_at, crop_box  # noqa: E402
from bot.providers.local.render import (  # noqa: E402
    CRF,
    ENCODER_THREADS,
    PRESET,
    decode_image,
)

SAMPLE = ROOT / "bot" / "assets" / "sample.jpg"
FPS = 24
DURATION_S = 5
FRAMES = FPS * DURATION_S
METHODS = ("ours", "zoompan", "scale+crop")
# The x264 settings that may differ between clips without making the comparison
# unfair: none. Any difference is printed.
X264_OPTIONS = re.compile(rb"x264 - core (\d+).*? - options: ([^\x00]*)")


@dataclass
class Timings:
    """Wall and CPU seconds of each run of one method."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and by its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_once(run: Callable[[], object]) -> tuple[float, float]:
    """Run ``run`` once and return its wall and CPU seconds (threads and children included)."""
    cpu, start = cpu_seconds(), time.perf_counter()
    run()
    return time.perf_counter() - start, cpu_seconds() - cpu


def ffmpeg_command(
    ffmpeg: str, image: Path, out: Path, size: tuple[int, int], method: str
) -> list[str]:
    """Build the ffmpeg command line for a 5 s eased push-in with ``method``."""
    width, height = size
    # The same eased zoom as ours: 1.0 -> 1.2 with a cosine ease, frame by frame.
    ease = f"(0.5-0.5*cos(PI*{{n}}/{FRAMES - 1}))"
    zoom = f"(1+{MAX_ZOOM - 1:.2f}*{ease})"
    source_w, source_h = round(width * MAX_ZOOM), round(height * MAX_ZOOM)
    # The picture is converted once to BT.709 limited-range yuv420p, as ours is (by way
    # of RGB, so that the JPEG's BT.601 colours are really converted, not relabelled),
    # so the per-frame work is the same: move the camera, encode.
    prepare = (
        f"format=rgb24,scale={source_w}:{source_h}:flags=lanczos"
        ":out_color_matrix=bt709:out_range=tv,format=yuv420p"
    )
    if method == "zoompan":
        inputs = ["-i", str(image)]
        z = zoom.format(n="on")
        video_filter = (
            f"{prepare},zoompan=z='{z}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)'"
            f":d={FRAMES}:s={width}x{height}:fps={FPS}"
        )
    elif method == "scale+crop":
        inputs = ["-loop", "1", "-framerate", str(FPS), "-i", str(image)]
        z = zoom.format(n="n")
        scaled_w = f"trunc({source_w}/{MAX_ZOOM}*{z}/2)*2"
        scaled_h = f"trunc({source_h}/{MAX_ZOOM}*{z}/2)*2"
        # crop reads the input size once, so the centre comes from the frame number.
        video_filter = (
            f"{prepare},scale=w='{scaled_w}':h='{scaled_h}':eval=frame,"
            f"crop={width}:{height}:x='({scaled_w}-{width})/2':y='({scaled_h}-{height})/2'"
        )
    else:
        raise ValueError(method)
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        *inputs,
        "-vf", video_filter,
        "-frames:v", str(FRAMES),
        "-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF),
        "-threads", str(ENCODER_THREADS), "-pix_fmt", "yuv420p",
        "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
        "-color_range", "tv",
        "-r", str(FPS), "-movflags", "+faststart",
        str(out),
    ]  # fmt: skip


def count_frames(path: Path) -> tuple[int, float]:
    """Return the number of frames and the duration in seconds of a clip."""
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        return frames, container.duration / av.time_base


def x264_options(path: Path) -> str:
    """Return the settings x264 wrote into a clip (``core N: options``)."""
    match = X264_OPTIONS.search(path.read_bytes())
    return f"core {match.group(1).decode()}: {match.group(2).decode()}" if match else "?"


def planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Return a yuv420p frame's Y, U and V planes as arrays, without row padding."""
    arrays = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
        arrays.append(rows[:, : plane.width])
    return arrays


def reference_frames(image: Image.Image, size: tuple[int, int]) -> Iterator[list[np.ndarray]]:
    """Yield the exact push-in, frame by frame, as BT.709 limited-range yuv420p planes.

    Each frame's box is cut from the original picture at sub-pixel precision
    and scaled with Lanczos: what every renderer approximates.
    """
    for index in range(FRAMES):
        box = crop_box(camera_at(PUSH_IN, index / (FRAMES - 1)), size, image.size)
        exact = image.resize(size, Image.Resampling.LANCZOS, box=box)
        frame = av.VideoFrame.from_image(exact).reformat(
            format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"
        )
        yield [plane.copy() for plane in planes(frame)]


def clip_frames(path: Path) -> Iterator[list[np.ndarray]]:
    """Yield a clip's decoded frames as yuv420p planes."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield planes(frame.reformat(format="yuv420p"))


def ssim_sums(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """SSIM of two planes as ffmpeg's ``ssim`` filter computes it: (sum over windows, windows).

    Sums are taken over 4x4 blocks, then each 8x8 window (2x2 blocks, so a
    4-pixel stride) gets its SSIM from those sums.
    """
    height, width = (a.shape[0] // 4) * 4, (a.shape[1] // 4) * 4
    x = a[:height, :width].astype(np.float64)
    y = b[:height, :width].astype(np.float64)

    def block_sums(values: np.ndarray) -> np.ndarray:
        blocks = values.reshape(height // 4, 4, width // 4, 4).sum(axis=(1, 3))
        return blocks[:-1, :-1] + blocks[1:, :-1] + blocks[:-1, 1:] + blocks[1:, 1:]

    s1, s2 = block_sums(x), block_sums(y)
    ss, s12 = block_sums(x * x + y * y), block_sums(x * y)
    # ffmpeg's constants for 8-bit samples and 64-pixel windows.
    c1 = 0.01**2 * 255**2 * 64 * 64
    c2 = 0.03**2 * 255**2 * 64 * 63
    fs1s2, fs1s1s2s2 = s1 * s2, s1 * s1 + s2 * s2
    covariance = s12 * 64 * 2 - fs1s2 * 2
    variance = ss * 64 - fs1s1s2s2
    ssim = ((2 * fs1s2 + c1) * (covariance + c2)) / ((fs1s1s2s2 + c1) * (variance + c2))
    return float(ssim.sum()), ssim.size


def quality(paths: dict[str, Path], image: Image.Image, size: tuple[int, int]) -> dict:
    """Compare each clip with the exact reference: PSNR (all planes) and SSIM (Y), per method."""
    squared = dict.fromkeys(paths, 0.0)
    samples = 0
    ssim = {method: [0.0, 0] for method in paths}
    clips = {method: clip_frames(path) for method, path in paths.items()}
    for reference in reference_frames(image, size):
        samples += sum(plane.size for plane in reference)
        for method, frames in clips.items():
            clip = next(frames)
            for got, want in zip(clip, reference, strict=True):
                squared[method] += float(np.sum((got.astype(np.int32) - want) ** 2))
            total, windows = ssim_sums(clip[0], reference[0])
            ssim[method][0] += total
            ssim[method][1] += windows
    return {
        method: (
            10 * math.log10(255**2 / max(squared[method] / samples, 1e-12)),
            ssim[method][0] / ssim[method][1],
        )
        for method in paths
    }


def main() -> None:
    """Time ours against ffmpeg at 720p and 1080p and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--image", type=Path, default=SAMPLE, help="picture to animate")
    parser.add_argument(
        "--resolutions", type=int, nargs="+", default=[720, 1080], help="tiers to run"
    )
    parser.add_argument("--no-quality", action="store_true", help="skip the PSNR/SSIM pass")
    args = parser.parse_args()

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    image_bytes = args.image.read_bytes()
    image = decode_image(image_bytes)
    print(f"image: {args.image.name}; {DURATION_S} s at {FPS} fps, push-in 1.0 -> {MAX_ZOOM}")
    print(
        f"ffmpeg: {ffmpeg} (imageio-ffmpeg {imageio_ffmpeg.__version__}); PyAV {av.__version__}"
        f", OpenCV {cv2.__version__} (ours draws frames with it)"
    )
    print(
        f"x264: preset {PRESET}, crf {CRF}, threads {ENCODER_THREADS} (0 = x264 picks) "
        f"on both sides; {args.repeats} rounds, order rotated each round"
    )
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}")

    results = []
    with tempfile.TemporaryDirectory(prefix="render-bench-") as folder:
        for resolution in args.resolutions:
            size = frame_size(*image.size, resolution)
            request = RenderRequest(image_bytes, "push in", resolution, DURATION_S, FPS)
            paths = {method: Path(folder) / f"{method}-{resolution}.mp4" for method in METHODS}
            runs: dict[str, Callable[[], object]] = {
                "ours": lambda: render_clip(request, paths["ours"]),  # noqa: B023
            }
            for method in METHODS[1:]:
                command = ffmpeg_command(ffmpeg, args.image, paths[method], size, method)
                runs[method] = lambda command=command: subprocess.run(command, check=True)

            timings = {method: Timings() for method in METHODS}
            for round_ in range(args.repeats):
                shift = round_ % len(METHODS)
                for method in METHODS[shift:] + METHODS[:shift]:
                    wall, cpu = time_once(runs[method])
                    timings[method].wall.append(wall)
                    timings[method].cpu.append(cpu)

            for method in METHODS:
                frames, duration = count_frames(paths[method])
                if frames != FRAMES or abs(duration - DURATION_S) > 0.1:
                    print(f"warning: {method} gave {frames} frames, {duration:.2f} s")
            options = {method: x264_options(paths[method]) for method in METHODS}
            same = all(options[method] == options["ours"] for method in METHODS)
            verdict = "yes" if same else "NO"
            print(f"\n{resolution}p: x264 settings identical in all clips: {verdict}")
            for method in METHODS if not same else ("ours",):
                print(f"  {method}: {options[method]}")
            scores = {} if args.no_quality else quality(paths, image, size)
            sizes = {method: paths[method].stat().st_size for method in METHODS}
            results.append((resolution, sizes, timings, scores))

    print(
        f"\n{'tier':<5} {'method':<10} | {'wall s (median, best)':>21} | {'ratio med':>9} "
        f"{'ratio best':>10} | {'CPU s':>5} | {'size KB':>7} | {'PSNR dB':>7} {'SSIM Y':>6}"
    )
    print("-" * 100)
    for resolution, sizes, timings, scores in results:
        ours = timings["ours"]
        for method in METHODS:
            mine = timings[method]
            # Ratio of ours to this method within each round, then the median over rounds.
            ratios = [a / b for a, b in zip(ours.wall, mine.wall, strict=True)]
            psnr, ssim = scores.get(method, (math.nan, math.nan))
            print(
                f"{resolution}p  {method:<10} | {statistics.median(mine.wall):10.2f} "
                f"{min(mine.wall):10.2f} | {statistics.median(ratios):9.2f} "
                f"{min(ours.wall) / min(mine.wall):10.2f} | {statistics.median(mine.cpu):5.2f} "
                f"| {sizes[method] / 1024:7.0f} | {psnr:7.2f} {ssim:6.4f}"
            )
        ratios = [
            f"{a / b:.2f}" for a, b in zip(ours.wall, timings["zoompan"].wall, strict=True)
        ]
        print(f"{resolution}p  ours / zoompan per round: {' '.join(ratios)}")
    print(
        "\nratio = ours / ffmpeg wall time (median of the per-round ratios; ratio of the"
        " best times): below 1.00 means the local renderer is faster."
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
