"""The Lua scripts of the Redis store: one call applies a whole batch atomically.

Key layout under a prefix ``P`` (every key of an entity shares its hash tag):

- ``P:{c:<customer>}:w`` sorted set, score = event second, member (binary)
  ``<count before, u64 BE><whole units before, f64><remainder before, f64><amount, f64><tx id>``
- ``P:{c:<customer>}:r`` hash, tx id -> raw row (little-endian f64s) returned the first
  time (idempotency); field ``""`` holds the newest second, running totals, last TTL refresh
- ``P:{t:<terminal>}:w`` sorted set, member tx id, score = event second (plus one
  maintenance marker scored above every second, see ``terminal_part``)
- ``P:{t:<terminal>}:f`` sorted set of fraud-labelled tx ids by event second
- ``P:{t:<terminal>}:l`` sorted set of every labelled tx id (first label wins)
- ``P:{o:<topic>}:offsets`` hash, partition -> highest applied offset mark
"""

from __future__ import annotations

APPLY_TRANSACTIONS = r"""
-- KEYS: 4 per transaction (customer w, customer r, terminal w, terminal f) [, offsets hash]
-- ARGV: n, ncw, ntw, delay_s, c_keep_s, t_keep_s, refresh_s, c_ttl_ms, t_ttl_ms, n_offsets,
--       customer windows..., terminal windows..., (partition, offset)...,
--       numbers (second, amount, ms per transaction as little-endian doubles), tx ids...
local n, ncw, ntw = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local delay, ckeep, tkeep = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local refresh_s, cttl, tttl, noff = tonumber(ARGV[7]), ARGV[8], ARGV[9], tonumber(ARGV[10])
local a = 11
local cw, tw = {}, {}
for j = 1, ncw do cw[j] = tonumber(ARGV[a]); a = a + 1 end
for j = 1, ntw do tw[j] = tonumber(ARGV[a]); a = a + 1 end
local off_at = a
a = a + 2 * noff
local numbers = ARGV[a]
local ids_at = a + 1
local row_format = '<' .. string.rep('d', 2 + 2 * ncw + 2 * ntw)
local out, ttouch = {}, {}

-- A customer member is binary: the count of entries before it (8 bytes big-endian, so
-- members of one second sort by arrival), the whole amount units (of 2^-16, exact integer
-- arithmetic in doubles) and float remainders before it, its amount, then its tx id.
-- A window's count and sum are differences of two members' totals: no scan, and no
-- cancellation error however long the history.
local SCALE, REBASE_AT, MEMBER = 65536, 2 ^ 52, '>I8<ddd'

local function split(x)
  local whole = math.floor(x * SCALE + 0.5)
  return whole, x - whole / SCALE
end

local function member(c, w, r, x, id)
  return struct.pack(MEMBER, c, w, r, x) .. id
end

-- add (dc, dw) to the totals of every entry scored from `lo` (a ZRANGEBYSCORE bound)
local function shift(kw, lo, dc, dw, dr)
  local later = redis.call('ZRANGEBYSCORE', kw, lo, '+inf', 'WITHSCORES')
  for h = 1, #later, 2 do
    local c, w, r, x = struct.unpack(MEMBER, later[h])
    redis.call('ZREM', kw, later[h])
    local moved = member(c + dc, w + dw, r + dr, x, string.sub(later[h], 33))
    redis.call('ZADD', kw, later[h + 1], moved)
  end
end

local function totals_before(kw, sec)
  local prev = redis.call('ZREVRANGEBYSCORE', kw, sec, '-inf', 'LIMIT', 0, 1)
  if prev[1] then
    local c, w, r, x = struct.unpack(MEMBER, prev[1])
    local pw, pr = split(x)
    return c + 1, w + pw, r + pr
  end
  local nxt = redis.call('ZRANGEBYSCORE', kw, '(' .. sec, '+inf', 'LIMIT', 0, 1)
  if nxt[1] then
    local c, w, r = struct.unpack(MEMBER, nxt[1])
    return c, w, r
  end
  return 0, 0, 0
end

local function trim_customer(kw, kr, cut)
  local dead = redis.call('ZRANGEBYSCORE', kw, '-inf', cut)
  if #dead == 0 then return end
  redis.call('ZREMRANGEBYSCORE', kw, '-inf', cut)
  for s = 1, #dead, 1000 do
    local ids = {}
    for h = s, math.min(s + 999, #dead) do ids[#ids + 1] = string.sub(dead[h], 33) end
    redis.call('HDEL', kr, unpack(ids))
  end
end

-- field '' of the customer hash: newest second, totals through every entry, and the event
-- second of the last TTL refresh
local META = '<ddddd'

local function customer_part(kw, kr, txid, sec, x, meta, parts)
  local aw, ar = split(x)
  local newest, mc, mw, mr, refreshed
  if meta then newest, mc, mw, mr, refreshed = struct.unpack(META, meta) end
  local c, w, r
  if newest and sec >= newest then
    c, w, r = mc, mw, mr
  else
    c, w, r = totals_before(kw, sec)
    if newest then shift(kw, '(' .. sec, 1, aw, ar) end
    mc, mw, mr = (mc or c), (mw or w), (mr or r)
  end
  redis.call('ZADD', kw, sec, member(c, w, r, x, txid))
  if w + aw > REBASE_AT then
    shift(kw, '-inf', 0, -w, 0)
    mw = mw - w
    w = 0
  end
  local tc, tw_, tr = c + 1, w + aw, r + ar
  for j = 1, ncw do
    local first = redis.call('ZRANGEBYSCORE', kw, '(' .. (sec - cw[j]), '+inf', 'LIMIT', 0, 1)
    local bc, bw, br = struct.unpack(MEMBER, first[1])
    parts[#parts + 1] = tc - bc
    parts[#parts + 1] = (tw_ - bw) / SCALE + (tr - br)
  end
  if tc % 16 == 0 then trim_customer(kw, kr, sec - ckeep) end
  local refresh = not refreshed or sec - refreshed >= refresh_s
  if refresh then
    redis.call('PEXPIRE', kw, cttl)
    refreshed = sec
  end
  if not newest or sec > newest then newest = sec end
  return struct.pack(META, newest, mc + 1, mw + aw, mr + ar, refreshed), refresh
end

-- nested windows, largest first: once one is empty, the smaller ones are too
local function nested_counts(key, hi, counts)
  for j = ntw, 1, -1 do
    local count = redis.call('ZCOUNT', key, '(' .. (hi - tw[j]), hi)
    counts[j] = count
    if count == 0 then
      for m = j - 1, 1, -1 do counts[m] = 0 end
      return
    end
  end
end

-- The terminal set also holds one marker member (129 characters, so never a tx id) scored
-- far above any event second: MARKER_BASE + the week of the terminal's newest transaction.
-- Adding it with the transaction (GT CH) tells, in the same call, whether this is the
-- terminal's first transaction of a new week; only then is it trimmed and its TTL renewed.
local MARKER, MARKER_BASE, WEEK = string.rep('~', 129), 1e15, 7 * 86400

local function terminal_part(kw, kf, txid, sec, parts)
  local mark = MARKER_BASE + math.floor(sec / WEEK)
  if redis.call('ZADD', kw, 'GT', 'CH', sec, txid, mark, MARKER) == 2 then
    if not ttouch[kw] or ttouch[kw] < sec then ttouch[kw] = sec end
  end
  local hi = sec - delay
  local counts, frauds = {}, {}
  nested_counts(kw, hi, counts)
  nested_counts(kf, hi, frauds)
  for j = 1, ntw do
    parts[#parts + 1] = counts[j]
    parts[#parts + 1] = frauds[j]
  end
end

for i = 1, n do
  local k = (i - 1) * 4
  local kcw, kcr, ktw, ktf = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local txid = ARGV[ids_at + i - 1]
  local known = redis.call('HMGET', kcr, txid, '')
  local rec = known[1]
  if not rec then
    local sec, x, ms = struct.unpack('<ddd', numbers, 24 * (i - 1) + 1)
    local parts = {ms, x}
    local meta, refresh = customer_part(kcw, kcr, txid, sec, x, known[2], parts)
    terminal_part(ktw, ktf, txid, sec, parts)
    rec = struct.pack(row_format, unpack(parts))
    redis.call('HSET', kcr, txid, rec, '', meta)
    if refresh then redis.call('PEXPIRE', kcr, cttl) end
  end
  out[i] = rec
end

for kw, sec in pairs(ttouch) do
  redis.call('ZREMRANGEBYSCORE', kw, '-inf', sec - tkeep)
  redis.call('PEXPIRE', kw, tttl)
end
if noff > 0 then
  local ko = KEYS[4 * n + 1]
  for p = 0, noff - 1 do
    local part, off = ARGV[off_at + 2 * p], ARGV[off_at + 2 * p + 1]
    local cur = redis.call('HGET', ko, part)
    if not cur or tonumber(cur) < tonumber(off) then redis.call('HSET', ko, part, off) end
  end
end
return out
"""

APPLY_LABELS = r"""
-- KEYS: 2 per label (terminal l, terminal f); ARGV: n, t_keep_s, t_ttl_ms,
--       then per label: tx id, event second, 1|0 (fraud)
local n, tkeep, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local new, touch, a = 0, {}, 4
for i = 1, n do
  local kl, kf = KEYS[2 * i - 1], KEYS[2 * i]
  local txid, sec, fraud = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  a = a + 3
  if redis.call('ZADD', kl, 'NX', sec, txid) == 1 then
    new = new + 1
    if fraud == '1' then redis.call('ZADD', kf, sec, txid) end
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
