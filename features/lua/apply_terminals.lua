-- Redis Cluster, round 1 (fraudstream.features.redis_cluster): the terminal half. After
-- transaction_args.lua, sorted_runs.lua, entity_histories.lua and terminal_half.lua.
-- ARGV as transaction_args.lua (no offsets), then one status byte per transaction
-- (apply_ids.lua), 2 keys per transaction (terminal w, i), then tx ids. Returns the
-- terminal counts, then the fraud ages and the flags, of every transaction, packed little-endian doubles.
local statuses, keys_at, ids_at = ARGV[a], a + 1, a + 1 + 2 * n
local counts = '<' .. string.rep('d', 2 * ntw + 3)
local out = {}
for i = 1, n do
  local sec, _, _, wm = unpack_('<dddd', numbers, 32 * (i - 1) + 1)
  local k, parts = keys_at + 2 * (i - 1), {}
  local applied = string.byte(statuses, i) ~= CONFLICT
  parts[2 * ntw + 3] = terminal_part(ARGV[k], ARGV[k + 1], ARGV[ids_at + i - 1], sec, wm,
    applied, parts)
  out[i] = pack(counts, unpack(parts))
end
return table.concat(out)
