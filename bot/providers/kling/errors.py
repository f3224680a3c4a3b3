"""Kling's answers and failures, and how each maps onto the provider port's error classes.

Every Kling answer is ``{code, message, request_id, data}``; a non-zero code
is a failure. :class:`ApiFailure` carries it inside this package;
:func:`to_port_error` says who can fix it (docs/PROVIDERS.md has the table):

- 1302 (rate limit) and 1303 (too many parallel tasks) are waited out where
  they happen (:mod:`.client`, :mod:`.capacity`) and only reach this mapping
  from a path that cannot wait: :class:`RetryableError`, as are 5000-5002
  (server) and any transport problem;
- 1300, 1301 (policy, content safety): :class:`ContentRefused`;
- 1000-1004 (auth), 1100-1102 (account, balance), 1103 (no access to the
  model): :class:`OperatorError`, one condition per code;
- 1200, 1201 (bad parameters) and 1202 (wrong request method): our bug, a
  plain :class:`ProviderError` (the job fails and is refunded); 1203 (no such
  task) on a query means Kling has no task by that id (``lost``);
- anything else: a plain :class:`ProviderError` naming the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.providers.base import ContentRefused, OperatorError, ProviderError, RetryableError

AUTH_CODES = frozenset(range(1000, 1005))
TOKEN_EXPIRED = 1004
ACCOUNT_CODES = frozenset({1100, 1101, 1102, 1103})
BAD_REQUEST_CODES = frozenset({1200, 1201, 1202})
"""Kling refused the request itself (parameters, method): a bug in klingbot, logged."""
WRONG_METHOD = 1202
TASK_NOT_FOUND = 1203
POLICY = 1300
CONTENT_SAFETY = 1301
RATE_LIMIT = 1302
TOO_MANY_TASKS = 1303
SERVER_CODES = frozenset({5000, 5001, 5002})

_OPERATOR_HINTS = {
    1000: "Kling refused the API keys (check KLING_ACCESS_KEY and KLING_SECRET_KEY)",
    1001: "Kling saw no credentials",
    1002: "Kling refused the token: wrong keys, or keys of another region (KLING_BASE_URL)",
    1003: "Kling says the token is not valid yet: is this machine's clock right?",
    1004: "Kling says the token expired: is this machine's clock right?",
    1100: "the Kling account is not usable (code 1100)",
    1101: "the Kling account is in arrears",
    1102: "the Kling account has no resource packs or balance left",
    1103: "the Kling account has no access to this model or feature",
}

# Words in a failed task's ``task_status_msg`` that mean its content was refused.
_CONTENT_WORDS = ("risk", "content", "safety", "sensitive", "policy", "moderation", "风控", "违规")


@dataclass(eq=False)
class ApiFailure(Exception):
    """Kling answered with a non-zero code (or an HTTP error without one: ``code`` 0)."""

    status: int
    code: int
    message: str
    request_id: str = ""

    def __str__(self) -> str:
        request = f", request {self.request_id}" if self.request_id else ""
        return f"Kling code {self.code} (HTTP {self.status}{request}): {self.message}"

    @property
    def duplicate_external_id(self) -> bool:
        """The create was refused because a task with our ``external_task_id`` exists."""
        text = self.message.lower()
        return self.code == 1201 and "external" in text and ("exist" in text or "duplic" in text)

    @property
    def outcome_unknown(self) -> bool:
        """A server failure: the request may have been carried out anyway (a task made)."""
        return self.code in SERVER_CODES or (self.code == 0 and self.status >= 500)


class Unreachable(Exception):
    """No answer from Kling: connection refused or reset, timeout, DNS failure."""


def to_port_error(failure: ApiFailure) -> ProviderError:
    """The port's error class for a Kling failure."""
    code = failure.code
    if code in (RATE_LIMIT, TOO_MANY_TASKS) or code in SERVER_CODES:
        return RetryableError(str(failure))
    if failure.code == 0 and failure.status in (429, 500, 502, 503, 504):
        return RetryableError(str(failure))
    if code == POLICY:
        return ContentRefused(failure.message, reason_key="kling.content_policy")
    if code == CONTENT_SAFETY:
        return ContentRefused(failure.message, reason_key="kling.content_safety")
    if code in AUTH_CODES or code in ACCOUNT_CODES:
        return OperatorError(f"{_OPERATOR_HINTS[code]}; {failure}", condition=f"kling:{code}")
    if code in BAD_REQUEST_CODES:
        return ProviderError(f"Kling refused our request (a bug in klingbot): {failure}")
    return ProviderError(f"unexpected answer from Kling: {failure}")


def failed_task_error(message: str) -> ProviderError:
    """The error of a task that ended ``failed``: refused content, or the service's failure."""
    lowered = message.lower()
    if any(word in lowered for word in _CONTENT_WORDS):
        return ContentRefused(message, reason_key="kling.content_safety")
    return ProviderError(f"Kling could not make the clip: {message or 'no reason given'}")


def operator_hint(code: int) -> str | None:
    """A one-line explanation of an auth or account code, for the operator."""
    return _OPERATOR_HINTS.get(code)
