"""The Lua scripts of the Redis store: one call applies a chunk of a batch atomically.

Key layout under a prefix ``P`` (every key of an entity shares its hash tag):

- ``P:{x:<tx id>}`` string, the fingerprint of the content the id was first applied with
  (a conflicting copy is detected by it, see ``fraudstream.features.store``); it lives as long as
  the
  rows hash of a period (``rttl``)
- ``P:{c:<customer>}:h`` string, the customer's history (see ``CUSTOMER HISTORY``)
- ``P:{c:<customer>}:r<period>`` hash, tx id -> raw row (little-endian f64s, then the row's
  flags) returned the first time (idempotency), one hash per period of ``refresh_s`` (a
  week) of event time
- ``P:{t:<terminal>}:w`` string, the terminal's history (see ``TERMINAL HISTORY``)
- ``P:{t:<terminal>}:i<period>`` hash (Redis Cluster only), the tx ids the terminal holds
- ``P:{t:<terminal>}:l`` sorted set of every labelled tx id (first label wins)
- ``P:{t:<terminal>}:f`` sorted set of fraud-labelled tx ids by event second
- ``P:{t:<terminal>}:fs`` string, their event seconds (what windows count)
- ``P:{o:<topic>}:offsets`` hash, partition -> highest applied offset mark
- ``P:{o:<topic>}:guard:<token>`` counter of the calls of a batch sent in several, for
  the last one's marks (see ``_MARKS``); deleted by it, or expires in 10 minutes

An entity's window history is one binary string, appended to in order (one APPEND) and
searched in Lua: read whole when short, by blocks when long
(``fraudstream.features.redis_lua_runs``), so
that no transaction costs more than a few short reads, however hot its key.

Single node: ``APPLY_TRANSACTIONS`` claims the id and does both halves per transaction.
Redis Cluster (``fraudstream.features.redis_cluster``): ``APPLY_IDS``, ``APPLY_TERMINALS``, then
``APPLY_CUSTOMERS``, one call per node and chunk, each idempotent on its own (see that
module for why the order makes retries safe).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fraudstream.features.redis_lua_entities import ENTITIES
from fraudstream.features.redis_lua_runs import LABEL_RUNS, RUNS
from fraudstream.features.redis_lua_terminal import TERMINAL
from fraudstream.features.store import ROWS_PERIOD_S

TTL_REFRESH_S = ROWS_PERIOD_S
"""A customer's keys get their idle TTL again once its event time moved this far; it is
also the period of event time one customer rows hash holds."""
LAYOUT = 3
"""The key layout above (2: no identity keys, 24-byte customer headers, rows without
flags; 1: one rows hash per customer and a tx id list to trim it)."""


def rows_keys(prefix: str, customer_ids: Sequence[str], event_seconds: npt.ArrayLike) -> list[str]:
    """The rows hash of each transaction: its customer's, for the period of its event
    second (as the scripts compute it)."""
    periods = np.floor_divide(np.asarray(event_seconds, dtype=np.int64), TTL_REFRESH_S)
    return [f"{prefix}:{{c:{c}}}:r{p}" for c, p in zip(customer_ids, periods.tolist(), strict=True)]


_HEADER = r"""
-- ARGV: n, ncw, ntw, delay_s, c_keep_s, t_keep_s, refresh_s, c_ttl_ms, t_ttl_ms, c_cap,
--       t_cap, n_offsets, guard, customer windows..., terminal windows...,
--       (partition, offset)..., numbers (second, amount, ms, watermark second per
--       transaction as little-endian doubles; NaN: no watermark), fingerprints (8 bytes
--       per transaction), ...
local n, ncw, ntw = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local delay, ckeep, tkeep = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local refresh_s, cttl, tttl = tonumber(ARGV[7]), ARGV[8], ARGV[9]
local ccap, tcap = tonumber(ARGV[10]), tonumber(ARGV[11])
local noff, guard = tonumber(ARGV[12]), tonumber(ARGV[13])
-- a rows hash spans a period of refresh_s: it lives that much longer than a history
local rttl = tonumber(cttl) + refresh_s * 1000
local a = 14
local cw, tw = {}, {}
for j = 1, ncw do cw[j] = tonumber(ARGV[a]); a = a + 1 end
for j = 1, ntw do tw[j] = tonumber(ARGV[a]); a = a + 1 end
local off_at = a
a = a + 2 * noff
local numbers, fps = ARGV[a], ARGV[a + 1]
a = a + 2
local row_format = '<' .. string.rep('d', 3 + 2 * ncw + 2 * ntw)
"""

_MARKS = r"""
-- A batch sent in several chunks raises its marks with its last chunk, and only when every
-- earlier chunk ran to its end: each of those counts itself in the guard key (guard -1),
-- the last one (guard = how many there were) checks the count.
if guard < 0 then
  redis.call('INCR', KEYS[#KEYS])
  redis.call('PEXPIRE', KEYS[#KEYS], 600000)
end
if noff > 0 then
  local ko, done = KEYS[#KEYS], true
  if guard > 0 then
    ko = KEYS[#KEYS - 1]
    done = tonumber(redis.call('GET', KEYS[#KEYS]) or '0') == guard
    redis.call('DEL', KEYS[#KEYS])
  end
  for p = 0, noff - 1 do
    local part, off = ARGV[off_at + 2 * p], ARGV[off_at + 2 * p + 1]
    local cur = redis.call('HGET', ko, part)
    if done and (not cur or tonumber(cur) < tonumber(off)) then
      redis.call('HSET', ko, part, off)
    end
  end
end
"""

APPLY_TRANSACTIONS = (
    _HEADER
    + RUNS
    + ENTITIES
    + TERMINAL
    + r"""
-- KEYS: 4 per transaction (customer r<period>, h, terminal w, identity x)
--       [, offsets hash] [, guard]; ARGV as above, then the tx ids
local function with_terminal(parts, i, sec, wm, applied, flags)
  local tflags = terminal_part(KEYS[4 * i - 1], nil, ARGV[a + i - 1], sec, wm, applied, parts)
  flags = bit.bor(flags, tflags)
  if not applied then flags = bit.bor(flags, FLAG_CONFLICT) end
  parts[#parts + 1] = flags
  return pack(row_format, unpack(parts))
end
local out = {}
for i = 1, n do
  local k = 4 * (i - 1)
  local status = claim(KEYS[k + 4], sub(fps, 8 * i - 7, 8 * i))
  out[i] = customer_row(KEYS[k + 1], KEYS[k + 2], ARGV[a + i - 1], i, status, with_terminal)
end
"""
    + _MARKS
    + "return out\n"
)

_CROSS_SLOT = "#!lua flags=allow-cross-slot-keys\n"
"""Cluster scripts declare no keys and name them in ARGV: they run on the node that holds
every key they touch, across that node's slots (a declared key list must be one slot)."""

APPLY_IDS = (
    _CROSS_SLOT
    + _HEADER
    + RUNS
    + ENTITIES
    + TERMINAL
    + r"""
-- ARGV as above (no offsets), then the identity key of each transaction. Returns one
-- byte per transaction: 0 new, 1 the same content again, 2 other content (a conflict).
local out = {}
for i = 1, n do
  out[i] = claim(ARGV[a + i - 1], sub(fps, 8 * i - 7, 8 * i))
end
if n == 0 then return '' end
return string.char(unpack(out))
"""
)

APPLY_TERMINALS = (
    _CROSS_SLOT
    + _HEADER
    + RUNS
    + ENTITIES
    + TERMINAL
    + r"""
-- ARGV as above (no offsets), then one status byte per transaction (APPLY_IDS), 2 keys
-- per transaction (terminal w, i), then tx ids. Returns the terminal counts, then the
-- flags, of every transaction, packed little-endian doubles.
local statuses, keys_at, ids_at = ARGV[a], a + 1, a + 1 + 2 * n
local counts = '<' .. string.rep('d', 2 * ntw + 1)
local out = {}
for i = 1, n do
  local sec, _, _, wm = unpack_('<dddd', numbers, 32 * (i - 1) + 1)
  local k, parts = keys_at + 2 * (i - 1), {}
  local applied = string.byte(statuses, i) ~= CONFLICT
  parts[2 * ntw + 1] = terminal_part(ARGV[k], ARGV[k + 1], ARGV[ids_at + i - 1], sec, wm,
    applied, parts)
  out[i] = pack(counts, unpack(parts))
end
return table.concat(out)
"""
)

APPLY_CUSTOMERS = (
    _CROSS_SLOT
    + _HEADER
    + RUNS
    + ENTITIES
    + TERMINAL
    + r"""
-- ARGV as above (no offsets), then one status byte per transaction, the terminal counts
-- and flags of every transaction (as APPLY_TERMINALS returns them), 2 keys per transaction
-- (customer r<period>, h), then tx ids. A known transaction keeps its first row, whatever
-- counts came with it.
local statuses, tparts = ARGV[a], ARGV[a + 1]
local keys_at, ids_at = a + 2, a + 2 + 2 * n
local tsize = 8 * (2 * ntw + 1)
local customer_format = '<' .. string.rep('d', 2 + 2 * ncw)
local function with_counts(parts, i, sec, wm, applied, flags)
  local t = sub(tparts, (i - 1) * tsize + 1, i * tsize)
  flags = bit.bor(flags, (unpack_('<d', t, tsize - 7)))
  if not applied then flags = bit.bor(flags, FLAG_CONFLICT) end
  return pack(customer_format, unpack(parts)) .. sub(t, 1, tsize - 8) .. pack('<d', flags)
end
local out = {}
for i = 1, n do
  local k = keys_at + 2 * (i - 1)
  out[i] = customer_row(ARGV[k], ARGV[k + 1], ARGV[ids_at + i - 1], i,
    string.byte(statuses, i), with_counts)
end
return out
"""
)

_LABELS = r"""
local new, touch = 0, {}
for i = 1, n do
  local kl, kf, ks, kw = key(4 * i - 3), key(4 * i - 2), key(4 * i - 1), key(4 * i)
  local txid, sec, fraud = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  a = a + 3
  if redis.call('ZADD', kl, 'NX', sec, txid) == 1 then
    new = new + 1
    if fraud == '1' then
      redis.call('ZADD', kf, sec, txid)
      insert_second(ks, sec)
      mark_frauds(kw, ttl)
    end
  end
  touch[kl] = {kf, ks, kw}
end
-- labels are forgotten by the terminal's own trimming (its history's header), so that no
-- label, however far ahead it is dated, can make others forgotten
for kl, k in pairs(touch) do
  local hdr = redis.call('GETRANGE', k[3], '0', '39')
  if #hdr == 40 then
    local _, tt, cc = unpack_('<ddd', hdr, 1)
    local through = max_(tt, cc)
    if through > NEG then
      redis.call('ZREMRANGEBYSCORE', kl, '-inf', through)
      redis.call('ZREMRANGEBYSCORE', k[1], '-inf', through)
      trim_seconds(k[2], through, ttl)
    end
  end
  redis.call('PEXPIRE', kl, ttl)
  redis.call('PEXPIRE', k[1], ttl)
  redis.call('PEXPIRE', k[2], ttl)
end
return new
"""

APPLY_LABELS = (
    r"""
-- KEYS: 4 per label (terminal l, f, fs, w); ARGV: n, t_ttl_ms,
--       then per label: tx id, event second, 1|0 (fraud)
local n, ttl = tonumber(ARGV[1]), ARGV[2]
local a = 3
local function key(i) return KEYS[i] end
"""
    + RUNS
    + LABEL_RUNS
    + _LABELS
)

APPLY_LABELS_CROSS_SLOT = (
    _CROSS_SLOT
    + r"""
-- ARGV: n, t_ttl_ms, 4 keys per label (terminal l, f, fs, w),
--       then per label: tx id, event second, 1|0 (fraud)
local n, ttl = tonumber(ARGV[1]), ARGV[2]
local a = 3 + 4 * n
local function key(i) return ARGV[2 + i] end
"""
    + RUNS
    + LABEL_RUNS
    + _LABELS
)
