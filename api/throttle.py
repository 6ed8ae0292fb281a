"""Password guessing, limited by failures: who may still try, and whose tries count.

A limit on *attempts* per account lets anyone lock its owner out (ten wrong passwords a minute
and the right one is refused too). So only *failures* count, and only against the client that
made them: per (account, client address) and per client address (``AUTH_FAILURES_*``). A
client that has not been failing is never refused, whoever else guesses at the account; a
guesser gets ``AUTH_FAILURES_PER_EMAIL_IP`` tries at an account per address and window, and
``AUTH_FAILURES_PER_IP`` tries at all accounts together, so guessing at scale needs many
addresses as well as argon2id's cost per try.

The check is atomic (one Lua script): a try reserves one failure of every budget before the
password is verified, or is refused (429 with ``Retry-After``) when one is spent, so a burst of
concurrent guesses cannot all pass a check made before any of them failed. A correct password
gives the reservation back and clears the (account, address) count; a failed one leaves it
counted; an error that says nothing about the password gives it back. A window opens at its
budget's first failure and lasts ``AUTH_FAILURE_WINDOW_S``.

What "client address" means (``api.http.client_ip``): locally the TCP peer (the gateway is
the server: ``X-Forwarded-For`` is ignored); in the cloud the address the load balancer
appended to ``X-Forwarded-For`` (``API_TRUSTED_PROXY_HOPS`` from the right), never one the
client wrote. IPv6 clients count per /64 (``limit_subject``): one subscriber commonly holds a
whole /64, which would otherwise give a guesser 2^64 addresses.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
from dataclasses import dataclass
from typing import Final

import redis

from api.http import too_many_requests, unavailable
from shared.redis_keys import auth_failures_ip_key, auth_failures_pair_key

log = logging.getLogger("throttle")

IPV6_PREFIX: Final = 64

# KEYS: the budgets' counters; ARGV: their limits, then the window in ms. Returns 0 when a
# failure of every budget was reserved, else the ms until the first spent budget reopens.
_RESERVE: Final = """
local window = ARGV[#ARGV]
for i, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key) or '0')
  if n >= tonumber(ARGV[i]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 1 then ttl = tonumber(window) end
    return ttl
  end
end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('PEXPIRE', key, window, 'NX')
end
return 0
"""

# KEYS: counters to give one back to; ARGV[1]: how many of the first KEYS to clear instead.
_GIVE_BACK: Final = """
for i, key in ipairs(KEYS) do
  if i <= tonumber(ARGV[1]) then
    redis.call('DEL', key)
  elseif tonumber(redis.call('GET', key) or '0') > 0 then
    redis.call('DECR', key)
  end
end
return 0
"""


def limit_subject(address: str) -> str:
    """The unit a client address is counted in: an IPv4 address, an IPv6 /64, or the text
    itself when it is not an address (``unknown``)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def account_key(account: str) -> str:
    """An account name (an email) as it may appear in a Redis key: hashed, never in clear."""
    return hashlib.sha256(account.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class PasswordTry:
    """The budgets one password try is counted against: the (account, address) pair's and
    the address's."""

    pair_key: str
    address_key: str
    pair_limit: int
    address_limit: int

    @staticmethod
    def of(account: str, address: str, pair_limit: int, address_limit: int) -> PasswordTry:
        subject = limit_subject(address)
        return PasswordTry(
            pair_key=auth_failures_pair_key(account_key(account), subject),
            address_key=auth_failures_ip_key(subject),
            pair_limit=pair_limit,
            address_limit=address_limit,
        )


class FailureLimiter:
    """The failure budgets in Redis (see the module)."""

    def __init__(self, client: redis.Redis, window_s: int) -> None:
        self._redis = client
        self._window_ms = window_s * 1000
        self._reserve = client.register_script(_RESERVE)
        self._give_back = client.register_script(_GIVE_BACK)

    def reserve(self, attempt: PasswordTry) -> None:
        """Count ``attempt`` as a failure until it succeeds; 429 when a budget is spent."""
        try:
            wait_ms = int(
                self._reserve(
                    keys=[attempt.pair_key, attempt.address_key],
                    args=[attempt.pair_limit, attempt.address_limit, self._window_ms],
                )
            )
        except redis.RedisError:  # no password is checked without its count
            raise unavailable("password checks are unavailable now; try again") from None
        if wait_ms > 0:
            raise too_many_requests(
                math.ceil(wait_ms / 1000), "too many failed password attempts; retry later"
            )

    def succeeded(self, attempt: PasswordTry) -> None:
        """The password was right: the pair's failures are forgiven, the address's
        reservation given back (its earlier failures stay counted)."""
        self._settle(attempt, clear=1)

    def undecided(self, attempt: PasswordTry) -> None:
        """The try ended without a verdict on the password (an error): not a failure."""
        self._settle(attempt, clear=0)

    def _settle(self, attempt: PasswordTry, clear: int) -> None:
        try:
            self._give_back(keys=[attempt.pair_key, attempt.address_key], args=[clear])
        except redis.RedisError as exc:  # the try stays counted: at worst one failure too many
            log.warning("could not give a password try back: %r", exc)
