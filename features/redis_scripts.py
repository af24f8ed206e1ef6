"""The Lua scripts of the Redis store: one call applies a whole batch atomically.

Key layout under a prefix ``P`` (every key of an entity shares its hash tag):

- ``P:{c:<customer>}:r<period>`` hash, tx id -> raw row (little-endian f64s) returned the
  first time (idempotency), one hash per period of ``refresh_s`` (a week) of event time
- ``P:{t:<terminal>}:w`` string, the terminal's history (see ``TERMINAL HISTORY``)
- ``P:{t:<terminal>}:l`` sorted set of every labelled tx id (first label wins)
- ``P:{t:<terminal>}:f`` sorted set of fraud-labelled tx ids by event second
- ``P:{t:<terminal>}:fs`` string, their event seconds (what windows count, see below)
- ``P:{c:<customer>}:h``, ``P:{t:<terminal>}:i``: see below
- ``P:{o:<topic>}:offsets`` hash, partition -> highest applied offset mark

An entity's window history is one binary string, appended to in order (one APPEND) and
binary-searched in Lua: no call per window boundary, no sorted-set insert.

Single node: ``APPLY_TRANSACTIONS`` does both halves per transaction. Redis Cluster
(``features.redis_cluster``): ``APPLY_TERMINALS`` then ``APPLY_CUSTOMERS``, one call per
node, each idempotent on its own (see that module for why the order makes retries safe).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

TTL_REFRESH_S = 7 * 86_400
"""A customer's keys get their idle TTL again once its event time moved this far; it is
also the period of event time one customer rows hash holds."""
LAYOUT = 2
"""The key layout above (1: one rows hash per customer and a tx id list to trim it)."""


def rows_keys(prefix: str, customer_ids: Sequence[str], event_seconds: npt.ArrayLike) -> list[str]:
    """The rows hash of each transaction: its customer's, for the period of its event
    second (as the scripts compute it)."""
    periods = np.floor_divide(np.asarray(event_seconds, dtype=np.int64), TTL_REFRESH_S)
    return [f"{prefix}:{{c:{c}}}:r{p}" for c, p in zip(customer_ids, periods.tolist(), strict=True)]


_FUNCTIONS = r"""
local SCALE, REBASE_AT = 65536, 2 ^ 52
local sub, pack, unpack_ = string.sub, struct.pack, struct.unpack

-- amounts are summed as whole units of 2^-16 (exact integer arithmetic in doubles) plus
-- float remainders: a window's sum is a difference of two running totals, with no
-- cancellation error however long the history
local function split(x)
  local whole = math.floor(x * SCALE + 0.5)
  return whole, x - whole / SCALE
end

-- first index in [lo, hi) (0-based) of the records of `size` bytes from byte `base`, each
-- starting with its event second as a double, whose second is above s
local function above(blob, base, size, lo, hi, s)
  while lo < hi do
    local mid = (lo + hi - (lo + hi) % 2) / 2 -- no math.floor call: a VM operation
    if unpack_('<d', blob, base + mid * size) <= s then lo = mid + 1 else hi = mid end
  end
  return lo
end

-- A history string is a 24-byte header, then records starting with their event second,
-- sorted by second then arrival. In order (the common case) a transaction is one APPEND:
-- Lua copies every string it creates, so the whole string is rebuilt (and SET, which
-- renews its idle TTL) only to trim it, to renew the TTL, or to insert a late record.
local HEAD = 24
local function trim_from(hist, size, n, cut, slack)
  -- in bulk, once `slack` records are out of every window
  if n <= slack or unpack_('<d', hist, HEAD + 1 + (slack - 1) * size) > cut then return 0 end
  return above(hist, HEAD + 1, size, slack, n, cut)
end

-- CUSTOMER HISTORY P:{c:<customer>}:h: header '<ddd' (event second of the last TTL
-- refresh, totals before the first record), records '<ddd' (second, totals through it).
-- CUSTOMER ROWS P:{c:<customer>}:r<p>: the rows of the transactions whose event second is
-- in period p (of refresh_s seconds); a period's hash is deleted whole once the history is
-- trimmed past it, so no per-transaction index is kept to forget rows one by one
local CREC = 24

local function customer_totals(hist, i)
  if i < 0 then
    local _, w, r = unpack_('<ddd', hist, 1)
    return w, r
  end
  local _, w, r = unpack_('<ddd', hist, HEAD + 1 + i * CREC)
  return w, r
end

local function period(s)
  return math.floor(s / refresh_s)
end

