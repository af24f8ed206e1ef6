-- The label scripts' work on a terminal, over sorted_runs.lua: its fraud label mark and
-- the sorted run of its fraud-labelled event seconds.

local FS = {}

-- mark terminal history kw as having had a fraud label (its header's fourth double), so
-- that transactions read its fraud seconds; a terminal without history gets a header alone
local function mark_frauds(kw, ttl)
  local hdr = redis.call('GETRANGE', kw, '0', '39')
  if #hdr < 40 then
    redis.call('SET', kw, pack('<ddddd', NEG, NEG, NEG, 1, 0), 'PX', ttl)
  elseif unpack_('<d', hdr, 25) ~= 1 then
    redis.call('SETRANGE', kw, '24', pack('<d', 1))
  end
end

-- insert second `sec` into the sorted run ks (no header)
local function insert_second(ks, sec)
  read(FS, ks, 0, 8)
  local n, pos = FS.n, FS.n
  if n > 0 and sec_at(FS, n - 1) > sec then pos = above(FS, 0, n, sec) end
  local rec = pack('<d', sec)
  if pos == n then
    redis.call('APPEND', ks, rec)
  elseif FS.whole then
    redis.call('SET', ks, sub(FS.whole, 1, pos * 8) .. rec .. sub(FS.whole, pos * 8 + 1), 'KEEPTTL')
  else
    redis.call('SETRANGE', ks, pos * 8, rec .. redis.call('GETRANGE', ks, pos * 8, -1))
  end
end

-- drop the seconds at or before `through` from ks, once a quarter of it (and STEP) is dead
local function trim_seconds(ks, through, ttl)
  read(FS, ks, 0, 8)
  local k = above(FS, 0, FS.n, through)
  if k < max_(STEP, floor(FS.n / 4)) then return end
  local rest
  if FS.whole then
    rest = sub(FS.whole, k * 8 + 1)
  else
    rest = redis.call('GETRANGE', ks, k * 8, -1)
  end
  if rest == '' then redis.call('DEL', ks) else redis.call('SET', ks, rest, 'PX', ttl) end
end
