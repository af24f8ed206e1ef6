-- The terminal's half of a transaction, after entity_histories.lua.

-- the fraud seconds' key, named from the history's when needed (a key argument per
-- transaction costs more than this)
local function fraud_key(kw)
  return sub(kw, 1, #kw - 1) .. 'fs'
end

-- Seconds from the first and the last fraud second of [flo, ftop) to hi into parts after
-- the k + 2 * ntw counts (-1 when there is none): from the sorted run view fs, or, with
-- fs nil, from the string s of a short run.
local function fraud_ages(fs, s, flo, ftop, hi, parts, k)
  local a, b = -1, -1
  if flo < ftop then
    if fs then
      a, b = hi - sec_at(fs, flo), hi - sec_at(fs, ftop - 1)
    else
      a, b = hi - unpack_('<d', s, 1 + flo * TREC), hi - unpack_('<d', s, 1 + (ftop - 1) * TREC)
    end
  end
  parts[k + 2 * ntw + 1], parts[k + 2 * ntw + 2] = a, b
end

-- The common case in locals only (see customer_fast): a short history w, newest record
-- at or before sec, nothing to trim, cap or renew. Appends the record, fills parts and
-- returns the flags and whether a per-period hash starts (or nil: the general path).
local function terminal_fast(kw, w, sec, wm, parts)
  local n = (#w - THEAD) / TREC
  if n < 1 or #w >= LONG or #w % TREC ~= 0 then return nil end
  local refreshed, tt, cc, frauds, start = unpack_('<ddddd', w, 1)
  local through = max_(tt, cc)
  if sec - refreshed >= refresh_s or refreshed - sec > tkeep or n + 1 > tcap
    or sec <= through or start ~= 0 then
    return nil
  end
  local newest = unpack_('<d', w, THEAD + 1 + (n - 1) * TREC)
  local ref = newest
  if wm < ref then ref = wm end
  if newest > sec
    or (n >= STEP and unpack_('<d', w, THEAD + 1 + (STEP - 1) * TREC) <= ref - tkeep) then
    return nil
  end
  local fs = ''
  if frauds == 1 then
    local len
    fs, len = fetch(fraud_key(kw))
    if len >= LONG then return nil end
  end
  local hi, nf, k = sec - delay, #fs / TREC, #parts
  local top, ftop, lo, flo = 0, 0, 0, 0
  local a_, b_ = 0, n
  while a_ < b_ do
    local mid = (a_ + b_ - (a_ + b_) % 2) / 2
    if unpack_('<d', w, THEAD + 1 + mid * TREC) <= hi then a_ = mid + 1 else b_ = mid end
  end
  top, a_, b_ = a_, 0, nf
  while a_ < b_ do
    local mid = (a_ + b_ - (a_ + b_) % 2) / 2
    if unpack_('<d', fs, 1 + mid * TREC) <= hi then a_ = mid + 1 else b_ = mid end
  end
  ftop = a_
  for j = ntw, 1, -1 do
    local s = hi - tw[j]
    local hi_ = top
    while lo < hi_ do
      local mid = (lo + hi_ - (lo + hi_) % 2) / 2
      if unpack_('<d', w, THEAD + 1 + mid * TREC) <= s then lo = mid + 1 else hi_ = mid end
    end
    hi_ = ftop
    while flo < hi_ do
      local mid = (flo + hi_ - (flo + hi_) % 2) / 2
      if unpack_('<d', fs, 1 + mid * TREC) <= s then flo = mid + 1 else hi_ = mid end
    end
    parts[k + 2 * j - 1], parts[k + 2 * j] = top - lo, ftop - flo
    if j == ntw then fraud_ages(nil, fs, flo, ftop, hi, parts, k) end
  end
  redis.call('APPEND', kw, pack('<d', sec))
  local reach, flags = sec - tmax, 0
  if tt > reach then flags = flags + FLAG_OUTLIER end
  if cc > reach then flags = flags + FLAG_CAPPED end
  return flags, period(newest) ~= period(sec)
end

local function terminal_view(kw, w, len, sec)
  view(TV, kw, THEAD, TREC, w, len)
  if #TV.hdr < THEAD then
    TV.refreshed, TV.tt, TV.cc, TV.frauds, TV.start = NEG, NEG, NEG, 0, 0
  else
    TV.refreshed, TV.tt, TV.cc, TV.frauds, TV.start = unpack_('<ddddd', TV.hdr, 1)
  end
  if TV.frauds == 1 then read(FV, fraud_key(kw), 0, TREC) else view(FV, '', 0, TREC, '', 0) end
  locate(TV, sec)
end

-- counts and frauds per window (sec - d - w, sec - d] into parts, widest window first,
-- then the widest window's fraud ages
local function terminal_counts(v, fs, p, sec, parts)
  local hi = sec - delay
  local top, ftop = above(v, v.start, v.n, hi), above(fs, 0, fs.n, hi)
  local lo, flo, k = v.start, 0, #parts
  for j = ntw, 1, -1 do
    local lower = max_(hi - tw[j], p.t)
    lo, flo = above(v, lo, top, lower), above(fs, flo, ftop, lower)
    parts[k + 2 * j - 1], parts[k + 2 * j] = top - lo, ftop - flo
    if j == ntw then fraud_ages(fs, nil, flo, ftop, hi, parts, k) end
  end
end

-- Add the transaction to its terminal (read-only unless `applied`) and append its counts
-- to parts; returns its flags. With `ki` (Redis Cluster, where this half runs on its own)
-- the terminal deduplicates by itself: hashes ki..p of the tx ids it holds, per period.
local function terminal_part(kw, ki, txid, sec, wm, applied, parts)
  local w, len = fetch(kw)
  if applied and ki then
    local _, tt, cc = NEG, NEG, NEG
    if #w >= THEAD then _, tt, cc = unpack_('<ddd', w, 1) end
    -- a record at or before what the terminal trimmed is not added, nor its id
    if sec > max_(tt, cc) then
      applied = redis.call('HSETNX', ki .. period(sec), txid, '1') == 1
    end
  end
  if applied and w == '' then
    -- the terminal's first record: its history starts with it, its windows are empty
    local k = #parts
    for j = 1, 2 * ntw do parts[k + j] = 0 end
    parts[k + 2 * ntw + 1], parts[k + 2 * ntw + 2] = -1, -1
    redis.call('SET', kw, pack('<dddddd', sec, NEG, NEG, 0, 0, sec), 'PX', tttl)
    if ki then redis.call('PEXPIRE', ki .. period(sec), tttl) end
    return 0
  end
  if applied then
    local flags, fresh = terminal_fast(kw, w, sec, wm, parts)
    if flags then
      if ki and fresh then redis.call('PEXPIRE', ki .. period(sec), tttl) end
      return flags
    end
  end
  terminal_view(kw, w, len, sec)
  if applied then plan(TV, TP, sec, wm, tkeep, tcap) else readonly(TV, TP) end
  terminal_counts(TV, FV, TP, sec, parts)
  if applied then
    if ki and advances(TV, TP) then drop_trimmed(ki, TV, TP, sec) end
    renewal(TV, TP, sec, tkeep)
    local renewed = store_run(TV, TP, pack('<d', sec), tttl)
    if ki and TP.kept and (renewed or new_period(TV, sec)) then
      redis.call('PEXPIRE', ki .. period(sec), tttl)
    end
  end
  return trim_flags(TP, sec - tmax)
end
