"""In-memory implementations of the core's ports, for unit tests of the service layer.

They subclass the real ports, so a missing method fails at construction, and
keep the same rules as the SQLite ledger: idempotent keys, holds that end once,
no negative balance.
"""

from __future__ import annotations

from dataclasses import replace

from bot.commands import UserRef
from bot.errors import InsufficientCredits, NoWallet
from bot.ports import AppState, Hold, Ledger, LedgerEntry, Outcome, UserProfile, Wallet
from bot.reasons import reason


def _nocase(text: str) -> str:
    """SQLite's COLLATE NOCASE: only ASCII letters fold (``Ä`` and ``ä`` stay different)."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class FakeClock:
    """A clock that only moves when the test says so."""

    def __init__(self, now: int = 1_764_000_000) -> None:
        self.current = now

    def now(self) -> int:
        return self.current

    def advance(self, seconds: int) -> None:
        self.current += seconds


class InMemoryLedger(Ledger):
    """Dicts instead of tables; same behaviour as storage.ledger.SqliteLedger."""

    def __init__(self) -> None:
        self.users: dict[UserRef, UserProfile] = {}
        self.balances: dict[UserRef, int] = {}
        self.held: dict[UserRef, int] = {}
        self.holds: dict[str, Hold] = {}
        self.entries: list[LedgerEntry] = []
        self.fail_with: Exception | None = None

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def _prior(self, key: str) -> Outcome | None:
        for entry in self.entries:
            if entry.key == key:
                return Outcome(entry, applied=False)
        return None

    def _append(
        self,
        user: UserRef,
        kind: str,
        amount: int,
        held_delta: int,
        key: str,
        hold_id: str | None,
        actor: str,
        reason: str,
        now: int,
    ) -> Outcome:
        self.balances[user] += amount
        self.held[user] += held_delta
        entry = LedgerEntry(
            seq=len(self.entries) + 1,
            key=key,
            user=user,
            kind=kind,
            amount=amount,  # type: ignore[arg-type]
            held_delta=held_delta,
            balance_after=self.balances[user],
            held_after=self.held[user],
            hold_id=hold_id,
            actor=actor,
            reason=reason,
            created_at=now,
        )
        self.entries.append(entry)
        return Outcome(entry, applied=True)

    async def open_wallet(self, profile: UserProfile, *, welcome_credits: int, now: int) -> Wallet:
        self._check()
        self._open(profile, welcome_credits, now, refresh_profile=True)
        wallet = await self.wallet(profile.user)
        assert wallet is not None
        return wallet

    def _open(
        self, profile: UserProfile, welcome_credits: int, now: int, *, refresh_profile: bool
    ) -> None:
        """storage.ledger.open_wallet: usernames move to their newest holder; welcome once."""
        user = profile.user
        if refresh_profile and profile.username:
            for other, known in list(self.users.items()):
                if (
                    other.platform == user.platform
                    and other != user
                    and _nocase(known.username or "") == _nocase(profile.username)
                ):
                    self.users[other] = replace(known, username=None)
        if refresh_profile or user not in self.users:
            self.users[user] = profile
        if user not in self.balances:
            self.balances[user] = 0
            self.held[user] = 0
            if welcome_credits > 0:
                self._append(
                    user,
                    "topup",
                    welcome_credits,
                    0,
                    f"welcome:{user}",
                    None,
                    "system",
                    reason("reason.welcome"),
                    now,
                )

    async def wallet(self, user: UserRef) -> Wallet | None:
        self._check()
        if user not in self.balances:
            return None
        open_holds = sum(1 for h in self.holds.values() if h.user == user and h.state == "open")
        return Wallet(user, self.balances[user], self.held[user], open_holds)

    async def find_user(self, platform: str, query: str) -> UserProfile | None:
        self._check()
        name = _nocase(query.removeprefix("@"))
        on_platform = [p for p in self.users.values() if p.user.platform == platform]
        # As the SQL: an id match wins over a username match (ORDER BY user_id = query DESC).
        for profile in on_platform:
            if profile.user.id == query:
                return profile
        for profile in on_platform:
            if name and _nocase(profile.username or "") == name:
                return profile
        return None

    async def top_up(
        self,
        user,
        credits,
        *,
        key,
        actor,
        reason,
        now,
        create_wallet=False,
        welcome_credits=0,
    ) -> Outcome:
        self._check()
        if create_wallet and not self._prior(key):
            self._open(UserProfile(user), welcome_credits, now, refresh_profile=False)
        return await self.adjust(
            user, credits, key=key, actor=actor, reason=reason, now=now, kind="topup"
        )

    async def adjust(self, user, credits, *, key, actor, reason, now, kind="adjust") -> Outcome:
        self._check()
        if prior := self._prior(key):
            return prior
        if user not in self.balances:
            raise NoWallet(str(user))
        if self.balances[user] + credits < 0:
            raise InsufficientCredits(self.balances[user], -credits)
        return self._append(user, kind, credits, 0, key, None, actor, reason, now)

    async def hold(self, user, credits, *, hold_id, actor, reason, now) -> Outcome:
        self._check()
        if prior := self._prior(f"hold:{hold_id}"):
            return prior
        if user not in self.balances:
            raise NoWallet(str(user))
        if self.balances[user] < credits:
            raise InsufficientCredits(self.balances[user], credits)
        self.holds[hold_id] = Hold(hold_id, user, credits, "open")
        return self._append(
            user, "hold", -credits, credits, f"hold:{hold_id}", hold_id, actor, reason, now
        )

    async def _end(self, hold_id: str, kind: str, actor: str, reason: str, now: int) -> Outcome:
        self._check()
        hold = self.holds[hold_id]
        if hold.state != "open":
            ended = next(
                e for e in self.entries if e.hold_id == hold_id and e.kind in ("capture", "release")
            )
            return Outcome(ended, applied=False)
        self.holds[hold_id] = replace(hold, state="captured" if kind == "capture" else "released")
        back = hold.amount if kind == "release" else 0
        return self._append(
            hold.user, kind, back, -hold.amount, f"{kind}:{hold_id}", hold_id, actor, reason, now
        )

    async def capture(self, hold_id, *, actor, reason, now) -> Outcome:
        return await self._end(hold_id, "capture", actor, reason, now)

    async def release(self, hold_id, *, actor, reason, now) -> Outcome:
        return await self._end(hold_id, "release", actor, reason, now)

    async def get_hold(self, hold_id: str) -> Hold | None:
        self._check()
        return self.holds.get(hold_id)

    async def history(self, user: UserRef, limit: int) -> list[LedgerEntry]:
        self._check()
        return [e for e in reversed(self.entries) if e.user == user][:limit]


class InMemoryAppState(AppState):
    """Key/value facts in a dict."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def put(self, key: str, value: str) -> None:
        self.values[key] = value
