-- A transaction's entities, over the sorted runs of sorted_runs.lua, with exactly the
-- semantics of fraudstream.features.memory_store: the identity claim, what both halves
-- share (storing a history, per-period hashes) and the customer's half. The terminal's
-- half is terminal_half.lua. Needs transaction_args.lua's locals.

-- fraudstream.features.store's FLAG_CONFLICT (tests/unit/features/test_lua_files.py checks)
local FLAG_CONFLICT = 1

local SCALE, REBASE_AT = 65536, 2 ^ 52
local NEW, DUP, CONFLICT = 0, 1, 2
local cmax, tmax = cw[ncw], delay + tw[ntw]
local rttl_ = tostring(rttl)
-- views and plans, reused from one transaction to the next
local CV, TV, FV, CP, TP = {}, {}, {}, {}, {}

-- amounts are summed as whole units of 2^-16 (exact integer arithmetic in doubles) plus
-- float remainders: a window's sum is a difference of two running totals, with no
-- cancellation error however long the history
local function split(x)
  local whole = floor(x * SCALE + 0.5)
  return whole, x - whole / SCALE
end

local function period(s)
  return floor(s / refresh_s)
end

-- IDENTITY P:{x:<tx id>}: the fingerprint of the content the id was first applied with
local function claim(kx, fp)
  local old = redis.call('SET', kx, fp, 'NX', 'GET', 'PX', rttl_)
  if not old then return NEW end
  if old == fp then return DUP end
  return CONFLICT
end

