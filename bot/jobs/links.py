"""Signed, expiring links to a made clip, for chats that cannot take the file.

With ``KLINGBOT_PUBLIC_URL`` set, a clip too large for its chat (or one the
platform kept refusing) goes to its member as
``<public_url>/clips/<job id>.mp4?expires=<unix time>&sig=<signature>``: the
signature is an HMAC-SHA256 over the job id and the expiry, keyed by a
secret the bot keeps in its database. The bot's own HTTP server serves the
link (``app.clip_links``) until it expires or the clip is removed; a link
changed in any way is refused. Nothing here touches the network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from bot.ports import AppState

SECRET_KEY = "clip_links.secret"
"""The app-state key of the signing secret (hex), made on first use."""

JOB_ID = re.compile(r"[0-9a-f]{32}")
"""A job id as links carry it (``uuid4().hex``)."""


class ClipLinks:
    """Makes and checks the signed links to clips."""

    def __init__(self, public_url: str, secret: bytes, ttl_s: int) -> None:
        self.public_url = public_url.rstrip("/")
        self._secret = secret
        self.ttl_s = ttl_s

    def url(self, job_id: str, now: int) -> str:
        """A link to the job's clip that works for ``ttl_s`` seconds from ``now``."""
        expires = now + self.ttl_s
        signature = self.sign(job_id, expires)
        return f"{self.public_url}/clips/{job_id}.mp4?expires={expires}&sig={signature}"

    def sign(self, job_id: str, expires: int) -> str:
        """The signature of a link to ``job_id`` expiring at ``expires`` (URL-safe base64)."""
        digest = hmac.new(self._secret, f"{job_id}:{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def valid(self, job_id: str, expires: str, signature: str, now: int) -> bool:
        """The link is one we made, unchanged, and not yet expired."""
        if not JOB_ID.fullmatch(job_id) or not expires.isdigit() or len(expires) > 12:
            return False
        if int(expires) <= now:
            return False
        return hmac.compare_digest(self.sign(job_id, int(expires)), signature)


async def link_secret(state: AppState) -> bytes:
    """The signing secret, made (32 random bytes) and stored the first time it is needed."""
    stored = await state.get(SECRET_KEY)
    if stored is None:
        await state.put(SECRET_KEY, secrets.token_hex(32))
        stored = await state.get(SECRET_KEY)
    assert stored is not None
    return bytes.fromhex(stored)
