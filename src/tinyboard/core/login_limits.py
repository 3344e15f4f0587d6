"""Failed-login limits: slow password guessing down without handing attackers a lockout switch.

Strategy: two rules, keyed by the account (the e-mail as typed, known or not) and by the
address the web layer gives (the socket peer, unless a trusted proxy vouches for another).
1. Account from one address (the pair): the first `free_failures` failures cost nothing; after
   that the pair's next attempt waits `first_delay` (1 s), then twice as long after each
   further failure, up to `max_delay`. A success clears the pair; a pair without failures
   for an hour is forgotten.
2. Address: at most `address_failures` failures per hour, whatever accounts they name (stops
   one address spraying many accounts, or made-up e-mails to dodge rule 1).
There is deliberately no account-wide rule: it would let anyone lock the real user out from
anywhere. An attacker hammering an account slows only the addresses it uses; the right
password from another address gets in at once. Each attempt counts as failed before its
password is checked (so concurrent attempts cannot slip past) and is taken back on success;
an attempt refused for waiting is not counted and checks no password.

`LoginLimiter` is the seam: this module's `MemoryLoginLimiter` serves one process; a cluster
keeps the same counts in the store or on the bus.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tinyboard.errors import TinyboardError

WINDOW_SECONDS = 3600.0
"""How long a failure counts against its address, and how long an idle pair is remembered."""
MAX_TRACKED = 100_000
"""Most pairs (and addresses) held in memory; the least recently failed go first."""
MAX_ACCOUNT_CHARS = 320
"""Longer "e-mails" are cut to this before they become keys (an e-mail has at most 254)."""


class LoginThrottled(TinyboardError):
    """Too many failed logins: the caller must wait `retry_after` seconds (HTTP 429)."""

    def __init__(self, wait: float) -> None:
        self.retry_after = max(1, math.ceil(wait))
        super().__init__(f"too many failed logins; try again in {self.retry_after} s")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginPolicy:
    free_failures: int = 5
    """Failures of one account from one address before its attempts must wait."""
    first_delay: float = 1.0
    """The first wait (s) after the free failures; it doubles with each further failure."""
    max_delay: float = 300.0
    """Longest wait (s) between attempts of one account from one address."""
    address_failures: int = 100
    """Failures one address may make per hour over every account (at least 1)."""


class LoginLimiter(Protocol):
    """Counts failed logins; async so a cluster can keep the counts in the store or bus."""

    async def attempt(self, account: str, address: str) -> None:
        """Count an attempt as failed, or raise `LoginThrottled` (then nothing is counted)."""

    async def succeeded(self, account: str, address: str) -> None:
        """The attempt was right after all: clear the pair and take back its failure."""


@dataclass(slots=True)
class _Pair:
    failures: int
    last: float


class MemoryLoginLimiter:
    """`LoginLimiter` for one process."""

    def __init__(
        self, policy: LoginPolicy | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or LoginPolicy()
        self._clock = clock
        # both ordered by last failure (re-inserted on each), so the oldest are at the front
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._addresses: dict[str, deque[float]] = {}

    async def attempt(self, account: str, address: str) -> None:
        now = self._clock()
        self._forget(now)
        key = (_account_key(account), address)
        wait = max(self._pair_wait(key, now), self._address_wait(address, now))
        if wait > 0:
            raise LoginThrottled(wait)
        pair = self._pairs.pop(key, None) or _Pair(0, now)
        pair.failures += 1
        pair.last = now
        self._pairs[key] = pair
        failures = self._addresses.pop(address, None)
        if failures is None:
            failures = deque(maxlen=self.policy.address_failures)
        failures.append(now)
        self._addresses[address] = failures
        self._cap()

    async def succeeded(self, account: str, address: str) -> None:
        self._pairs.pop((_account_key(account), address), None)
        failures = self._addresses.get(address)
        if failures:
            failures.pop()

    def _pair_wait(self, key: tuple[str, str], now: float) -> float:
        pair = self._pairs.get(key)
        if pair is None:
            return 0.0
        excess = pair.failures - self.policy.free_failures
        if excess < 0:
            return 0.0
        delay = min(self.policy.max_delay, self.policy.first_delay * 2.0 ** min(excess, 62))
        return pair.last + delay - now

    def _address_wait(self, address: str, now: float) -> float:
        failures = self._addresses.get(address)  # the newest `address_failures` only
        if failures is None or len(failures) < self.policy.address_failures:
            return 0.0
        return failures[0] + WINDOW_SECONDS - now

    def _forget(self, now: float) -> None:
        """Drop what is older than the window, oldest first (cheap: usually nothing)."""
        horizon = now - WINDOW_SECONDS
        while self._pairs:
            key, pair = next(iter(self._pairs.items()))
            if pair.last > horizon:
                break
            del self._pairs[key]
        while self._addresses:
            address, failures = next(iter(self._addresses.items()))
            while failures and failures[0] <= horizon:
                failures.popleft()
            if failures:
                break
            del self._addresses[address]

    def _cap(self) -> None:
        while len(self._pairs) > MAX_TRACKED:
            del self._pairs[next(iter(self._pairs))]
        while len(self._addresses) > MAX_TRACKED:
            del self._addresses[next(iter(self._addresses))]


def _account_key(account: str) -> str:
    """E-mails compare case-insensitively, as the stores look them up."""
    return account.strip()[:MAX_ACCOUNT_CHARS].lower()
