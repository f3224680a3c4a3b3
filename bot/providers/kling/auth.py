"""Kling's API authentication: a short-lived JWT signed with the secret key.

The header is ``{"alg": "HS256", "typ": "JWT"}``; the claims are ``iss`` (the
access key), ``exp`` (now + 30 min) and ``nbf`` (now - 5 s, for clock skew).
One token is reused for every call and renewed well before it expires, or at
once when Kling says it has expired (code 1004). The keys stay in
:class:`pydantic.SecretStr` and leave this module only inside the signature.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
from pydantic import SecretStr

LIFETIME_S = 1800
"""``exp`` is this far after the moment the token is made."""

NOT_BEFORE_SKEW_S = 5
"""``nbf`` is this far before that moment, so a server clock slightly behind ours accepts it."""

RENEW_BEFORE_S = 300
"""A token is replaced when less than this is left of its life."""


class TokenSource:
    """Makes and caches the bearer token; ``wall`` is the Unix clock (injectable for tests)."""

    def __init__(
        self,
        access_key: SecretStr,
        secret_key: SecretStr,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._wall = wall
        self._token: str | None = None
        self._expires = 0.0
        self.issued = 0
        """How many tokens were made (for tests and the provider check)."""

    def token(self) -> str:
        """The current token, renewed when less than :data:`RENEW_BEFORE_S` is left."""
        now = self._wall()
        if self._token is None or now >= self._expires - RENEW_BEFORE_S:
            issued_at = int(now)
            claims = {
                "iss": self._access_key.get_secret_value(),
                "exp": issued_at + LIFETIME_S,
                "nbf": issued_at - NOT_BEFORE_SKEW_S,
            }
            self._token = jwt.encode(
                claims,
                self._secret_key.get_secret_value(),
                algorithm="HS256",
                headers={"alg": "HS256", "typ": "JWT"},
            )
            self._expires = issued_at + LIFETIME_S
            self.issued += 1
        return self._token

    def renew(self) -> None:
        """Forget the current token (Kling refused it): the next call signs a new one."""
        self._token = None

    def __repr__(self) -> str:
        return "TokenSource(<keys hidden>)"
