"""Benchmark: our local renderer against the ffmpeg command line doing the same push-in.

Run it with ``python bench/render_vs_ffmpeg.py`` (needs the ``dev`` extra for
``imageio-ffmpeg``, which ships an ffmpeg binary). For 5 s clips at 720p and
1080p made from ``bot/assets/sample.jpg``, it times:

- ours: :func:`bot.providers.local.render_clip` with a push-in prompt;
- ffmpeg ``zoompan``: the usual ffmpeg way to animate a still picture;
- ffmpeg ``scale+crop``: the picture rescaled every frame, then cropped at the centre.

All three use libx264, preset veryfast, CRF 23, yuv420p, 24 fps, the same frame
size and the same eased zoom from 1.0 to 1.2 over a picture first scaled to 1.2
times the frame. Each timing is the best of a few runs (``--repeats``), interleaved
in this one process run, so the machine is the same for everyone. It prints the
seconds of each and the ratio ours / ffmpeg (below 1 means we are faster).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import imageio_ffmpeg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from bot.providers.local import RenderRequest, frame_size, render_clip  # noqa: E402
from bot.providers.local.motion import MAX_ZOOM  # noqa: E402
from bot.providers.local.render import CRF, PRESET, decode_image  # noqa: E402

SAMPLE = ROOT / "bot" / "assets" / "sample.jpg"
FPS = 24
DURATION_S = 5


def time_once(run: Callable[[], object]) -> float:
    """Run ``run`` once and return its wall time in seconds."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def count_frames(path: Path) -> tuple[int, float]:
    """Return the number of frames and the duration in seconds of a clip."""
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        return frames, container.duration / av.time_base


def ffmpeg_command(
    ffmpeg: str, image: Path, out: Path, size: tuple[int, int], method: str
) -> list[str]:
    """Build the ffmpeg command line for a 5 s eased push-in with ``method``."""
    width, height = size
    frames = FPS * DURATION_S
    # The same eased zoom as ours: 1.0 -> 1.2 with a cosine ease, frame by frame.
    ease = f"(0.5-0.5*cos(PI*{{n}}/{frames - 1}))"
    zoom = f"(1+{MAX_ZOOM - 1:.2f}*{ease})"
    source_w, source_h = round(width * MAX_ZOOM), round(height * MAX_ZOOM)
    if method == "zoompan":
        inputs = ["-i", str(image)]
        z = zoom.format(n="on")
        video_filter = (
            f"scale={source_w}:{source_h}:flags=lanczos,"
            f"zoompan=z='{z}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)'"
            f":d={frames}:s={width}x{height}:fps={FPS}"
        )
    elif method == "scale+crop":
        inputs = ["-loop", "1", "-framerate", str(FPS), "-i", str(image)]
        z = zoom.format(n="n")
        video_filter = (
            f"scale=w='trunc({source_w}/{MAX_ZOOM}*{z}/2)*2'"
            f":h='trunc({source_h}/{MAX_ZOOM}*{z}/2)*2':eval=frame,"
            f"crop={width}:{height}"
        )
    else:
        raise ValueError(method)
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        *inputs,
        "-vf", video_filter,
        "-frames:v", str(frames),
        "-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-pix_fmt", "yuv420p",
        "-r", str(FPS), "-movflags", "+faststart",
        str(out),
    ]  # fmt: skip


def main() -> None:
    """Time ours against ffmpeg at 720p and 1080p and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing (best kept)")
    parser.add_argument("--image", type=Path, default=SAMPLE, help="picture to animate")
    args = parser.parse_args()

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    image_bytes = args.image.read_bytes()
    print(f"image: {args.image.name}; {DURATION_S} s at {FPS} fps, push-in 1.0 -> {MAX_ZOOM}")
    print(f"ffmpeg: {ffmpeg} (imageio-ffmpeg {imageio_ffmpeg.__version__}); PyAV {av.__version__}")
    print(f"x264: preset {PRESET}, crf {CRF}; best of {args.repeats}, runs interleaved")
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}\n")

    methods = ("ours", "zoompan", "scale+crop")
    header = (
        f"{'tier':<5} {'size':>9} | {'ours s':>6} | {'zoompan s':>9} {'ratio':>5} "
        f"| {'scale+crop s':>12} {'ratio':>5}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="render-bench-") as folder:
        for resolution in (720, 1080):
            size = frame_size(*decode_image(image_bytes).size, resolution)
            request = RenderRequest(image_bytes, "push in", resolution, DURATION_S, FPS)
            paths = {method: Path(folder) / f"{method}-{resolution}.mp4" for method in methods}
            runs: dict[str, Callable[[], object]] = {
                "ours": lambda: render_clip(request, paths["ours"]),  # noqa: B023
            }
            for method in ("zoompan", "scale+crop"):
                command = ffmpeg_command(ffmpeg, args.image, paths[method], size, method)
                runs[method] = lambda command=command: subprocess.run(command, check=True)

            # Interleave the runs, so that a busy moment on the machine hurts all alike;
            # keep each one's best time.
            best = {method: math.inf for method in methods}
            for _ in range(args.repeats):
                for method in methods:
                    best[method] = min(best[method], time_once(runs[method]))

            for method in methods:
                frames, duration = count_frames(paths[method])
                if frames != FPS * DURATION_S or abs(duration - DURATION_S) > 0.1:
                    print(f"warning: {method} gave {frames} frames, {duration:.2f} s")
            ours = best["ours"]
            tier, frame = f"{resolution}p", f"{size[0]}x{size[1]}"
            print(
                f"{tier:<5} {frame:>9} | {ours:6.2f} "
                f"| {best['zoompan']:9.2f} {ours / best['zoompan']:5.2f} "
                f"| {best['scale+crop']:12.2f} {ours / best['scale+crop']:5.2f}"
            )
    print("\nratio = ours / ffmpeg: below 1.00 means the local renderer is faster.")


if __name__ == "__main__":
    main()
