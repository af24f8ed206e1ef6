-- Customer state held locally, on a Redis Cluster (fraudstream.features.local_store),
-- after the claims' and the terminals' rounds: the customers' log entries, on the node
-- holding those logs, only when every log still has the length the caller saw (else
-- nothing is written). Keys are named in ARGV (allow-cross-slot-keys).
-- ARGV: the number of logs m, then per log its key and expected length, the logs' TTL in
--       ms, then per entry: its log's number (1-based), 1 to renew the log's TTL (else
--       0), the entry.
-- Returns the numbers of the logs whose length differed (none: every entry appended).
local m = tonumber(ARGV[1])
local bad = {}
for c = 1, m do
  if redis.call('STRLEN', ARGV[2 * c]) ~= tonumber(ARGV[2 * c + 1]) then bad[#bad + 1] = c end
end
if #bad > 0 then return bad end
local ttl = ARGV[2 * m + 2]
for e = 2 * m + 3, #ARGV, 3 do
  local key = ARGV[2 * tonumber(ARGV[e])]
  redis.call('APPEND', key, ARGV[e + 2])
  if ARGV[e + 1] == '1' then redis.call('PEXPIRE', key, ttl) end
end
return bad
