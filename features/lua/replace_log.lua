-- Customer state held locally (fraudstream.features.local_store): a customer's log
-- replaced by its snapshot, only while it has the length its holder last saw (otherwise
-- another writer appended to it and nothing changes).
-- KEYS[1]: the customer log; ARGV: the expected length, the snapshot, its TTL in ms.
-- Returns 1 when replaced, 0 when not.
if redis.call('STRLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
