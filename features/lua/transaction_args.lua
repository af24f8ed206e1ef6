-- First part of every transaction script (fraudstream.features.redis_scripts assembles
-- them): the arguments shared by all of them, read into locals.
-- ARGV: n, ncw, ntw, delay_s, c_keep_s, t_keep_s, refresh_s, c_ttl_ms, t_ttl_ms, c_cap,
--       t_cap, n_offsets, guard, customer windows..., terminal windows...,
--       (partition, offset)..., numbers (second, amount, ms, watermark second per
--       transaction as little-endian doubles; NaN: no watermark), fingerprints (8 bytes
--       per transaction), ...
local n, ncw, ntw = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local delay, ckeep, tkeep = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local refresh_s, cttl, tttl = tonumber(ARGV[7]), ARGV[8], ARGV[9]
local ccap, tcap = tonumber(ARGV[10]), tonumber(ARGV[11])
local noff, guard = tonumber(ARGV[12]), tonumber(ARGV[13])
-- a rows hash spans a period of refresh_s: it lives that much longer than a history
local rttl = tonumber(cttl) + refresh_s * 1000
local a = 14
local cw, tw = {}, {}
for j = 1, ncw do cw[j] = tonumber(ARGV[a]); a = a + 1 end
for j = 1, ntw do tw[j] = tonumber(ARGV[a]); a = a + 1 end
local off_at = a
a = a + 2 * noff
local numbers, fps = ARGV[a], ARGV[a + 1]
a = a + 2
-- a row: ms, amount, customer windows, amount history (1), terminal windows, fraud ages
-- (2), flags
local row_format = '<' .. string.rep('d', 6 + 2 * ncw + 2 * ntw)
