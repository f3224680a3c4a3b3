"""The embedded local renderer: a real H.264 clip from one picture, or from a prompt alone.

It needs no network and no API key, so the bot can be tried end to end on any
machine. Its public API:

- :class:`RenderRequest` and :class:`RenderResult`: what to render, and what was rendered;
- :func:`render_clip`: render a request into an MP4 file (synchronous; run it in a thread);
- :func:`choose_motion`: the camera motion a prompt asks for (one of :data:`MOTIONS`).
"""

from bot.providers.local.motion import MOTIONS, choose_motion
from bot.providers.local.render import RenderRequest, RenderResult, frame_size, render_clip

__all__ = [
    "MOTIONS",
    "RenderRequest",
    "RenderResult",
    "choose_motion",
    "frame_size",
    "render_clip",
]
