"""Read an MP4 back the way a viewer would: codec, size, duration, frames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av


@dataclass(frozen=True)
class Clip:
    codec: str
    width: int
    height: int
    duration_s: float
    frames: int


def probe(path: Path) -> Clip:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        duration = (
            float(stream.duration * stream.time_base)
            if stream.duration
            else (container.duration / 1_000_000)
        )
        return Clip(
            stream.codec_context.name,
            stream.codec_context.width,
            stream.codec_context.height,
            duration,
            frames,
        )
