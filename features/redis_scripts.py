"""The Lua scripts of the Redis store: one call applies a whole batch atomically.

Key layout under a prefix ``P`` (every key of an entity shares its hash tag):

- ``P:{c:<customer>}:w`` sorted set, score = event second, member
  ``<count before>:<whole units before>:<remainder before>:<amount>:<tx id>``
- ``P:{c:<customer>}:r`` hash, tx id -> raw row returned the first time (idempotency);
  field ``""`` holds the customer's newest second, running totals and last TTL refresh
- ``P:{t:<terminal>}:w`` sorted set, member tx id, score = event second
- ``P:{t:<terminal>}:f`` sorted set of fraud-labelled tx ids by event second
- ``P:{t:<terminal>}:l`` sorted set of every labelled tx id (first label wins)
- ``P:{o:<topic>}:offsets`` hash, partition -> highest applied offset mark
"""

from __future__ import annotations

APPLY_TRANSACTIONS = r"""
-- KEYS: 4 per transaction (customer w, customer r, terminal w, terminal f) [, offsets hash]
-- ARGV: n, ncw, ntw, delay_s, c_keep_s, t_keep_s, refresh_s, c_ttl_ms, t_ttl_ms, n_offsets,
--       customer windows..., terminal windows..., (partition, offset)...,
--       then per transaction: tx id, second, amount, ms
local n, ncw, ntw = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local delay, ckeep, tkeep = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local refresh_s, cttl, tttl, noff = tonumber(ARGV[7]), ARGV[8], ARGV[9], tonumber(ARGV[10])
local a = 11
local cw, tw = {}, {}
for j = 1, ncw do cw[j] = tonumber(ARGV[a]); a = a + 1 end
for j = 1, ntw do tw[j] = tonumber(ARGV[a]); a = a + 1 end
local off_at = a
a = a + 2 * noff
local out, ttouch, fraud_known = {}, {}, {}

-- A customer member carries the running totals of every entry before it, in (second,
-- arrival) order: count, whole amount units of 2^-16 (exact integer arithmetic in doubles),
-- and the tiny float remainders. A window's count and sum are then differences of two
-- members' totals: no scan, and no cancellation error however long the history.
local SCALE, REBASE_AT = 65536, 2 ^ 52

local function split(amount)
  local x = tonumber(amount)
  local whole = math.floor(x * SCALE + 0.5)
  return whole, x - whole / SCALE
end

local function parse(m)
  local c, w, r, amount, id = string.match(m, '^(%d+):([^:]+):([^:]+):([^:]+):(.*)$')
  return tonumber(c), tonumber(w), tonumber(r), amount, id
end

local function member(c, w, r, amount, id)
  return string.format('%015d:%.17g:%.17g:', c, w, r) .. amount .. ':' .. id
end

-- add (dc, dw, dr) to the totals of every entry scored from `lo` (a ZRANGEBYSCORE bound)
local function shift(kw, lo, dc, dw, dr)
  local later = redis.call('ZRANGEBYSCORE', kw, lo, '+inf', 'WITHSCORES')
  for h = 1, #later, 2 do
    local c, w, r, amount, id = parse(later[h])
    redis.call('ZREM', kw, later[h])
    redis.call('ZADD', kw, later[h + 1], member(c + dc, w + dw, r + dr, amount, id))
  end
end

local function totals_before(kw, sec)
  local prev = redis.call('ZREVRANGEBYSCORE', kw, sec, '-inf', 'LIMIT', 0, 1)
  if prev[1] then
    local c, w, r, amount = parse(prev[1])
    local pw, pr = split(amount)
    return c + 1, w + pw, r + pr
  end
  local nxt = redis.call('ZRANGEBYSCORE', kw, '(' .. sec, '+inf', 'LIMIT', 0, 1)
  if nxt[1] then
    local c, w, r = parse(nxt[1])
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
    for h = s, math.min(s + 999, #dead) do
      local _, _, _, _, id = parse(dead[h])
      ids[#ids + 1] = id
    end
    redis.call('HDEL', kr, unpack(ids))
  end
end

-- field '' of the customer hash: newest second, totals through every entry, and the event
-- second of the last TTL refresh
local function read_meta(text)
  if not text then return nil end
  local newest, c, w, r, refreshed = string.match(text, '^([^|]+)|([^|]+)|([^|]+)|([^|]+)|(.*)$')
  return tonumber(newest), tonumber(c), tonumber(w), tonumber(r), tonumber(refreshed)
end

local function customer_part(kw, kr, txid, sec, amount, meta, parts)
  local aw, ar = split(amount)
  local newest, mc, mw, mr, refreshed = read_meta(meta)
  local c, w, r
  if newest and sec >= newest then
    c, w, r = mc, mw, mr
  else
    c, w, r = totals_before(kw, sec)
    if newest then shift(kw, '(' .. sec, 1, aw, ar) end
    mc, mw, mr = (mc or c), (mw or w), (mr or r)
  end
  redis.call('ZADD', kw, sec, member(c, w, r, amount, txid))
  if w + aw > REBASE_AT then
    shift(kw, '-inf', 0, -w, 0)
    mw = mw - w
    w = 0
  end
  local tc, tw_, tr = c + 1, w + aw, r + ar
  for j = 1, ncw do
    local first = redis.call('ZRANGEBYSCORE', kw, '(' .. (sec - cw[j]), '+inf', 'LIMIT', 0, 1)
    local bc, bw, br = parse(first[1])
    parts[#parts + 1] = tc - bc
    parts[#parts + 1] = string.format('%.17g', (tw_ - bw) / SCALE + (tr - br))
  end
  if tc % 16 == 0 then trim_customer(kw, kr, sec - ckeep) end
  if not refreshed or sec - refreshed >= refresh_s then
    redis.call('PEXPIRE', kw, cttl)
    refreshed = sec
  end
  if not newest or sec > newest then newest = sec end
  return string.format('%d|%d|%.17g|%.17g|%d', newest, mc + 1, mw + aw, mr + ar, refreshed),
    refreshed == sec
end

local function terminal_part(kw, kf, txid, sec, parts)
  redis.call('ZADD', kw, sec, txid)
  local has_fraud = fraud_known[kf]
  if has_fraud == nil then
    has_fraud = redis.call('EXISTS', kf) == 1
    fraud_known[kf] = has_fraud
  end
  local hi = sec - delay
  for j = 1, ntw do
    local lo = '(' .. (hi - tw[j])
    parts[#parts + 1] = redis.call('ZCOUNT', kw, lo, hi)
    parts[#parts + 1] = has_fraud and redis.call('ZCOUNT', kf, lo, hi) or 0
  end
  if not ttouch[kw] or ttouch[kw] < sec then ttouch[kw] = sec end
end

for i = 1, n do
  local k = (i - 1) * 4
  local kcw, kcr, ktw, ktf = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local txid, secs, amount, ms = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  a = a + 4
  local known = redis.call('HMGET', kcr, txid, '')
  local rec = known[1]
  if not rec then
    local sec = tonumber(secs)
    local parts = {ms, amount}
    local meta, refresh = customer_part(kcw, kcr, txid, sec, amount, known[2], parts)
    terminal_part(ktw, ktf, txid, sec, parts)
    rec = table.concat(parts, ',')
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
