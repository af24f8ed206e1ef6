-- Sorted runs: fixed-size records in one string, sorted by the event second each starts
-- with, read whole when short and block by block when long, searched, and planned for an
-- insertion (fraudstream.features.memory_history). Shared by the transaction and label
-- scripts.

-- LONG: a run shorter than this many bytes is read whole (one call), a longer one by
-- blocks of BLOCK bytes; CLONG instead for customer histories, whose records are six
-- times as long as a terminal's. STEP and the flags are fraudstream.features.store's TRIM_STEP,
-- FLAG_OUTLIER and FLAG_CAPPED (tests/unit/features/test_lua_files.py checks they agree).
local LONG, CLONG, BLOCK, STEP = 4096, 8192, 1024, 16
local FLAG_OUTLIER, FLAG_CAPPED = 2, 4

local NEG = -1 / 0
local sub, pack, unpack_, floor = string.sub, struct.pack, struct.unpack, math.floor
local max_, min_ = math.max, math.min
-- arguments of redis.call are passed as strings: a Lua number costs a printf each time
local ENDS = {[LONG] = tostring(LONG - 1), [CLONG] = tostring(CLONG - 1)}

-- A SORTED RUN is a string: a header of `head` bytes, then records of `size` bytes sorted
-- by the event second each starts with ('<d'). A view of it (a table reused from one
-- transaction to the next: no allocation) holds it whole when it is shorter than LONG
-- bytes (most entities), else its first LONG bytes and the blocks a search reads, so that
-- a long history costs a few short reads per transaction, not a copy of itself.
-- `got`: the run whole, or (`len` >= long, its length) its first `long` bytes (LONG or
-- CLONG, LONG when nil).
local function view(v, key, head, size, got, len, long)
  long = long or LONG
  v.key, v.head, v.size, v.per, v.blocks = key, head, size, floor(BLOCK / size), nil
  v.hdr, v.n, v.whole, v.first, v.long = sub(got, 1, head), 0, nil, nil, long
  if len < long then
    v.whole = got
    if len > head then v.n = (len - head) / size end
  else
    v.first, v.blocks = got, {}
    v.n = (len - head) / size
  end
end

-- the run at key whole when shorter than `long` (LONG when nil), else its first `long`
-- bytes (one call for short runs): (string, length)
local function fetch(key, long)
  long = long or LONG
  local got = redis.call('GETRANGE', key, '0', ENDS[long])
  if #got < long then return got, #got end
  return got, redis.call('STRLEN', key)
end

local function read(v, key, head, size)
  local got, len = fetch(key)
  view(v, key, head, size, got, len)
end

-- the string holding record i (0-based) of view v, and the record's position in it
local function at(v, i)
  local off = v.head + i * v.size
  if v.whole then return v.whole, off + 1 end
  if off + v.size <= v.long then return v.first, off + 1 end
  local b = floor(i / v.per)
  local from = v.head + b * v.per * v.size
  local blk = v.blocks[b]
  if not blk then
    blk = redis.call('GETRANGE', v.key, tostring(from), tostring(from + v.per * v.size - 1))
    v.blocks[b] = blk
  end
  return blk, off - from + 1
end

local function sec_at(v, i)
  local w = v.whole
  if w then return (unpack_('<d', w, v.head + i * v.size + 1)) end
  local s, o = at(v, i)
  return (unpack_('<d', s, o))
end

local function bisect(v, lo, hi, s)
  if v.whole then
    local blob, base, size = v.whole, v.head + 1, v.size
    while lo < hi do
      local mid = (lo + hi - (lo + hi) % 2) / 2 -- no math.floor call: a VM operation
      if unpack_('<d', blob, base + mid * size) <= s then lo = mid + 1 else hi = mid end
    end
    return lo
  end
  while lo < hi do
    local mid = (lo + hi - (lo + hi) % 2) / 2
    if sec_at(v, mid) <= s then lo = mid + 1 else hi = mid end
  end
  return lo
end

