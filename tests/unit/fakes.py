"""In-memory implementations of the core's ports, for unit tests of the service layer.

They subclass the real ports, so a missing method fails at construction, and
keep the same rules as the SQLite ledger: idempotent keys, holds that end once,
no negative balance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bot.commands import UserRef
from bot.errors import InsufficientCredits, NotLinked, NoWallet, PurchaseSpent, UnknownPurchase
from bot.inputs import InputCache, InputGone, InputStore, InputUsage
from bot.jobs.leases import Adopted, JobLeases, Refusal
from bot.jobs.model import ACTIVE, UNFINISHED, Compare, CompareState, Job, JobState, Quote
from bot.jobs.store import QUOTE_RATE_WINDOW_S, JobStore, QueueFull, QuoteTaken, SlowDown
from bot.ports import (
    AppState,
    Hold,
    Ledger,
    LedgerEntry,
    LinkResult,
    Outcome,
    Unlinked,
    UserProfile,
    Wallet,
    link_id,
    purchase_key,
    purchase_refund_key,
)
from bot.preferences import Preferences, PreferenceStore
from bot.preferences import check as check_preference
from bot.reasons import reason
from bot.reasons import reason as _reason


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
        self.links: dict[UserRef, tuple[UserRef, str]] = {}
        """A linked identity -> (the identity whose wallet it uses, the link's id)."""
        self.codes: dict[str, dict[str, Any]] = {}
        self.failures: list[tuple[UserRef, int]] = []

    def _owner(self, user: UserRef) -> UserRef:
        """storage.ledger.resolve: the identity whose wallet ``user`` spends from."""
        return self.links[user][0] if user in self.links else user

    def _members(self, owner: UserRef) -> list[UserRef]:
        return [member for member, (wallet, _) in self.links.items() if wallet == owner]

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
        owner = self._owner(user)
        open_holds = sum(1 for h in self.holds.values() if h.user == owner and h.state == "open")
        return Wallet(user, self.balances[owner], self.held[owner], open_holds)

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
        if credits <= 0:
            raise ValueError("a top-up adds a positive number of credits")
        if create_wallet and not self._prior(key):
            self._open(UserProfile(user), welcome_credits, now, refresh_profile=False)
        return await self.adjust(
            user, credits, key=key, actor=actor, reason=reason, now=now, kind="topup"
        )

    async def adjust(self, user, credits, *, key, actor, reason, now, kind="adjust") -> Outcome:
        self._check()
        if credits == 0:
            raise ValueError("an adjustment changes the balance")
        if prior := self._prior(key):
            return prior
        if user not in self.balances:
            raise NoWallet(str(user))
        user = self._owner(user)
        if self.balances[user] + credits < 0:
            raise InsufficientCredits(self.balances[user], -credits)
        return self._append(user, kind, credits, 0, key, None, actor, reason, now)

    async def hold(self, user, credits, *, hold_id, actor, reason, now) -> Outcome:
        self._check()
        if credits <= 0:
            raise ValueError("a hold reserves a positive number of credits")
        if prior := self._prior(f"hold:{hold_id}"):
            return prior
        if user not in self.balances:
            raise NoWallet(str(user))
        user = self._owner(user)
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
        if user not in self.balances:
            return []
        owner = self._owner(user)
        group = {owner, *self._members(owner)}
        return [e for e in reversed(self.entries) if e.user in group][:limit]

    async def entry(self, key: str) -> LedgerEntry | None:
        self._check()
        prior = self._prior(key)
        return prior.entry if prior else None

    async def purchase(
        self,
        user,
        credits,
        *,
        source,
        charge_id,
        actor,
        reason,
        now,
        create_wallet=True,
        welcome_credits=0,
    ) -> Outcome:
        self._check()
        if credits <= 0:
            raise ValueError("a purchase adds a positive number of credits")
        key = purchase_key(source, charge_id)
        if create_wallet and not self._prior(key):
            self._open(UserProfile(user), welcome_credits, now, refresh_profile=False)
        return await self.adjust(
            user, credits, key=key, actor=actor, reason=reason, now=now, kind="purchase"
        )

    async def refund_purchase(self, source, charge_id, *, force, actor, reason, now) -> Outcome:
        self._check()
        key = purchase_refund_key(source, charge_id)
        if prior := self._prior(key):
            return prior
        bought = self._prior(purchase_key(source, charge_id))
        if bought is None:
            raise UnknownPurchase(f"{source}:{charge_id}")
        user, credits = self._owner(bought.entry.user), bought.entry.amount
        balance = self.balances[user]
        if balance < credits and not force:
            raise PurchaseSpent(balance, credits)
        take = min(balance, credits)
        return self._append(user, "purchase_refund", -take, 0, key, None, actor, reason, now)

    async def issue_link_code(self, user, code_hash, *, now, ttl_s, per_hour) -> bool:
        self._check()
        if user not in self.balances:
            raise NoWallet(str(user))
        self.codes = {
            h: c
            for h, c in self.codes.items()
            if not (c["user"] == user and c["used"] is None and c["expires"] <= now - 3600)
        }
        recent = [c for c in self.codes.values() if c["user"] == user and c["at"] > now - 3600]
        if len(recent) >= per_hour:
            return False
        self.codes[code_hash] = {"user": user, "at": now, "expires": now + ttl_s, "used": None}
        return True

    def _fail(self, user: UserRef, status: str, now: int) -> LinkResult:
        self.failures.append((user, now))
        return LinkResult(status)  # type: ignore[arg-type]

    async def redeem_link_code(self, user, code_hash, *, now, failures_per_hour) -> LinkResult:
        self._check()
        self.failures = [(u, at) for u, at in self.failures if u != user or at > now - 3600]
        if sum(1 for u, at in self.failures if u == user and at > now - 3600) >= failures_per_hour:
            return LinkResult("too_many")
        code = self.codes.get(code_hash)
        if code is None:
            return self._fail(user, "unknown", now)
        issuer: UserRef = code["user"]
        if code["used"] is not None:
            return self._fail(user, "used", now)
        if code["expires"] <= now:
            return self._fail(user, "expired", now)
        if issuer == user:
            return LinkResult("own", issuer)
        if issuer.platform == user.platform:
            return LinkResult("same_platform", issuer)
        for side in (user, issuer):
            if side not in self.balances:
                raise NoWallet(str(side))
            if side in self.links or self._members(side):
                return LinkResult("already_linked", issuer)
        code["used"] = now
        ident = link_id(code_hash)
        moved, moved_held = self.balances[user], self.held[user]
        for hold_id, hold in list(self.holds.items()):
            if hold.user == user and hold.state == "open":
                self.holds[hold_id] = replace(hold, user=issuer)
        self._append(
            user,
            "link_out",
            -moved,
            -moved_held,
            f"link:{ident}:out",
            None,
            str(user),
            reason("reason.link", other=str(issuer)),
            now,
        )
        self._append(
            issuer,
            "link_in",
            moved,
            moved_held,
            f"link:{ident}:in",
            None,
            str(user),
            reason("reason.link", other=str(user)),
            now,
        )
        self.links[user] = (issuer, ident)
        return LinkResult("linked", issuer, moved, moved_held)

    async def unlink(self, user, *, credits, actor, reason, now) -> Unlinked:
        self._check()
        if credits < 0:
            raise ValueError("an unlink gives the leaving identity 0 credits or more")
        if user not in self.balances:
            raise NoWallet(str(user))
        if user in self.links:
            left, (kept, ident) = user, self.links[user]
        elif members := self._members(user):
            kept, left = user, members[0]
            ident = self.links[left][1]
        else:
            raise NotLinked(str(user))
        if self.balances[kept] < credits:
            raise InsufficientCredits(self.balances[kept], credits)
        del self.links[left]
        out = self._append(
            kept,
            "link_out",
            -credits,
            0,
            f"unlink:{ident}:out",
            None,
            actor,
            reason or _reason("reason.unlink", other=str(left)),
            now,
        )
        self._append(
            left,
            "link_in",
            credits,
            0,
            f"unlink:{ident}:in",
            None,
            actor,
            reason or _reason("reason.unlink", other=str(kept)),
            now,
        )
        return Unlinked(kept, left, credits, out.entry.balance_after)

    async def linked_identities(self, user: UserRef) -> list[UserRef]:
        self._check()
        if user not in self.balances:
            return []
        owner = self._owner(user)
        return [owner, *sorted(self._members(owner))]


class InMemoryAppState(AppState):
    """Key/value facts in a dict."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def put(self, key: str, value: str) -> None:
        self.values[key] = value


class InMemoryJobStore(JobStore):
    """Quotes and jobs in dicts, moving money through an :class:`InMemoryLedger`.

    Same behaviour as storage.jobs.SqliteJobStore (tests/contracts/ runs one
    suite against both): compare-and-set transitions with their capture or
    release, ids found by a unique prefix (ASCII case ignored, as SQL's
    ``LIKE``), and nothing changed when ``create_job`` refuses.
    """

    def __init__(self, ledger: InMemoryLedger) -> None:
        self.ledger = ledger
        self.quotes: dict[str, Quote] = {}
        self.quote_inputs_removed: dict[str, int] = {}
        self.quote_requests: list[tuple[UserRef, int]] = []
        self.jobs: dict[str, Job] = {}  # in insertion order, like SQLite's rowid
        self.delivery_claims: dict[str, tuple[str, int]] = {}
        """Job id -> (claimant, claimed at): who may send the clip."""
        self.compares: dict[str, Compare] = {}

    async def admit_quote_request(self, user: UserRef, *, per_minute: int, now: int) -> None:
        since = now - QUOTE_RATE_WINDOW_S
        self.quote_requests = [(u, at) for u, at in self.quote_requests if at > since]
        mine = [at for u, at in self.quote_requests if u == user]
        if len(mine) >= per_minute:
            raise SlowDown(max(1, min(mine) + QUOTE_RATE_WINDOW_S - now))
        self.quote_requests.append((user, now))

    async def save_quote(self, quote: Quote, *, max_open: int | None = None) -> tuple[str, ...]:
        if quote.quote_id in self.quotes:
            raise ValueError(f"quote {quote.quote_id} exists")
        self.quotes[quote.quote_id] = quote
        if max_open is None:
            return ()
        mine = [q for q in self.quotes.values() if q.user == quote.user and q.state == "open"]
        # Newest first: by creation time, then by insertion order (SQLite's rowid).
        order = {quote_id: index for index, quote_id in enumerate(self.quotes)}
        mine.sort(key=lambda q: (q.created_at, order[q.quote_id]), reverse=True)
        retired = mine[max_open:]
        for old in retired:
            self.quotes[old.quote_id] = replace(old, state="cancelled", retired_at=quote.created_at)
        named = {q.image_path for q in self.quotes.values() if q.state == "open"} | {
            j.image_path for j in self.jobs.values()
        }
        paths = {q.image_path for q in retired if q.image_path is not None}
        return tuple(sorted(paths - named))

    async def get_quote(self, quote_id: str) -> Quote | None:
        return self.quotes.get(quote_id)

    async def cancel_quote(self, quote_id: str) -> bool:
        quote = self.quotes.get(quote_id)
        if quote is None or quote.state != "open":
            return False
        self.quotes[quote_id] = replace(quote, state="cancelled")
        return True

    async def create_job(self, job: Job, *, max_active: int, now: int) -> Job:
        self.ledger._check()
        quote = self.quotes.get(job.quote_id)
        if quote is None or quote.state != "open":
            raise QuoteTaken(job.quote_id)
        active = sum(1 for j in self.jobs.values() if j.user == job.user and j.state in ACTIVE)
        if active >= max_active:
            raise QueueFull(active)
        if job.job_id in self.jobs:
            raise ValueError(f"job {job.job_id} exists")
        await self.ledger.hold(
            job.user,
            job.price,
            hold_id=job.job_id,
            actor=str(job.user),
            reason=reason("reason.hold", job=job.short_id, tier=job.tier, duration=job.duration_s),
            now=now,
        )  # raises InsufficientCredits or NoWallet before anything changed
        self.quotes[job.quote_id] = replace(quote, state="used")
        created = replace(job, state="held", created_at=now)
        self.jobs[job.job_id] = created
        return created

    async def create_compare(
        self, compare: Compare, jobs: list[Job], *, max_active: int, now: int
    ) -> list[Job]:
        self.ledger._check()
        first = jobs[0]
        quote = self.quotes.get(compare.quote_id)
        if quote is None or quote.state != "open":
            raise QuoteTaken(compare.quote_id)
        active = sum(1 for j in self.jobs.values() if j.user == first.user and j.state in ACTIVE)
        if active + len(jobs) > max_active:
            raise QueueFull(active)
        wallet = await self.ledger.wallet(compare.user)
        if wallet is None:
            raise NoWallet(str(compare.user))
        total = sum(job.price for job in jobs)
        if wallet.balance < total:  # checked first: then every hold below is made
            raise InsufficientCredits(wallet.balance, total)
        created = []
        for job in jobs:
            await self.ledger.hold(
                job.user,
                job.price,
                hold_id=job.job_id,
                actor=str(job.user),
                reason=reason(
                    "reason.hold", job=job.short_id, tier=job.tier, duration=job.duration_s
                ),
                now=now,
            )
            # Each job has a quote of its own: the compare's, for its one tier, used at once.
            self.quotes[job.quote_id] = replace(
                quote, quote_id=job.quote_id, tiers=(job.tier,), state="used"
            )
            made = replace(job, state="held", created_at=now)
            self.jobs[job.job_id] = made
            created.append(made)
        self.quotes[compare.quote_id] = replace(quote, state="used")
        self.compares[compare.compare_id] = replace(
            compare, job_ids=tuple(job.job_id for job in jobs), state="open", created_at=now
        )
        return created

    async def get_compare(self, compare_id: str) -> Compare | None:
        return self.compares.get(compare_id)

    async def compare_of(self, job_id: str) -> Compare | None:
        for compare in self.compares.values():
            if job_id in compare.job_ids:
                return compare
        return None

    async def unfinished_compares(self, limit: int) -> list[Compare]:
        found = [c for c in self.compares.values() if c.state in ("open", "making")]
        return sorted(found, key=lambda c: c.created_at)[:limit]  # stable: insertion order

    async def claim_compare(
        self, compare_id: str, claimant: str, *, now: int, stale_before: int
    ) -> bool:
        compare = self.compares.get(compare_id)
        if compare is None:
            return False
        making = compare.state == "making"
        stale = making and (
            compare.claimed_by == claimant or (compare.claimed_at or 0) <= stale_before
        )
        if compare.state != "open" and not stale:
            return False
        self.compares[compare_id] = replace(
            compare, state="making", claimed_by=claimant, claimed_at=now
        )
        return True

    async def finish_compare(
        self, compare_id: str, claimant: str, state: CompareState, *, now: int
    ) -> bool:
        compare = self.compares.get(compare_id)
        if compare is None or compare.state != "making" or compare.claimed_by != claimant:
            return False
        self.compares[compare_id] = replace(compare, state=state, finished_at=now)
        return True

    async def get_job(self, job_id: str) -> Job | None:
        if job_id in self.jobs:
            return self.jobs[job_id]
        prefix = _nocase(job_id.replace("%", "").replace("_", ""))
        if len(job_id) < 4:
            return None
        found = [j for i, j in self.jobs.items() if _nocase(i).startswith(prefix)]
        return found[0] if len(found) == 1 else None

    async def transition(self, job_id, from_states, to_state, *, now, **fields) -> Job | None:
        _check_settable(fields)
        self.ledger._check()
        job = self.jobs.get(job_id)
        if job is None or job.state not in from_states:
            return None
        if to_state == "succeeded":
            await self.ledger.capture(
                job_id, actor="runner", reason=reason("reason.capture", job=job_id[:8]), now=now
            )
        elif to_state in ("failed", "cancelled"):
            await self.ledger.release(
                job_id, actor="runner", reason=reason(f"reason.{to_state}", job=job_id[:8]), now=now
            )
        moved = replace(job, state=to_state, **fields)
        self.jobs[job_id] = moved
        return moved

    async def claim_delivery(
        self, job_id: str, claimant: str, *, now: int, stale_before: int
    ) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.state != "succeeded":
            return False
        holder = self.delivery_claims.get(job_id)
        if holder is not None and holder[0] != claimant and holder[1] > stale_before:
            return False
        self.delivery_claims[job_id] = (claimant, now)
        return True

    async def release_delivery(self, job_id: str, claimant: str) -> bool:
        holder = self.delivery_claims.get(job_id)
        if holder is None or holder[0] != claimant:
            return False
        del self.delivery_claims[job_id]
        return True

    async def clear_delivery_claims(self) -> int:
        cleared = len(self.delivery_claims)
        self.delivery_claims.clear()
        return cleared

    async def update(self, job_id: str, state: JobState, **fields: Any) -> bool:
        _check_settable(fields)
        job = self.jobs.get(job_id)
        if job is None or job.state != state:
            return False
        self.jobs[job_id] = replace(job, **fields)
        return True

    async def unfinished_jobs(self) -> list[Job]:
        jobs = [j for j in self.jobs.values() if j.state in UNFINISHED]
        return sorted(jobs, key=lambda j: j.created_at)  # stable: insertion order breaks ties

    async def jobs_of(self, user: UserRef | None, limit: int) -> list[Job]:
        jobs = [j for j in reversed(self.jobs.values()) if user is None or j.user == user]
        return sorted(jobs, key=lambda j: -j.created_at)[:limit]

    async def recent_durations(self, tier: str, limit: int) -> list[tuple[int, int]]:
        done = [
            j
            for j in self.jobs.values()
            if j.tier == tier
            and j.state in ("succeeded", "delivered")
            and j.started_at is not None
            and j.finished_at is not None
        ]
        done.sort(key=lambda j: -(j.finished_at or 0))
        return [((j.finished_at or 0) - (j.started_at or 0), j.duration_s) for j in done[:limit]]

    async def inputs_to_remove(self, *, now: int, finished_before: int, limit: int) -> list[str]:
        named = {
            q.image_path
            for q in self.quotes.values()
            if q.image_path is not None and q.quote_id not in self.quote_inputs_removed
        } | {
            j.image_path
            for j in self.jobs.values()
            if j.image_path is not None and j.input_removed_at is None
        }
        needed = {
            q.image_path for q in self.quotes.values() if q.state == "open" and q.expires_at >= now
        } | {
            j.image_path
            for j in self.jobs.values()
            if j.state in UNFINISHED
            or (j.delivered_at or j.finished_at or j.created_at) > finished_before
        }
        return sorted(path for path in named - needed if path is not None)[:limit]

    async def note_input_removed(self, path: str, *, now: int) -> int:
        changed = 0
        for quote in self.quotes.values():
            if quote.image_path == path and quote.quote_id not in self.quote_inputs_removed:
                self.quote_inputs_removed[quote.quote_id] = now
                changed += 1
        for job in list(self.jobs.values()):
            if job.image_path == path and job.input_removed_at is None:
                self.jobs[job.job_id] = replace(job, input_removed_at=now)
                changed += 1
        return changed

    async def clips_to_remove(self, *, delivered_before: int, limit: int) -> list[Job]:
        due = [
            j
            for j in self.jobs.values()
            if j.state == "delivered"
            and j.result_path is not None
            and j.clip_removed_at is None
            and j.delivered_at is not None
            and j.delivered_at <= delivered_before
        ]
        return sorted(due, key=lambda j: j.delivered_at or 0)[:limit]

    async def note_clip_removed(self, job_id: str, *, now: int) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.clip_removed_at is not None:
            return False
        self.jobs[job_id] = replace(job, clip_removed_at=now)
        return True

    async def refund(self, job_id: str, *, actor: str, reason: str, now: int) -> Outcome:
        job = self.jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        outcome = await self.ledger.adjust(
            job.user,
            job.price,
            key=f"refund:{job_id}",
            actor=actor,
            reason=reason or _reason("reason.refund", job=job.short_id),
            now=now,
        )
        self.jobs[job_id] = replace(self.jobs[job_id], refunded=True)
        return outcome


_SETTABLE = set(Job.__dataclass_fields__) - {"job_id", "quote_id", "user", "chat", "state"}


def _check_settable(fields: dict[str, Any]) -> None:
    unknown = set(fields) - _SETTABLE
    if unknown:
        raise ValueError(f"not settable on a job: {sorted(unknown)}")


@dataclass
class _Lease:
    owner: str | None = None
    expires_at: float | None = None
    slot: bool = False


class InMemoryJobLeases(JobLeases):
    """Job leases over an :class:`InMemoryJobStore`'s jobs (insertion order is the row order).

    Same behaviour as storage.leases.SqliteJobLeases (tests/contracts/test_job_leases.py).
    """

    def __init__(self, store: InMemoryJobStore) -> None:
        self.store = store
        self.leases: dict[str, _Lease] = {}

    def _lease(self, job_id: str) -> _Lease:
        return self.leases.setdefault(job_id, _Lease())

    def _takeable(self, lease: _Lease, now: float) -> bool:
        return lease.owner is None or (lease.expires_at or 0) < now

    async def claim(self, job_id: str, owner: str, *, now: float, lease_s: float) -> bool:
        job = self.store.jobs.get(job_id)
        if job is None or job.state not in UNFINISHED:
            return False
        lease = self._lease(job_id)
        if lease.owner != owner and not self._takeable(lease, now):
            return False
        lease.owner, lease.expires_at = owner, now + lease_s
        return True

    async def renew(self, owner: str, *, now: float, lease_s: float) -> set[str]:
        held = set()
        for job_id, lease in self.leases.items():
            if lease.owner != owner or lease.expires_at is None:
                continue
            if self.store.jobs[job_id].state in UNFINISHED:
                lease.expires_at = now + lease_s
                held.add(job_id)
            else:
                lease.expires_at = None
        return held

    async def adopt(
        self, owner: str, *, now: float, lease_s: float, limit: int, own: bool = False
    ) -> list[Adopted]:
        jobs = [j for j in self.store.jobs.values() if j.state in UNFINISHED]
        jobs.sort(key=lambda j: j.created_at)  # stable: insertion order breaks ties
        adopted = []
        for job in jobs:
            if len(adopted) >= limit:
                break
            lease = self._lease(job.job_id)
            orphan = lease.owner is None and job.created_at < now - lease_s - 1
            lapsed = lease.owner is not None and (lease.expires_at or 0) < now
            if not (orphan or lapsed or (own and lease.owner == owner)):
                continue
            previous = lease.owner
            lease.owner, lease.expires_at = owner, now + lease_s
            if job.state == "succeeded":
                lease.slot = False
            claim = self.store.delivery_claims.get(job.job_id)
            if claim is not None and claim[0] == previous:
                del self.store.delivery_claims[job.job_id]
            adopted.append(Adopted(job, previous))
        return adopted

    async def release(self, owner: str, *, now: float) -> int:
        released = 0
        for job_id, lease in self.leases.items():
            unfinished = self.store.jobs[job_id].state in UNFINISHED
            if lease.owner == owner and lease.expires_at is not None and unfinished:
                lease.expires_at = 0
                released += 1
        return released

    def _held(self, *, provider: str | None = None, user: UserRef | None = None) -> int:
        return sum(
            1
            for job in self.store.jobs.values()
            if self._lease(job.job_id).slot
            and job.state in UNFINISHED
            and (provider is None or job.provider == provider)
            and (user is None or job.user == user)
        )

    async def take_slot(
        self, job_id: str, owner: str, *, per_provider: int, per_user: int, now: float
    ) -> Job | Refusal:
        job = self.store.jobs.get(job_id)
        if job is None or self._lease(job_id).owner != owner or job.state not in ACTIVE:
            return "gone"
        lease = self._lease(job_id)
        if lease.slot:
            return job
        if self._held(provider=job.provider) >= per_provider:
            return "provider"
        if self._held(user=job.user) >= per_user:
            return "user"
        for other_id, other in self.store.jobs.items():
            if other_id == job_id:
                break
            theirs = self._lease(other_id)
            if (
                other.state == "held"
                and not theirs.slot
                and other.provider == job.provider
                and theirs.owner is not None
                and theirs.owner != owner
                and (theirs.expires_at or 0) >= now
                and self._held(user=other.user) < per_user
            ):
                return "older"
        lease.slot = True
        return job

    async def free_slot(self, job_id: str, owner: str) -> bool:
        job = self.store.jobs.get(job_id)
        lease = self._lease(job_id)
        if job is None or job.state in ACTIVE or not lease.slot or lease.owner != owner:
            return False
        self._lease(job_id).slot = False
        return True

    def _queued(self) -> list[str]:
        return [
            job_id
            for job_id, job in self.store.jobs.items()
            if job.state == "held" and not self._lease(job_id).slot
        ]

    async def positions(self, owner: str) -> dict[str, int]:
        return {
            job_id: position
            for position, job_id in enumerate(self._queued(), start=1)
            if self._lease(job_id).owner == owner
        }

    async def position(self, job_id: str) -> int | None:
        queued = self._queued()
        return queued.index(job_id) + 1 if job_id in queued else None


class InMemoryInputStore(InputStore):
    """Images in a dict, referenced as ``mem:<quote id><extension>``; copies in ``cache``.

    Like PostgreSQL's store: a job's image is materialized as a file of its
    own, which :meth:`release` deletes.
    """

    PREFIX = "mem:"

    def __init__(self, cache: Path) -> None:
        self.images: dict[str, bytes] = {}
        self.cache = InputCache(cache)

    async def save(self, quote_id: str, extension: str, data: bytes) -> str:
        name = f"{quote_id}{extension}"
        self.images[name] = bytes(data)
        return self.PREFIX + name

    async def exists(self, reference: str) -> bool:
        return reference.removeprefix(self.PREFIX) in self.images

    async def materialize(self, reference: str, key: str) -> Path:
        name = reference.removeprefix(self.PREFIX)
        if not reference.startswith(self.PREFIX) or name not in self.images:
            raise InputGone(reference)
        return await self.cache.put(key, name, self.images[name])

    def release(self, key: str) -> None:
        self.cache.release(key)

    async def remove(self, reference: str) -> None:
        self.images.pop(reference.removeprefix(self.PREFIX), None)

    async def usage(self) -> InputUsage:
        return InputUsage(len(self.images), sum(map(len, self.images.values())))


class InMemoryPreferences(PreferenceStore):
    """Settings by wallet owner, as storage.preferences.SqlitePreferences keeps them."""

    def __init__(self, ledger: InMemoryLedger) -> None:
        self.ledger = ledger
        self.rows: dict[UserRef, Preferences] = {}

    async def get(self, user: UserRef) -> Preferences:
        self.ledger._check()
        return self.rows.get(self.ledger._owner(user), Preferences())

    async def change(self, user, field, value, *, now) -> Preferences:
        self.ledger._check()
        column = check_preference(field, value)
        owner = self.ledger._owner(user)
        self.rows[owner] = replace(self.rows.get(owner, Preferences()), **{column: value})
        return self.rows[owner]
