-- The last step of features rebuild (fraudstream.features.rebuild.Ledger.seal).
-- KEYS: the rebuild's token key, the rebuild record; ARGV: the token, then (partition,
-- offset) pairs. Records the pairs only while the token is the one this rebuild set (a
-- server emptied meanwhile lost it with the data), then deletes it. Returns 1, or 0 when
-- nothing was recorded.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('DEL', KEYS[1])
return 1