-- First index in [lo, hi) whose second is above s (hi when none). On a long run each step
-- reads one block, guessed by interpolating the seconds between the ends of the range
-- (alternating with halving, so that uneven times cost O(log n) blocks at worst); the
-- answer's block is then searched. The first block and the newest records are read anyway
-- (view, locate), so a window reaching past either end costs no read.
local function above(v, lo, hi, s)
  if v.whole or hi - lo <= v.per then return bisect(v, lo, hi, s) end
  local per, turn = v.per, 0
  local slo, shi = sec_at(v, lo), sec_at(v, hi - 1)
  if slo > s then return lo end
  if shi <= s then return hi end
  -- invariant: sec(lo) <= s < sec(hi - 1), slo and shi those seconds
  while hi - lo > per do
    local g = (lo + hi - (lo + hi) % 2) / 2
    if turn % 2 == 0 and shi > slo then
      g = lo + floor((s - slo) / (shi - slo) * (hi - 1 - lo))
    end
    turn = turn + 1
    local b = floor(g / per)
    local bf, bl = max_(b * per, lo), min_((b + 1) * per, hi) - 1
    local first, last = sec_at(v, bf), sec_at(v, bl)
    if first > s then
      hi, shi = bf + 1, first
    elseif last <= s then
      lo, slo = bl, last
    else
      return bisect(v, bf + 1, bl + 1, s)
    end
  end
  return bisect(v, lo, hi, s)
end

-- Where a record at `sec` goes in v: v.pos, after every record at or before sec (v.start,
-- the first record after what is trimmed, comes with the header)
local function locate(v, sec)
  v.pos = v.n
  if v.n > v.start and sec_at(v, v.n - 1) > sec then v.pos = above(v, v.start, v.n, sec) end
end

-- index of the first record kept once plan p is stored with d records dropped from the front
local function start_after(p, d)
  local s = p.first - d
  if p.added and not p.kept then s = s - 1 end
  return s
end

-- second of record j once a record at sec is added at p.pos (when p.added)
local function post(v, p, sec, j)
  if not p.added or j < p.pos then return sec_at(v, j) end
  if j == p.pos then return sec end
  return sec_at(v, j - 1)
end

-- first index, once the record at sec is added, whose second is above x
local function above_post(v, p, sec, x)
  local i = above(v, v.start, v.n, x)
  if p.added and sec <= x then i = i + 1 end
  return i
end

-- Fill plan p (a reused table) with what applying a record at `sec` (watermark wm, NaN
-- for none) does to v: fraudstream.features.memory_history.History.plan, with indices counted from
-- the first physical record (v.start of them are dead).
local function plan(v, p, sec, wm, keep, cap)
  local n, start = v.n, v.start
  local add = sec > max_(v.tt, v.cc)
  p.tt, p.cc, p.pos, p.added, p.first, p.m = v.tt, v.cc, v.pos, add, start, n
  if add then p.m = n + 1 end
  local m = p.m
  -- the second newest record: one record dated far ahead cannot move it
  local ref = NEG
  if m - start >= 2 then ref = post(v, p, sec, m - 2) end
  if wm < ref then ref = wm end
  local cut = ref - keep
  if m - start >= STEP and post(v, p, sec, start + STEP - 1) <= cut then
    p.tt, p.first = cut, above_post(v, p, sec, cut)
  end
  if m - p.first > cap then
    local c = post(v, p, sec, p.first + STEP - 1)
    if c > p.cc then p.cc = c end
    p.first = above_post(v, p, sec, max_(p.tt, p.cc))
  end
  p.t = max_(p.tt, p.cc)
  p.kept = add and p.pos >= p.first
end

-- the plan of a read-only row: nothing moves
local function readonly(v, p)
  p.tt, p.cc, p.pos, p.added, p.first, p.m = v.tt, v.cc, v.pos, false, v.start, v.n
  p.t, p.kept = max_(v.tt, v.cc), false
end

-- flags of a row whose windows start after second `reach`
local function trim_flags(p, reach)
  local f = 0
  if p.tt > reach then f = f + FLAG_OUTLIER end
  if p.cc > reach then f = f + FLAG_CAPPED end
  return f
end
