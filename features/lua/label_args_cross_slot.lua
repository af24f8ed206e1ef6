-- First part of the cluster label script: its arguments, keys named in ARGV.
-- ARGV: n, t_ttl_ms, 4 keys per label (terminal l, f, fs, w),
--       then per label: tx id, event second, 1|0 (fraud)
local n, ttl = tonumber(ARGV[1]), ARGV[2]
local a = 3 + 4 * n
local function key(i) return ARGV[2 + i] end
