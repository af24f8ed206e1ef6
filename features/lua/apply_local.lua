-- Customer state held locally (fraudstream.features.local_store), single node: the
-- customer's half is computed by the caller from the customer's log; this script claims
-- the ids, checks that the caller saw every log as it is, applies the terminal half and
-- appends each applied transaction's entry to its customer's log, atomically. After
-- transaction_args.lua, sorted_runs.lua, amount_history.lua, entity_histories.lua and
-- terminal_half.lua.
-- KEYS: 2 per transaction (identity x, terminal w), the log of each customer of the
--       batch (its "checks"), [, offsets hash]
-- ARGV as transaction_args.lua (guard 0), then: one byte per transaction (0: to apply,
--       2: read-only, a conflict the caller knows of), the customer parts (ms, amount,
--       (count, sum) per window, amount history, flags: little-endian doubles per
--       transaction), one byte per transaction (1: renew its log's TTL), per transaction
--       its customer's check ('<I', 1-based), the number of checks, the log length the
--       caller expects per check, then the log entry's head per transaction.
-- Returns the rows (raw doubles, then flags) in one string, or, when a claim disagrees
-- with what the caller expected or a checked log has another length, {'retry', claims,
-- bad checks...} having changed nothing but the claims.
local expect, cparts, renew, owner = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
local nchecks = tonumber(ARGV[a + 4])
local checks_at = a + 5
local heads_at = checks_at + nchecks
local logs_at = 2 * n
local csize = 8 * (4 + 2 * ncw)
local tformat = '<' .. string.rep('d', 2 * ntw + 2)
local byte = string.byte

local statuses, retry = {}, false
for i = 1, n do
  local status = claim(KEYS[2 * i - 1], sub(fps, 8 * i - 7, 8 * i))
  statuses[i] = status
  if (status == CONFLICT) ~= (byte(expect, i) == CONFLICT) then retry = true end
end
local bad = {}
for c = 1, nchecks do
  if redis.call('STRLEN', KEYS[logs_at + c]) ~= tonumber(ARGV[checks_at + c - 1]) then
    bad[#bad + 1] = c
  end
end
if retry or #bad > 0 then
  return {'retry', string.char(unpack(statuses)), unpack(bad)}
end

local out = {}
for i = 1, n do
  local sec, _, _, wm = unpack_('<dddd', numbers, 32 * (i - 1) + 1)
  local base = csize * (i - 1)
  local flags = unpack_('<d', cparts, base + csize - 7)
  local applied = byte(expect, i) ~= CONFLICT
  local tparts = {}
  flags = bit.bor(flags, terminal_part(KEYS[2 * i], nil, '', sec, wm, applied, tparts))
  if not applied then flags = bit.bor(flags, FLAG_CONFLICT) end
  local row = sub(cparts, base + 1, base + csize - 8) .. pack(tformat, unpack(tparts))
    .. pack('<d', flags)
  if applied then
    local log = KEYS[logs_at + unpack_('<I', owner, 4 * i - 3)]
    redis.call('APPEND', log, ARGV[heads_at + i - 1] .. row)
    if byte(renew, i) == 1 then redis.call('PEXPIRE', log, cttl) end
  end
  out[i] = row
end
if noff > 0 then
  local ko = KEYS[#KEYS]
  for p = 0, noff - 1 do
    local part, off = ARGV[off_at + 2 * p], ARGV[off_at + 2 * p + 1]
    local cur = redis.call('HGET', ko, part)
    if not cur or tonumber(cur) < tonumber(off) then redis.call('HSET', ko, part, off) end
  end
end
return table.concat(out)
