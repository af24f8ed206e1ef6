-- First part of the single-node label script: its arguments, keys declared.
-- KEYS: 4 per label (terminal l, f, fs, w); ARGV: n, t_ttl_ms,
--       then per label: tx id, event second, 1|0 (fraud)
local n, ttl = tonumber(ARGV[1]), ARGV[2]
local a = 3
local function key(i) return KEYS[i] end
