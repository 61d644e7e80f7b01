-- seed_counter.lua: the demo's stand-in with the seed's rate_limiter call shape.
-- KEYS[1] counter key
-- ARGV[1] limit (integer > 0), ARGV[2] window (seconds > 0), ARGV[3] current_time (seconds), ARGV[4] burst (≥ limit)
-- Returns the remaining capacity of a fixed window (0 = limited). Errors: ERR on bad input, before any write.
-- O(1).
local limit, window, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
if not limit or limit <= 0 or not window or window <= 0 or not burst or burst < limit then
  return redis.error_reply('ERR invalid limit, window or burst')
end
local used = redis.call('INCR', KEYS[1])
if used == 1 then redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000)) end
return math.max(burst - used, 0)