-- delete the rows hashes of periods [from, to) of the customer whose history is kh
local function drop_rows(kh, from, to)
  local base, dead = sub(kh, 1, #kh - 1) .. 'r', {}
  for p = from, to - 1 do
    dead[#dead + 1] = base .. p
    if #dead == 1000 or p == to - 1 then
      redis.call('DEL', unpack(dead))
      dead = {}
    end
  end
end

-- delete the fields of transactions at or before `cut` (every value starts with its ms)
local function trim_rows(kr, cut)
  local all = redis.call('HGETALL', kr)
  local dead = {}
  for h = 1, #all, 2 do
    if math.floor(unpack_('<d', all[h + 1]) / 1000) <= cut then
      dead[#dead + 1] = all[h]
    end
  end
  for s = 1, #dead, 1000 do
    redis.call('HDEL', kr, unpack(dead, s, math.min(s + 999, #dead)))
  end
end

-- records [from, to) of a customer history, with (dw, dr) added to their totals
local function shifted(hist, from, to, dw, dr)
  local moved = {}
  for i = from, to - 1 do
    local s, w, r = unpack_('<ddd', hist, HEAD + 1 + i * CREC)
    moved[#moved + 1] = pack('<ddd', s, w + dw, r + dr)
  end
  return table.concat(moved)
end

-- The customer's history, its record count, where a transaction at `sec` goes in it, and
-- whether that transaction is certainly new. A transaction applied before keeps its record
-- while its second is inside the horizon (a trim cuts at or before the newest second minus
-- ckeep), so there a second with no record is a new transaction and its rows hash need not
-- be asked.
local function customer_read(kh, sec)
  local hist = redis.call('GET', kh)
  if not hist then return pack('<ddd', -1 / 0, 0, 0), 0, 0, false end
  local n = (#hist - HEAD) / CREC
  if n == 0 then return hist, 0, 0, false end
  local newest = unpack_('<d', hist, HEAD + 1 + (n - 1) * CREC)
  local pos = n
  if newest > sec then pos = above(hist, HEAD + 1, CREC, 0, n, sec) end
  local new = sec > newest - ckeep
    and (pos == 0 or unpack_('<d', hist, HEAD + 1 + (pos - 1) * CREC) < sec)
  return hist, n, pos, new
end

-- Apply a transaction to the history read by customer_read, appending its window parts.
-- True when its rows hash is to get its idle TTL: a new period's hash, a late
-- transaction's, or whenever the history was rebuilt (which renews the history's TTL).
local function customer_apply(kh, hist, n, pos, sec, x, parts)
  local w, r = customer_totals(hist, pos - 1)
  local aw, ar = split(x)
  local tw_, tr = w + aw, r + ar
  for j = 1, ncw do
    local lo = above(hist, HEAD + 1, CREC, 0, pos, sec - cw[j])
    local bw, br = customer_totals(hist, lo - 1)
    parts[#parts + 1] = pos + 1 - lo
    parts[#parts + 1] = (tw_ - bw) / SCALE + (tr - br)
  end
  local rec = pack('<ddd', sec, tw_, tr)
  local refreshed = unpack_('<d', hist, 1)
  local k = trim_from(hist, CREC, n, sec - ckeep, 16)
  local refresh = sec - refreshed >= refresh_s
  if pos == n and k == 0 and not refresh and tw_ <= REBASE_AT then
    redis.call('APPEND', kh, rec)
    return n == 0 or period(unpack_('<d', hist, HEAD + 1 + (n - 1) * CREC)) ~= period(sec)
  end
  -- rebuilt: records k..pos-1 as they are, the new one, later ones shifted by its amount
  local bw, br = customer_totals(hist, k - 1)
  local body = sub(hist, HEAD + 1 + k * CREC, HEAD + pos * CREC) .. rec
  if pos < n then body = body .. shifted(hist, pos, n, aw, ar) end
  if tw_ > REBASE_AT then
    body = shifted(pack('<ddd', 0, 0, 0) .. body, 0, n + 1 - k, -bw, 0)
    bw = 0
  end
  if refresh then refreshed = sec end
  redis.call('SET', kh, pack('<ddd', refreshed, bw, br) .. body, 'PX', cttl)
  if k > 0 then
    -- the first record kept is record k, or the new one when it goes first
    local first = sec
    if k < pos then first = unpack_('<d', hist, HEAD + 1 + k * CREC) end
    drop_rows(kh, period(unpack_('<d', hist, HEAD + 1)), period(first))
  end
  return true
end

-- The row of the batch's transaction i (rows hash kr, history kh): the stored one when it
-- is known, else the transaction is applied to its customer, `finish(parts, i, sec, ms)`
-- completes the row from the customer's parts, and the row is stored
local function customer_row(kr, kh, txid, i, finish)
  local sec, x, ms = unpack_('<ddd', numbers, 24 * (i - 1) + 1)
  local hist, n, pos, new = customer_read(kh, sec)
  if not new then
    local known = redis.call('HGET', kr, txid)
    if known then return known end
  end
  local parts = {ms, x}
  local expire = customer_apply(kh, hist, n, pos, sec, x, parts)
  local rec = finish(parts, i, sec, ms)
  redis.call('HSET', kr, txid, rec)
  if expire then redis.call('PEXPIRE', kr, rttl) end
  return rec
end

-- TERMINAL HISTORY P:{t:<terminal>}:w: header '<ddd' (event second of the last TTL
-- refresh, unused, unused), then the event second of each transaction ('<d');
-- P:{t:<terminal>}:fs: event seconds of its fraud-labelled transactions, sorted
local function terminal_counts(hist, n, frauds, sec, parts)
  local hi = sec - delay
  local nf = #frauds / 8
  local top, ftop = above(hist, HEAD + 1, 8, 0, n, hi), above(frauds, 1, 8, 0, nf, hi)
  for j = 1, ntw do
    parts[#parts + 1] = top - above(hist, HEAD + 1, 8, 0, top, hi - tw[j])
    if ftop == 0 then
      parts[#parts + 1] = 0
    else
      parts[#parts + 1] = ftop - above(frauds, 1, 8, 0, ftop, hi - tw[j])
    end
  end
end

-- add the transaction (unless already beyond the horizon), then its counts as of now.
-- With `ki` (Redis Cluster, where this half runs on its own) the terminal deduplicates by
-- itself: hash tx id -> ms of the transactions it holds.
local function terminal_apply(kw, kf, ki, txid, sec, ms, parts)
  local got = redis.call('MGET', kw, kf)
  local hist, frauds = got[1] or pack('<ddd', -1 / 0, 0, 0), got[2] or ''
  local n = (#hist - HEAD) / 8
  local newest = sec
  if n > 0 then newest = unpack_('<d', hist, HEAD + 1 + (n - 1) * 8) end
  terminal_counts(hist, n, frauds, sec, parts)
  if sec <= newest - tkeep then return end
  if ki and redis.call('HSETNX', ki, txid, pack('<d', ms)) == 0 then return end
  if newest < sec then newest = sec end
  local refreshed = unpack_('<d', hist, 1)
  local k = trim_from(hist, 8, n, newest - tkeep, 16)
  local refresh = sec - refreshed >= refresh_s
  if k == 0 and not refresh and (n == 0 or newest == sec) then
    redis.call('APPEND', kw, pack('<d', sec))
    return
  end
  local pos = above(hist, HEAD + 1, 8, k, n, sec)
  if refresh then refreshed = sec end
  local new = pack('<ddd', refreshed, 0, 0) .. sub(hist, HEAD + 1 + 8 * k, HEAD + 8 * pos)
    .. pack('<d', sec) .. sub(hist, HEAD + 1 + 8 * pos)
  redis.call('SET', kw, new, 'PX', tttl)
  if ki and k > 0 then trim_rows(ki, newest - tkeep) end
  if ki and refresh then redis.call('PEXPIRE', ki, tttl) end
end
"""

_HEADER = r"""
-- ARGV: n, ncw, ntw, delay_s, c_keep_s, t_keep_s, refresh_s, c_ttl_ms, t_ttl_ms, n_offsets,
--       customer windows..., terminal windows..., (partition, offset)...,
--       numbers (second, amount, ms per transaction as little-endian doubles), ...
local n, ncw, ntw = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local delay, ckeep, tkeep = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local refresh_s, cttl, tttl, noff = tonumber(ARGV[7]), ARGV[8], ARGV[9], tonumber(ARGV[10])
-- a rows hash spans a period of refresh_s: it lives that much longer than a history
local rttl = tonumber(cttl) + refresh_s * 1000
local a = 11
local cw, tw = {}, {}
for j = 1, ncw do cw[j] = tonumber(ARGV[a]); a = a + 1 end
for j = 1, ntw do tw[j] = tonumber(ARGV[a]); a = a + 1 end
local off_at = a
a = a + 2 * noff
local numbers = ARGV[a]
a = a + 1
local row_format = '<' .. string.rep('d', 2 + 2 * ncw + 2 * ntw)
"""

_MARKS = r"""
if noff > 0 then
  local ko = KEYS[#KEYS]
  for p = 0, noff - 1 do
    local part, off = ARGV[off_at + 2 * p], ARGV[off_at + 2 * p + 1]
    local cur = redis.call('HGET', ko, part)
    if not cur or tonumber(cur) < tonumber(off) then redis.call('HSET', ko, part, off) end
  end
end
"""

APPLY_TRANSACTIONS = (
    _HEADER
    + _FUNCTIONS
    + r"""
-- KEYS: 4 per transaction (customer r<period>, h, terminal w, fs) [, offsets hash];
-- ARGV as above, then the tx ids
local function with_terminal(parts, i, sec, ms)
  local k = 4 * (i - 1)
  terminal_apply(KEYS[k + 3], KEYS[k + 4], nil, ARGV[a + i - 1], sec, ms, parts)
  return pack(row_format, unpack(parts))
end
local out = {}
for i = 1, n do
  local k = 4 * (i - 1)
  out[i] = customer_row(KEYS[k + 1], KEYS[k + 2], ARGV[a + i - 1], i, with_terminal)
end
"""
    + _MARKS
    + "return out\n"
)

_CROSS_SLOT = "#!lua flags=allow-cross-slot-keys\n"
"""Cluster scripts declare no keys and name them in ARGV: they run on the node that holds
every key they touch, across that node's slots (a declared key list must be one slot)."""

APPLY_TERMINALS = (
    _CROSS_SLOT
    + _HEADER
    + _FUNCTIONS
    + r"""
-- ARGV as above (no offsets), then 3 keys per transaction (terminal w, fs, i), then ids.
-- Returns the terminal counts of every transaction, packed little-endian doubles.
local out = {}
local ids_at = a + 3 * n
local counts = '<' .. string.rep('d', 2 * ntw)
for i = 1, n do
  local sec, _, ms = unpack_('<ddd', numbers, 24 * (i - 1) + 1)
  local k, parts = a + 3 * (i - 1), {}
  terminal_apply(ARGV[k], ARGV[k + 1], ARGV[k + 2], ARGV[ids_at + i - 1], sec, ms, parts)
  out[i] = pack(counts, unpack(parts))
end
return table.concat(out)
"""
)

APPLY_CUSTOMERS = (
    _CROSS_SLOT
    + _HEADER
    + _FUNCTIONS
    + r"""
-- ARGV as above (no offsets), then the terminal counts of every transaction (packed as
-- APPLY_TERMINALS returns them), 2 keys per transaction (customer r<period>, h), then tx
-- ids. A known transaction keeps its first row, whatever terminal counts came with it.
local out = {}
local tparts = ARGV[a]
local ids_at = a + 1 + 2 * n
local tsize = 16 * ntw
local customer_format = '<' .. string.rep('d', 2 + 2 * ncw)
local function with_counts(parts, i)
  return pack(customer_format, unpack(parts)) .. sub(tparts, (i - 1) * tsize + 1, i * tsize)
end
for i = 1, n do
  local k = a + 1 + 2 * (i - 1)
  out[i] = customer_row(ARGV[k], ARGV[k + 1], ARGV[ids_at + i - 1], i, with_counts)
end
return out
"""
)

_LABELS = r"""
local new, touch = 0, {}
for i = 1, n do
  local kl, kf, ks = key(3 * i - 2), key(3 * i - 1), key(3 * i)
  local txid, sec, fraud = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  a = a + 3
  if redis.call('ZADD', kl, 'NX', sec, txid) == 1 then
    new = new + 1
    if fraud == '1' then
      redis.call('ZADD', kf, sec, txid)
      -- fraud seconds sorted, those beyond the horizon dropped (labels are few)
      local frauds = redis.call('GET', ks) or ''
      local keep = {}
      for p = 1, #frauds, 8 do
        local s = struct.unpack('<d', frauds, p)
        if s > sec - tkeep then keep[#keep + 1] = s end
      end
      keep[#keep + 1] = sec
      table.sort(keep)
      for j = 1, #keep do keep[j] = struct.pack('<d', keep[j]) end
      redis.call('SET', ks, table.concat(keep), 'PX', ttl)
    end
  end
  if not touch[kl] or touch[kl][2] < sec then touch[kl] = {kf, sec} end
end
for kl, v in pairs(touch) do
  local cut = v[2] - tkeep
  redis.call('ZREMRANGEBYSCORE', kl, '-inf', cut)
  redis.call('ZREMRANGEBYSCORE', v[1], '-inf', cut)
  redis.call('PEXPIRE', kl, ttl)
  redis.call('PEXPIRE', v[1], ttl)
end
return new
"""

APPLY_LABELS = (
    r"""
-- KEYS: 3 per label (terminal l, f, fs); ARGV: n, t_keep_s, t_ttl_ms,
--       then per label: tx id, event second, 1|0 (fraud)
local n, tkeep, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local a = 4
local function key(i) return KEYS[i] end
"""
    + _LABELS
)

APPLY_LABELS_CROSS_SLOT = (
    _CROSS_SLOT
    + r"""
-- ARGV: n, t_keep_s, t_ttl_ms, 3 keys per label (terminal l, f, fs),
--       then per label: tx id, event second, 1|0 (fraud)
local n, tkeep, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local a = 4 + 3 * n
local function key(i) return ARGV[3 + i] end
"""
    + _LABELS
)
