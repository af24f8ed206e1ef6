-- A customer's amount history (feature set 3, fraudstream.features.definitions), over
-- sorted_runs.lua: amounts in whole cents with their squares in two 26-bit limbs, exact
-- integers in doubles whose running totals the customer history keeps, and the run of the
-- customer's maxima for the largest earlier amount. Needs transaction_args.lua's locals.

-- fraudstream.features.definitions' CENTS_CAP and LIMB (test_lua_files.py checks)
local CENTS_CAP, LIMB = 67108863, 67108864
local MREC = 16
local MV = {}

-- whole cents of amount x, half up, at most CENTS_CAP; then the limbs of their square
local function cents(x)
  local c = floor(x * 100 + 0.5)
  if c > CENTS_CAP then c = CENTS_CAP end
  local q = c * c
  local high = floor(q / LIMB)
  return c, high, q - high * LIMB
end

-- CUSTOMER MAXIMA P:{c:<customer>}:m: a sorted run without header of records '<dd'
-- (second, cents), the customer's records that no later record equals or exceeds, in
-- history order (so their cents decrease). The largest cents of the records in a window
-- that ends with the newest record is then that of the window's first maximum.
local function maxima_key(kh)
  return sub(kh, 1, #kh - 1) .. 'm'
end

local function read_maxima(kh)
  read(MV, maxima_key(kh), 0, MREC)
end

local function max_cents(i)
  local s, o = at(MV, i)
  return (unpack_('<d', s, o + 8))
end

-- the largest cents of the records after second `lower`, when none is after the row's
-- second (-1: none)
local function window_max(lower)
  local i = above(MV, 0, MV.n, lower)
  if i < MV.n then return max_cents(i) end
  return -1
end

-- the bytes of maxima [i, j)
local function maxima_range(i, j)
  if j <= i then return '' end
  if MV.whole then return sub(MV.whole, i * MREC + 1, j * MREC) end
  return redis.call('GETRANGE', MV.key, tostring(i * MREC), tostring(j * MREC - 1))
end

-- Add a kept record (sec, c) to the maxima read by read_maxima: not when a later maximum
-- equals or exceeds it; else the maxima before it that it equals or exceeds go, and so do
-- those at or before `through` (trimmed from the history) once they are many.
local function add_max(sec, c, through)
  local n = MV.n
  local q = n
  if n > 0 and sec_at(MV, n - 1) > sec then q = above(MV, 0, n, sec) end
  if q < n and max_cents(q) >= c then return end
  local r = q
  while r > 0 and max_cents(r - 1) <= c do r = r - 1 end
  local rec = pack('<dd', sec, c)
  local dead = above(MV, 0, r, through)
  if r == n and n > 0 and dead < max_(STEP, floor(n / 4)) then
    redis.call('APPEND', MV.key, rec)
    return
  end
  local body = maxima_range(dead, r) .. rec .. maxima_range(q, n)
  redis.call('SET', MV.key, body, 'PX', cttl)
end
