-- A customer's amount history (feature set 4, fraudstream.features.definitions), over
-- sorted_runs.lua: amounts in whole cents, exact integers in doubles that the customer
-- history keeps per record, and the customer's maxima for the largest earlier amount.
-- Needs transaction_args.lua's locals.

-- fraudstream.features.definitions' CENTS_CAP (test_lua_files.py checks)
local CENTS_CAP = 67108863
-- the maxima area's offset in the customer history, after its 48-byte header
local AREA_AT = 48
-- AREA_SIZE: maxima kept in the customer history's header, the newer ones (the older
-- ones, when there are more, in the spill run)
local AREA_SIZE, MREC = 16, 16
local AREA_BYTES = 16 + MREC * AREA_SIZE
local EMPTY_AREA = pack('<dd', NEG, 0) .. string.rep('\0', MREC * AREA_SIZE)
local MV = {}
-- the area of the customer at hand, as area_read found it: the header string holding it
-- (at byte AREA_AT + 1), the spill's newest second (NEG: none), how many maxima
local AH, AD, AN = '', NEG, 0

-- whole cents of amount x, half up, at most CENTS_CAP
local function cents(x)
  local c = floor(x * 100 + 0.5)
  if c > CENTS_CAP then c = CENTS_CAP end
  return c
end

-- CUSTOMER MAXIMA: the customer's records that no later record equals or exceeds, in
-- history order (so their cents decrease), as far back as the widest window reaches from
-- the newest record. The window maximum of a row that no record is after is then the
-- cents of the first maximum in its window. The newest AREA_SIZE are in the customer
-- history's header ('<dd': spill's newest second, count; then '<dd' second, cents per
-- maximum); older ones spill to P:{c:<customer>}:m, a sorted run of '<dd' without header.
local function spill_key(kh)
  return sub(kh, 1, #kh - 1) .. 'm'
end

-- the area of header string h (at byte AREA_AT + 1), or an empty one
local function area_read(h)
  if #h < AREA_AT + AREA_BYTES then
    AH, AD, AN = EMPTY_AREA, NEG, 0
    return
  end
  AH = h
  AD, AN = unpack_('<dd', h, AREA_AT + 1)
end

-- second and cents of area maximum i (1-based, oldest first)
local function area_sec(i)
  return (unpack_('<d', AH, AREA_AT + 1 + MREC * i))
end

local function area_cents(i)
  return (unpack_('<d', AH, AREA_AT + 9 + MREC * i))
end

-- the area bytes of spill second d, then maxima f..n of the area read, then `rest`
local function area_bytes(d, f, n, rest)
  local live = ''
  if f <= n then live = sub(AH, AREA_AT + 1 + MREC * f, AREA_AT + 16 + MREC * n) end
  return pack('<dd', d, n - f + 1 + #rest / MREC) .. live .. rest
end

local function max_cents(i)
  local s, o = at(MV, i)
  return (unpack_('<d', s, o + 8))
end

-- the bytes of spill maxima [i, j)
local function spill_range(i, j)
  if j <= i then return '' end
  if MV.whole then return sub(MV.whole, i * MREC + 1, j * MREC) end
  return redis.call('GETRANGE', MV.key, tostring(i * MREC), tostring(j * MREC - 1))
end

-- the largest cents after second `lower` of a row that no record of customer history kh
-- is after (-1: none): the spill run is read only when its newest maximum is after lower
local function window_max(kh, lower)
  if AD > lower then
    read(MV, spill_key(kh), 0, MREC)
    local i = above(MV, 0, MV.n, lower)
    if i < MV.n then return max_cents(i) end
  end
  for i = 1, AN do
    if area_sec(i) > lower then return area_cents(i) end
  end
  return -1
end

-- Add a kept record (sec, c) that no record is after: the maxima it equals or exceeds go,
-- then those at or before `horizon` (the widest window's start); the area's oldest spills
-- when it is full. Returns the new area bytes (to write at AREA_AT in the history).
local function push_max(kh, sec, c, horizon)
  local n, d = AN, AD
  while n > 0 and area_cents(n) <= c do n = n - 1 end
  if n == 0 and d > horizon then
    read(MV, spill_key(kh), 0, MREC)
    local r = MV.n
    while r > 0 and max_cents(r - 1) <= c do r = r - 1 end
    if r < MV.n then
      local first = above(MV, 0, r, horizon)
      d = NEG
      if first < r then
        d = sec_at(MV, r - 1)
        redis.call('SET', MV.key, spill_range(first, r), 'PX', cttl)
      end
    end
  end
  if d <= horizon then d = NEG end
  local f = 1
  while f <= n and area_sec(f) <= horizon do f = f + 1 end
  if n - f + 2 > AREA_SIZE then
    local rec = sub(AH, AREA_AT + 1 + MREC * f, AREA_AT + 16 + MREC * f)
    if d == NEG then
      redis.call('SET', spill_key(kh), rec, 'PX', cttl)
    else
      local len = redis.call('APPEND', spill_key(kh), rec)
      if len % (64 * MREC) == 0 then
        -- now and then, the spill's maxima out of every window go
        read(MV, spill_key(kh), 0, MREC)
        local dead = above(MV, 0, MV.n, horizon)
        if dead >= MV.n / 4 then
          redis.call('SET', MV.key, spill_range(dead, MV.n), 'PX', cttl)
        end
      end
    end
    d = area_sec(f)
    f = f + 1
  end
  return area_bytes(d, f, n, pack('<dd', sec, c))
end

-- The area bytes for maxima given as (second, cents) pairs, newest first, each above all
-- newer ones; those the area cannot hold spill.
local function maxima_from(kh, secs, cs)
  local m = #secs
  local keep = min_(m, AREA_SIZE)
  local recs = {}
  for i = keep, 1, -1 do recs[#recs + 1] = pack('<dd', secs[i], cs[i]) end
  local d = NEG
  if m > AREA_SIZE then
    local spilled = {}
    for i = m, AREA_SIZE + 1, -1 do spilled[#spilled + 1] = pack('<dd', secs[i], cs[i]) end
    redis.call('SET', spill_key(kh), table.concat(spilled), 'PX', cttl)
    d = secs[AREA_SIZE + 1]
  end
  AH = EMPTY_AREA
  return area_bytes(d, 1, 0, table.concat(recs))
end
