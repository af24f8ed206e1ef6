-- The marks of a serve group (fraudstream.stream.group_order.GroupOrder.sync).
-- KEYS: the group's hash for one input topic; ARGV: the hash's TTL in ms, then (partition,
-- 'ms:caught_up') pairs: this process's marks. Each mark is stored stamped with the
-- server's clock ('ms:caught_up:written'), so that every process judges the marks' age by
-- one clock. Returns that clock (ms) and the whole hash.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. ':' .. now)
end
if #ARGV > 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {now, redis.call('HGETALL', KEYS[1])}
