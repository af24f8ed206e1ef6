-- Redis Cluster, round 0 (fraudstream.features.redis_cluster): the identity claims. After
-- transaction_args.lua, sorted_runs.lua, entity_histories.lua and terminal_half.lua.
-- ARGV as transaction_args.lua (no offsets), then the identity key of each transaction.
-- Returns one byte per transaction: 0 new, 1 the same content again, 2 other content (a
-- conflict).
local out = {}
for i = 1, n do
  out[i] = claim(ARGV[a + i - 1], sub(fps, 8 * i - 7, 8 * i))
end
if n == 0 then return '' end
return string.char(unpack(out))
