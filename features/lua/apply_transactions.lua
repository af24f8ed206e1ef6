-- Single node: claims each transaction's id and applies both halves, then raises the
-- offsets marks. After transaction_args.lua, sorted_runs.lua, entity_histories.lua and
-- terminal_half.lua.
-- KEYS: 4 per transaction (customer r<period>, h, terminal w, identity x)
--       [, offsets hash] [, guard]; ARGV as transaction_args.lua, then the tx ids
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
return out
