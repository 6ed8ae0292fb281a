"""The Lua scripts the API runs in Redis, each rule written once.

Three rules run inside scripts so that they cost no round trip of their own: the session check
(decision 0029), the rate limits' counting, and a user's command numbering (with, locally, its
outbox entry). ``HITS`` (``api.http.RateLimiter``), ``NEXT_SEQ``/``NEXT_SEQ_KEPT``
(``api.dispatch.UserSeqs``) and ``COUNT_AND_NUMBER`` (``api.placing``, decision 0035) are put
together from the fragments below; each fragment reads its key and argument positions from Lua
locals the script sets, so one text serves every script that needs the rule.
"""

from __future__ import annotations

from typing import Final

_SESSION: Final = """
local current = redis.call('HGET', KEYS[k], 'epoch')
if not current then return {1} end
if redis.call('HEXISTS', KEYS[k], ARGV[a]) == 1 or tonumber(ARGV[a + 1]) < tonumber(current)
then return {2} end
"""
"""The access token's session, before anything is counted: KEYS[k] is the user's session copy
(api.sessions), ARGV[a] the session's ended field, ARGV[a + 1] the token's epoch. Returns {1}
when there is no copy (check the long way), {2} when the session has ended."""

_COUNT: Final = """
local out = {0}
for i = 1, c do
  local n = redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[w + i], 'NX')
  out[i + 1] = {n, redis.call('PTTL', KEYS[i])}
end
"""
"""One hit on each of the c counters KEYS[1..c], whose windows (ms) are ARGV[w + 1..w + c]: a
fixed window per subject, opened by its first hit. ``out`` is {0, {count, ms to reset}...}."""

NUMBER_RECORD_TTL_S: Final = 600
"""How long the number given to a command is remembered (``_GIVEN``): far longer than a batch
can be sent again after its first sending (``api.redis_client.RETRY_WITHIN_S``, then a
connection made), far shorter than a day of commands would take room in Redis for."""

_GIVEN: Final = """
local epoch, n
local given = redis.call('GET', KEYS[r])
if given then
  local e, m = string.match(given, '^(%d+):(%d+)$')
  epoch, n = e, tonumber(m)
end
"""
"""The number already given to this command (KEYS[r], ``cmdseq:{id}``), if any: ``epoch``
and ``n`` set, ``given`` true. A script sent again for the same command (``api.redis_client``
sends a batch once more when its connection fails, even if Redis ran it the first time) thus
answers the number it gave, instead of taking another: a number taken and lost would leave a
gap the user's next command waits out (decision 0041)."""

_NUMBER: Final = f"""
epoch = redis.call('HGET', KEYS[q], 'epoch')
if not epoch then
  local now = redis.call('TIME')
  epoch = string.format('%d', now[1] * 1000 + math.floor(now[2] / 1000))
  redis.call('HSET', KEYS[q], 'epoch', epoch)
end
n = redis.call('HINCRBY', KEYS[q], 'n', 1)
redis.call('SET', KEYS[r], epoch .. ':' .. string.format('%d', n), 'EX', {NUMBER_RECORD_TTL_S})
"""
"""The user's next number in KEYS[q] (``useq:{user}``) and the epoch of the count: set from
Redis's clock (ms) when the count begins, so a count begun again after Redis lost its data has
a later epoch than the one it replaces. Recorded for the command in KEYS[r] (``_GIVEN``); runs
only when ``_GIVEN`` found nothing."""

_KEEP: Final = """
local entry = ARGV[b + 1] .. epoch .. ',' .. string.format('%d', n) .. ARGV[b + 2]
redis.call('HSET', KEYS[o], ARGV[b], entry)
"""
"""The numbered command kept in the local outbox KEYS[o]: ARGV[b] is its id, ARGV[b + 1] and
ARGV[b + 2] the entry around where the number goes (``shared.outbox.numbered_template``)."""

HITS: Final = f"""
local c, w = #KEYS, 0
if #ARGV > #KEYS then
  c = #KEYS - 1
  local k, a = #KEYS, c + 1
  {_SESSION}
end
{_COUNT}
return out
"""
"""KEYS: the subjects' counters, then (with a session to check) the user's session copy. ARGV:
the counters' windows in ms, then (with a session) its ended field and the token's epoch.
Returns {0, {count, ms to reset} per counter}; {1} or {2} as ``_SESSION``, and then nothing is
counted (a revoked token spends no one's budget)."""

NEXT_SEQ: Final = f"""
local q, r = 1, 2
{_GIVEN}
if not given then
  {_NUMBER}
end
return {{tonumber(epoch), n}}
"""
"""KEYS: the user's count, the command's number record. Returns {epoch, n}: the number given to
the command before, else the user's next."""

NEXT_SEQ_KEPT: Final = f"""
local q, r, o, b = 1, 2, 3, 1
{_GIVEN}
if not given then
  {_NUMBER}
  {_KEEP}
end
return {{tonumber(epoch), n}}
"""
"""``NEXT_SEQ``, and the command kept in the outbox (KEYS[3]; ARGV: its id and entry) when it is
numbered."""

COUNT_AND_NUMBER: Final = f"""
local c, s = tonumber(ARGV[1]), tonumber(ARGV[2])
local k, a, w = c + 1, 3 + 2 * c, 2
local q, r = c + s + 3, c + s + 5
{_GIVEN}
if given then
  local out = {{0}}
  for i = 1, c do out[i + 1] = {{0, 0}} end
  out[c + 2] = {{tonumber(epoch), n}}
  return out
end
if s == 1 then
  {_SESSION}
  k, a = k + 1, a + 2
end
{_COUNT}
for i = 1, c do
  if out[i + 1][1] > tonumber(ARGV[2 + c + i]) then return out end
end
if redis.call('HGET', KEYS[k], ARGV[a]) ~= ARGV[a + 1]
  or redis.call('HGET', KEYS[k + 1], ARGV[a + 2]) ~= ARGV[a + 3]
  or redis.call('HGET', KEYS[k + 1], ARGV[a + 4]) ~= ARGV[a + 5]
then return out end
{_NUMBER}
redis.call('SET', KEYS[k + 3], ARGV[a + 6], 'EX', ARGV[a + 7])
if KEYS[k + 5] then
  local o, b = k + 5, a + 8
  {_KEEP}
end
out[c + 2] = {{tonumber(epoch), n}}
return out
"""
"""An order's session, limits and number in one round trip (``api.placing``). ARGV[1]: c, the
rate limits; ARGV[2]: 1 when the session is checked. KEYS: the c limits' counters, the session's
copy (when checked), md:markets, md:assets, the user's count, the command's owner, its number
record, the outbox (when kept). ARGV after the two: c windows (ms), c limits, the session's
ended field and the token's epoch (when checked), the market's name and bytes, the base's and
quote's names and bytes, the owner and its TTL (s), the command id and its outbox entry around
the number (when kept). The number follows only when every limit passed and the market and its
two assets still hold the bytes the order was checked against; otherwise ``out`` is the count
alone.

Sent again for a command it numbered (the batch's retry, ``_GIVEN``), it does nothing and
answers that number, with each limit's count as {0, 0}: this run counted nothing, and the
request was counted and passed every check the first time (even if its session ended since or
the market changed: it was numbered, its owner recorded and, locally, kept in the outbox)."""
