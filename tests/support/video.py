"""Clips in tests: make small real MP4s, and read them back the way a viewer would."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from bot.providers.local.render import RenderRequest, render_clip


@dataclass(frozen=True)
class Clip:
    """What a player sees: codec, frame size, duration, frame count (and, if read, the frames)."""

    codec: str
    width: int
    height: int
    duration_s: float
    frames: int
    pix_fmt: str = ""
    container_duration_s: float = 0.0
    pictures: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)


def probe(path: Path, *, pictures: bool = False) -> Clip:
    """Read ``path``'s first video stream; with ``pictures``, keep every frame as RGB."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        kept: list[np.ndarray] = []
        count = 0
        for frame in container.decode(stream):
            count += 1
            if pictures:
                kept.append(frame.to_ndarray(format="rgb24"))
        container_duration = container.duration / av.time_base if container.duration else 0.0
        duration = (
            float(stream.duration * stream.time_base) if stream.duration else container_duration
        )
        return Clip(
            codec=stream.codec_context.name,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            duration_s=duration,
            frames=count,
            pix_fmt=stream.codec_context.pix_fmt or "",
            container_duration_s=container_duration,
            pictures=kept,
        )


def tiny_clip(path: Path, prompt: str = "tiny") -> Path:
    """A real H.264 MP4 from the local renderer: 256x144, 1 s, 8 fps (well under a second)."""
    render_clip(RenderRequest(image=None, prompt=prompt, height=144, duration_s=1, fps=8), path)
    return path


def write_mp4(path: Path, width: int = 320, height: int = 240, frames: int = 48) -> None:
    """A synthetic H.264 MP4 of flat grey frames, without the renderer."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for n in range(frames):
            pixels = np.full((height, width, 3), n * 5 % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
