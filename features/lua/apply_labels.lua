-- Body of the label scripts, after label_args.lua (or label_args_cross_slot.lua),
-- sorted_runs.lua and fraud_seconds.lua: records each label once (the first wins), and
-- returns how many were new.
local new, touch = 0, {}
for i = 1, n do
  local kl, kf, ks, kw = key(4 * i - 3), key(4 * i - 2), key(4 * i - 1), key(4 * i)
  local txid, sec, fraud = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  a = a + 3
  if redis.call('ZADD', kl, 'NX', sec, txid) == 1 then
    new = new + 1
    if fraud == '1' then
      redis.call('ZADD', kf, sec, txid)
      insert_second(ks, sec)
      mark_frauds(kw, ttl)
    end
  end
  touch[kl] = {kf, ks, kw}
end
-- labels are forgotten by the terminal's own trimming (its history's header), so that no
-- label, however far ahead it is dated, can make others forgotten
for kl, k in pairs(touch) do
  local hdr = redis.call('GETRANGE', k[3], '0', '39')
  if #hdr == 40 then
    local _, tt, cc = unpack_('<ddd', hdr, 1)
    local through = max_(tt, cc)
    if through > NEG then
      redis.call('ZREMRANGEBYSCORE', kl, '-inf', through)
      redis.call('ZREMRANGEBYSCORE', k[1], '-inf', through)
      trim_seconds(k[2], through, ttl)
    end
  end
  redis.call('PEXPIRE', kl, ttl)
  redis.call('PEXPIRE', k[1], ttl)
  redis.call('PEXPIRE', k[2], ttl)
end
return new