-- delete the hashes base..p for periods p in [from, to)
local function drop_periods(base, from, to)
  local dead = {}
  for p = from, to - 1 do
    dead[#dead + 1] = base .. p
    if #dead == 1000 or p == to - 1 then
      redis.call('UNLINK', unpack(dead))
      dead = {}
    end
  end
end

-- whether plan p trims v past records it holds
local function advances(v, p)
  return p.t > max_(v.tt, v.cc) and v.start < v.n
end

-- delete the per-period hashes (base..p) that plan p trims v past, for a record at sec
local function drop_trimmed(base, v, p, sec)
  local to
  if p.m - p.first <= 0 then
    to = period(p.t)
  elseif p.added and p.first == p.pos then
    to = period(sec)
  else
    local j = p.first
    if p.added and p.pos < p.first then j = j - 1 end
    to = period(sec_at(v, j))
  end
  drop_periods(base, period(sec_at(v, v.start)), to)
end

-- whether a record at sec starts a new period of v (per-period hashes get their TTL then)
local function new_period(v, sec)
  return v.n == 0 or period(sec_at(v, v.n - 1)) ~= period(sec)
end

-- the TTL renewal of an applied plan: when event time moved a refresh period on (or the
-- last renewal is implausibly far ahead)
local function renewal(v, p, sec, keep)
  p.refresh = sec - v.refreshed >= refresh_s or v.refreshed - sec > keep
  p.refreshed = v.refreshed
  if p.refresh then p.refreshed = sec end
  p.changed = p.refresh or p.tt ~= v.tt or p.cc ~= v.cc
end

-- CUSTOMER HISTORY P:{c:<customer>}:h: a sorted run, header '<dddddd' (event second of
-- the last TTL renewal, running totals of amounts before the first record, trimmed-through
-- second, capped-through second, index of the first record after them: those before are
-- dead, until a rewrite drops them) then the maxima area (amount_history.lua, at
-- AREA_AT), records '<dddd' (second, running totals through it of amounts as whole units
-- and remainders, the record's own amount in whole cents).
-- CUSTOMER ROWS P:{c:<customer>}:r<p>: the rows of its transactions whose event second is
-- in period p (of refresh_s seconds), deleted whole once the history is trimmed past it.
local CHEAD, CREC, AREA_ARG = AREA_AT + AREA_BYTES, 32, tostring(AREA_AT)
local CREC_FORMAT, CHEAD_FORMAT = '<dddd', '<dddddd'

-- running totals through record i (amount units, remainders)
local function customer_totals(v, i)
  if i < 0 then return v.bw, v.br end
  local s, o = v.whole, CHEAD + 1 + i * CREC
  if not s then s, o = at(v, i) end
  local _, w, r = unpack_('<ddd', s, o)
  return w, r
end

-- the whole cents of record i's amount
local function record_cents(v, i)
  local s, o = v.whole, CHEAD + 1 + i * CREC
  if not s then s, o = at(v, i) end
  return (unpack_('<d', s, o + 24))
end

-- The maxima rebuilt from history v with the record (sec, c) of plan p inserted at p.pos,
-- for a row older than the newest record: a scan back from the newest record to the
-- widest window's start (or what the plan trims), keeping each record above all newer.
-- Returns the new area bytes.
local function rebuild_max(v, p, sec, c)
  local newest = max_(sec_at(v, v.n - 1), sec)
  local stop = max_(newest - cw[ncw], p.t)
  local secs, cs, best, placed = {}, {}, -1, false
  local i = v.n - 1
  while i >= v.start do
    if not placed and i < p.pos then
      placed = true
      if sec <= stop then break end
      if c > best then best, secs[#secs + 1], cs[#cs + 1] = c, sec, c end
    end
    local s = sec_at(v, i)
    if s <= stop then break end
    local ci = record_cents(v, i)
    if ci > best then best, secs[#secs + 1], cs[#cs + 1] = ci, s, ci end
    i = i - 1
  end
  if not placed and sec > stop and c > best then secs[#secs + 1], cs[#cs + 1] = sec, c end
  return maxima_from(v.key, secs, cs)
end

-- the largest cents of records [lo, pos) of v (-1: none)
local function scan_max(v, lo, pos)
  local best = -1
  for i = lo, pos - 1 do
    local c = record_cents(v, i)
    if c > best then best = c end
  end
  return best
end

-- a transaction at sec with no record at its second, after what is trimmed, was never
-- applied to this customer: its rows hash need not be asked
local function certainly_new(v, sec)
  return sec > max_(v.tt, v.cc) and (v.pos == v.start or sec_at(v, v.pos - 1) < sec)
end

-- records of a customer history string, with (dw, dr) added to their totals
local function shifted(recs, dw, dr)
  local moved = {}
  for o = 1, #recs, CREC do
    local s, w, r, c = unpack_(CREC_FORMAT, recs, o)
    moved[#moved + 1] = pack(CREC_FORMAT, s, w + dw, r + dr, c)
  end
  return table.concat(moved)
end

-- (count, sum) per window (sec - w, sec] into parts, the record itself included, widest
-- window first so that each search narrows the next, then the largest cents of the
-- widest window's earlier records (maxima read by area_read); p.tw, p.tr: running totals
-- through it, p.ac: its cents
local function customer_windows(v, p, sec, x, parts, applied)
  p.aw, p.ar = split(x)
  p.ac = cents(x)
  local e = 2 * ncw + 3
  if (applied and not p.kept) or sec <= p.t then
    for j = 1, ncw do
      parts[2 * j + 1], parts[2 * j + 2] = 1, x
    end
    parts[e] = -1
    return
  end
  local pos = p.pos
  local w0, r0 = customer_totals(v, pos - 1)
  local tw_, tr = w0 + p.aw, r0 + p.ar
  p.tw, p.tr = tw_, tr
  local lo = v.start
  for j = ncw, 1, -1 do
    local lower = max_(sec - cw[j], p.t)
    lo = above(v, lo, pos, lower)
    local bw, br = customer_totals(v, lo - 1)
    parts[2 * j + 1], parts[2 * j + 2] = pos + 1 - lo, (tw_ - bw) / SCALE + (tr - br)
    if j == ncw then
      local best = -1
      if pos < v.n then
        best = scan_max(v, lo, pos)
      elseif pos > lo then
        best = window_max(v.key, lower)
      end
      parts[e] = best
    end
  end
end

-- TERMINAL HISTORY P:{t:<terminal>}:w: a sorted run, header '<ddddd' (event second of the
-- last TTL renewal, trimmed-through second, capped-through second, 1 once it has had a
-- fraud label: only then is fs read, index of the first record kept), records '<d'.
-- P:{t:<terminal>}:fs: a sorted run without header of its fraud-labelled seconds
-- (terminal_half.lua has the terminal's half).
local THEAD, TREC = 40, 8

-- the maxima area bytes of customer history view v
local function area_of(v)
  local area = sub(v.hdr, AREA_AT + 1, CHEAD)
  if #area < AREA_BYTES then return EMPTY_AREA end
  return area
end

local function header_at(v, p, d)
  local start = start_after(p, d)
  if v.head == THEAD then return pack('<ddddd', p.refreshed, p.tt, p.cc, v.frauds, start) end
  local bw, br = v.bw, v.br
  if d > 0 then bw, br = customer_totals(v, d - 1) end
  return pack(CHEAD_FORMAT, p.refreshed, bw, br, p.tt, p.cc, start) .. area_of(v)
end

local function shift(v, p, recs)
  if v.head == THEAD or recs == '' then return recs end
  return shifted(recs, p.aw, p.ar)
end

-- Store plan p of run v: record `rec` inserted at p.pos when kept (the records after it
-- shifted), the records before p.first dropped, the header renewed. A short run is
-- rewritten whole (SET, which renews its TTL); a long one is changed in place (APPEND,
-- SETRANGE) and rewritten once a quarter of it is dead. Returns whether its TTL was
-- renewed.
local function store_run(v, p, rec, ttl)
  local key, size, head, n = v.key, v.size, v.head, v.n
  local d = p.first
  if p.added and p.pos < d then d = d - 1 end
  if not v.whole and d < max_(STEP, floor(p.m / 4)) then
    if p.kept and p.pos == n then
      redis.call('APPEND', key, rec)
    elseif p.kept then
      local from = head + p.pos * size
      redis.call('SETRANGE', key, from, rec .. shift(v, p, redis.call('GETRANGE', key, from, -1)))
    end
    if p.changed then redis.call('SETRANGE', key, 0, header_at(v, p, 0)) end
    if p.refresh then redis.call('PEXPIRE', key, ttl) end
    return p.refresh
  end
  if v.whole and not p.changed and d == 0 then
    if not p.kept then return false end
    if p.pos == n then
      redis.call('APPEND', key, rec)
      return false
    end
  end
  local recs
  if v.whole then
    recs = sub(v.whole, head + 1 + d * size)
  else
    recs = redis.call('GETRANGE', key, head + d * size, -1)
  end
  if p.kept then
    local cut = (p.pos - d) * size
    recs = sub(recs, 1, cut) .. rec .. shift(v, p, sub(recs, cut + 1))
  end
  redis.call('SET', key, header_at(v, p, d) .. recs, 'PX', ttl)
  return true
end

-- store plan p of the customer history v; true when its TTL was renewed
local function customer_store(v, p, sec)
  renewal(v, p, sec, ckeep)
  if p.kept and p.tw > REBASE_AT then
    -- integer totals rebased to the first record kept, so that they stay exact
    local d = p.first
    local bw, br = customer_totals(v, d - 1)
    local recs = sub(v.whole or redis.call('GET', v.key), CHEAD + 1 + d * CREC)
    local cut = (p.pos - d) * CREC
    local body = shifted(sub(recs, 1, cut), -bw, 0)
      .. pack(CREC_FORMAT, sec, p.tw - bw, p.tr, p.ac)
      .. shifted(sub(recs, cut + 1), p.aw - bw, p.ar)
    local hdr = pack(CHEAD_FORMAT, p.refreshed, 0, br, p.tt, p.cc, start_after(p, d))
      .. area_of(v)
    redis.call('SET', v.key, hdr .. body, 'PX', cttl)
    return true
  end
  local rec = ''
  if p.kept then rec = pack(CREC_FORMAT, sec, p.tw, p.tr, p.ac) end
  return store_run(v, p, rec, cttl)
end

-- The common case in locals only (on the general path, table fields and calls cost Lua
-- 5.1 more than the work): a short history h, newest record before sec, nothing to trim,
-- cap or renew. Fills parts; returns the record to append, whether the row's hash starts
-- a period, and the flags; or nil when the general path is needed.
local function customer_fast(h, kh, sec, x, wm, parts)
  local n = (#h - CHEAD) / CREC
  if n < 1 or #h >= CLONG or #h % CREC ~= CHEAD % CREC then return nil end
  local refreshed, bw, br, tt, cc, start = unpack_(CHEAD_FORMAT, h, 1)
  local through = max_(tt, cc)
  if sec - refreshed >= refresh_s or refreshed - sec > ckeep or n + 1 > ccap
    or sec <= through or start ~= 0 then
    return nil
  end
  local newest, lw, lr = unpack_('<ddd', h, CHEAD + 1 + (n - 1) * CREC)
  local ref = newest
  if wm < ref then ref = wm end
  if newest >= sec
    or (n >= STEP and unpack_('<d', h, CHEAD + 1 + (STEP - 1) * CREC) <= ref - ckeep) then
    return nil
  end
  local aw, ar = split(x)
  local ac = cents(x)
  local tw_, tr = lw + aw, lr + ar
  if tw_ > REBASE_AT then return nil end
  local lo, e = 0, 2 * ncw + 3
  for j = ncw, 1, -1 do
    local s, hi = sec - cw[j], n
    while lo < hi do
      local mid = (lo + hi - (lo + hi) % 2) / 2
      if unpack_('<d', h, CHEAD + 1 + mid * CREC) <= s then lo = mid + 1 else hi = mid end
    end
    local w0, r0 = bw, br
    if lo > 0 then
      local _
      _, w0, r0 = unpack_('<ddd', h, CHEAD + 1 + (lo - 1) * CREC)
    end
    parts[2 * j + 1], parts[2 * j + 2] = n + 1 - lo, (tw_ - w0) / SCALE + (tr - r0)
    if j == ncw then
      area_read(h)
      local best = -1
      if lo < n then best = window_max(kh, max_(s, through)) end
      parts[e] = best
    end
  end
  redis.call('SETRANGE', kh, AREA_ARG, push_max(kh, sec, ac, sec - cw[ncw]))
  local reach, flags = sec - cmax, 0
  if tt > reach then flags = flags + FLAG_OUTLIER end
  if cc > reach then flags = flags + FLAG_CAPPED end
  local rec = pack(CREC_FORMAT, sec, tw_, tr, ac)
  return rec, period(newest) ~= period(sec), flags
end

-- The row (raw doubles, then flags) of the batch's transaction i (rows hash kr, history
-- kh): the stored one when it is known; else the transaction is applied to its customer
-- (read-only when `status` is a conflict), `finish(parts, i, sec, wm, applied, flags)`
-- completes the row, and an applied row is stored.
local function customer_row(kr, kh, txid, i, status, finish)
  local sec, x, ms, wm = unpack_('<dddd', numbers, 32 * (i - 1) + 1)
  if status == DUP then
    local known_ = redis.call('HGET', kr, txid)
    if known_ then return known_ end
  end
  local parts = {ms, x}
  local h, len = fetch(kh, CLONG)
  if h == '' and status ~= CONFLICT then
    -- the customer's first record: its history starts with it
    local aw, ar = split(x)
    local ac = cents(x)
    for j = 1, ncw do
      parts[2 * j + 1], parts[2 * j + 2] = 1, aw / SCALE + ar
    end
    parts[2 * ncw + 3] = -1
    local area = pack('<dddd', NEG, 1, sec, ac) .. sub(EMPTY_AREA, 33)
    local hdr = pack(CHEAD_FORMAT, sec, 0, 0, NEG, NEG, 0) .. area
    redis.call('SET', kh, hdr .. pack(CREC_FORMAT, sec, aw, ar, ac), 'PX', cttl)
    local row = finish(parts, i, sec, wm, true, 0)
    redis.call('HSET', kr, txid, row)
    redis.call('PEXPIRE', kr, rttl_)
    return row
  end
  if status == NEW then
    local rec, expire, flags = customer_fast(h, kh, sec, x, wm, parts)
    if rec then
      redis.call('APPEND', kh, rec)
      local row = finish(parts, i, sec, wm, true, flags)
      redis.call('HSET', kr, txid, row)
      if expire then redis.call('PEXPIRE', kr, rttl_) end
      return row
    end
  end
  view(CV, kh, CHEAD, CREC, h, len, CLONG)
  if #CV.hdr < CHEAD then
    CV.refreshed, CV.bw, CV.br, CV.tt, CV.cc, CV.start = NEG, 0, 0, NEG, NEG, 0
  else
    CV.refreshed, CV.bw, CV.br, CV.tt, CV.cc, CV.start = unpack_(CHEAD_FORMAT, CV.hdr, 1)
  end
  locate(CV, sec)
  if status == NEW and not certainly_new(CV, sec) then
    local known_ = redis.call('HGET', kr, txid)
    if known_ then return known_ end
  end
  local applied = status ~= CONFLICT
  if applied then plan(CV, CP, sec, wm, ckeep, ccap) else readonly(CV, CP) end
  area_read(CV.hdr)
  customer_windows(CV, CP, sec, x, parts, applied)
  local flags = trim_flags(CP, sec - cmax)
  local expire = false
  if applied then
    if advances(CV, CP) then drop_trimmed(sub(kh, 1, #kh - 1) .. 'r', CV, CP, sec) end
    -- a row older than the newest record rebuilds the maxima (before the history changes:
    -- a long one is read by blocks); an in-order one pushes its own
    local area
    if CP.kept and CP.pos < CV.n then area = rebuild_max(CV, CP, sec, CP.ac) end
    local renewed = customer_store(CV, CP, sec)
    expire = renewed or new_period(CV, sec)
    if CP.kept then
      area = area or push_max(kh, sec, CP.ac, sec - cw[ncw])
      redis.call('SETRANGE', kh, AREA_ARG, area)
    end
    local spill = AD
    if area then spill = unpack_('<d', area, 1) end
    if renewed and spill ~= NEG then redis.call('PEXPIRE', spill_key(kh), cttl) end
  end
  local row = finish(parts, i, sec, wm, applied, flags)
  if applied then
    redis.call('HSET', kr, txid, row)
    if expire then redis.call('PEXPIRE', kr, rttl_) end
  end
  return row
end
