-- Redis Cluster, round 2 (fraudstream.features.redis_cluster): the customer half, given
-- the terminals' counts. After transaction_args.lua, sorted_runs.lua, entity_histories.lua
-- and terminal_half.lua.
-- ARGV as transaction_args.lua (no offsets), then one status byte per transaction, the
-- terminal counts, fraud ages and flags of every transaction (as apply_terminals.lua
-- returns them), 2 keys per transaction (customer r<period>, h), then tx ids. A known
-- transaction keeps its first row, whatever counts came with it.
local statuses, tparts = ARGV[a], ARGV[a + 1]
local keys_at, ids_at = a + 2, a + 2 + 2 * n
local tsize = 8 * (2 * ntw + 3)
local customer_format = '<' .. string.rep('d', 3 + 2 * ncw)
local function with_counts(parts, i, sec, wm, applied, flags)
  local t = sub(tparts, (i - 1) * tsize + 1, i * tsize)
  flags = bit.bor(flags, (unpack_('<d', t, tsize - 7)))
  if not applied then flags = bit.bor(flags, FLAG_CONFLICT) end
  return pack(customer_format, unpack(parts)) .. sub(t, 1, tsize - 8) .. pack('<d', flags)
end
local out = {}
for i = 1, n do
  local k = keys_at + 2 * (i - 1)
  out[i] = customer_row(ARGV[k], ARGV[k + 1], ARGV[ids_at + i - 1], i,
    string.byte(statuses, i), with_counts)
end
return out
