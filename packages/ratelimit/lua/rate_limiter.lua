--[[
rate_limiter.lua — exact sliding-window (default), GCRA and fixed-window rate limits with burst, one call.

SEED CALL (the contract of lua-scripts-README.md):
  EVALSHA sha 1 <key> <limit> <window> <current_time> [<burst>]
  KEYS[1]  the limited key (a sorted set). It may be any key; it is the only key touched.
  ARGV[1]  limit: integer 1 … 2^40, admissions per window.
  ARGV[2]  window: seconds (fractions allowed, resolution 1 µs), > 0.
  ARGV[3]  current_time: seconds since the epoch (fractions allowed, ≥ 0); '' = the server's TIME.
  ARGV[4]  burst: optional integer, limit ≤ burst ≤ 2^40; '' or absent = limit.
  Reply:   integer. N ≥ 1: admitted, and N was the capacity left for this request (N − 1 remain after it).
           0: limited; nothing was stored.

RICH CALL (the TypeScript API; ARGV[5] present switches it on):
  KEYS[1..n]  one key per rule, then the block key when ARGV[8] > 0, then the request key when ARGV[9] ~= ''.
              All under one hash tag on Redis Cluster.
  ARGV[1..4]  rule 1 as above (ARGV[3] is the time of every rule).
  ARGV[5]     algorithm: 'sliding-window' | 'gcra' | 'fixed-window' (every rule of the call).
  ARGV[6]     cost: integer, |cost| ≤ the smallest capacity; negative refunds, 0 consumes nothing.
  ARGV[7]     'limit' (decide and consume) | 'peek' (decide, write nothing).
  ARGV[8]     block: ms ≥ 0; once refused, the id stays refused this long (0 = off).
  ARGV[9]     request id ('' = none): a repeated call with the same id within the longest period gets
              the first reply again and consumes nothing more.
  ARGV[10..]  rules 2..n as triples: limit, window (s), burst ('' = limit).
  Reply:      { allowed 0|1, remaining, reset µs, retry-after µs, index of the binding rule (0-based) }.

SEMANTICS (capacity C = burst or limit; period P = ceil(window × C / limit), in µs):
  sliding-window  at most C admitted (weighted by cost) in any interval of length P, so at most C in any
                  window-length interval and at most limit per window in the long run. Without burst:
                  at most limit in any window, exactly. One sorted-set member per admitted call: score =
                  time in µs, member = its first unit's sequence number (length-prefixed so order by
                  member equals numeric order) plus ':cost' when cost > 1. Sequence numbers count units,
                  so used = end of newest − start of oldest, in O(log n). A caller time earlier than the
                  newest entry is raised to it, so time never runs backwards for a key.
  gcra            emission interval T = ceil(window / limit) µs, tolerance C × T: C back to back from
                  idle, then one every T. Worst case in a window-length interval: C + limit. O(1): a string.
  fixed-window    at most C per aligned period P (worst case 2 × C across a boundary). O(1): a string.
  Refused calls store nothing. Every write sets an expiry so an idle key vanishes within P (block key:
  within block). A retry after exactly the returned retry-after is admitted (same rules, same cost).

ERRORS: 'ERR …' before any write on bad input: limit, window, time, burst, cost, algorithm, mode, block,
  argument count, key count, empty key or key over 65536 bytes.
COMPLEXITY: O(rules × log n) per call; a refused cost-c call reads at most min(c, 128) entries; a refund of
  r units removes at most r entries.
]]

local MAX_INT = 1099511627776 -- 2^40: keeps every product of counts and µs exact in doubles
local MAX_US = 4503599627370496 -- 2^52

local function fail(message)
  return redis.error_reply('ERR rate_limiter: ' .. message)
end

local function fmt(n)
  return string.format('%d', n)
end

local function finite(v)
  local n = tonumber(v)
  if n == nil or n ~= n or n == math.huge or n == -math.huge then return nil end
  return n
end

local function integer(v, min, max)
  local n = finite(v)
  if n == nil or n ~= math.floor(n) or n < min or n > max then return nil end
  return n
end

-- Arguments ------------------------------------------------------------------------------------------

local rich = ARGV[5] ~= nil and ARGV[5] ~= ''
local alg, cost, peek, block_ms, request_id = 'sliding-window', 1, false, 0, ''
if rich then
  alg = ARGV[5]
  if alg ~= 'sliding-window' and alg ~= 'gcra' and alg ~= 'fixed-window' then return fail('unknown algorithm') end
  cost = integer(ARGV[6], -MAX_INT, MAX_INT)
  if cost == nil then return fail('cost must be an integer') end
  if ARGV[7] == 'peek' then peek = true elseif ARGV[7] ~= 'limit' then return fail('mode must be limit or peek') end
  block_ms = finite(ARGV[8])
  if block_ms == nil or block_ms < 0 or block_ms > MAX_US / 1000 then return fail('block must be ms ≥ 0') end
  request_id = ARGV[9] or ''
elseif #ARGV < 3 or #ARGV > 5 then
  return fail('expected limit, window, current_time [, burst]')
end

local block_key = block_ms > 0
local nrules = #KEYS - (block_key and 1 or 0) - (request_id ~= '' and 1 or 0)
if nrules < 1 or (not rich and #KEYS ~= 1) then return fail('wrong number of keys') end
if rich and #ARGV ~= 9 + 3 * (nrules - 1) then return fail('wrong number of arguments for ' .. nrules .. ' rules') end
for i = 1, #KEYS do
  if #KEYS[i] == 0 or #KEYS[i] > 65536 then return fail('keys must be 1 to 65536 bytes') end
end

local now
if ARGV[3] == nil or ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  local s = finite(ARGV[3])
  if s == nil or s < 0 or s * 1000000 > MAX_US then return fail('current_time must be seconds ≥ 0') end
  now = math.floor(s * 1000000 + 0.5)
end

local cap, per, emit = {}, {}, {}
for i = 1, nrules do
  local a = i == 1 and 1 or 10 + 3 * (i - 2)
  local limit = integer(ARGV[a], 1, MAX_INT)
  if limit == nil then return fail('limit must be an integer from 1 to 2^40') end
  local w = finite(ARGV[a + 1])
  if w == nil or w <= 0 then return fail('window must be seconds > 0') end
  local window = math.floor(w * 1000000 + 0.5)
  local burst_arg = ARGV[a + 2]
  if i == 1 then burst_arg = ARGV[4] end
  local c = limit
  if burst_arg ~= nil and burst_arg ~= '' then
    c = integer(burst_arg, limit, MAX_INT)
    if c == nil then return fail('burst must be an integer from limit to 2^40') end
  end
  if window < 1 or window * c > MAX_US then return fail('window out of range') end
  if cost > c or -cost > c then return fail('cost exceeds capacity') end
  cap[i] = c
  per[i] = math.ceil(window * c / limit)
  emit[i] = math.ceil(window / limit)
end

-- Replay of a request id -----------------------------------------------------------------------------

local request_key = request_id ~= '' and KEYS[#KEYS] or nil
if request_key and not peek then
  local seen = redis.call('GET', request_key)
  if seen then
    local out = {}
    for v in string.gmatch(seen, '%-?%d+') do out[#out + 1] = tonumber(v) end
    return out
  end
end

-- Inspect every rule (reads only, plus dropping expired entries) ---------------------------------------

-- Per rule: ok, remaining after (if admitted) or now, reset time, retry time (absolute µs), and state.
local ok, rem, reset_at, retry_at, st1, st2 = {}, {}, {}, {}, {}, {}

local function enc(start, c)
  local d = fmt(start)
  local m = string.char(96 + #d) .. d
  if c > 1 then m = m .. ':' .. fmt(c) end
  return m
end

local function dec(m)
  local colon = string.find(m, ':', 3, true)
  if colon then return tonumber(string.sub(m, 2, colon - 1)), tonumber(string.sub(m, colon + 1)) end
  return tonumber(string.sub(m, 2)), 1
end

local function sliding(i)
  local key, c, p = KEYS[i], cap[i], per[i]
  local t, used, next_start, last = now, 0, 0, nil
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  local oldest_start = 0
  if newest[1] then
    local s = tonumber(newest[2])
    if s > t then t = s end
    local cutoff = fmt(t - p)
    if not peek then redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff) end
    if s > t - p then
      local ns, nc = dec(newest[1])
      next_start = ns + nc
      oldest_start = dec(redis.call('ZRANGEBYSCORE', key, '(' .. cutoff, '+inf', 'LIMIT', 0, 1)[1])
      used = next_start - oldest_start
      last = s
    end
  end
  st1[i], st2[i] = t, next_start
  if cost <= 0 or used + cost <= c then
    ok[i] = true
    rem[i] = math.max(c - used - math.max(cost, 0), 0)
    reset_at[i] = cost > 0 and t + p or (last and last + p or now)
    return
  end
  ok[i] = false
  rem[i] = math.max(c - used, 0)
  reset_at[i] = last + p
  -- The deficit is paid once the oldest entries holding `deficit` units have left the window.
  local deficit = used + cost - c
  local scan = redis.call('ZRANGEBYSCORE', key, '(' .. fmt(t - p), '+inf', 'WITHSCORES', 'LIMIT', 0, math.min(deficit, 128))
  retry_at[i] = last + p
  for j = 1, #scan, 2 do
    local es, ec = dec(scan[j])
    if es + ec - oldest_start >= deficit then
      retry_at[i] = tonumber(scan[j + 1]) + p
      break
    end
  end
end

local function gcra(i)
  local c, tv = cap[i], emit[i]
  local tau = c * tv
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  local base = math.max(tat, now)
  local new = cost > 0 and base + cost * tv or math.max(base + cost * tv, now)
  st1[i] = new
  if new - now <= tau then
    ok[i] = true
    rem[i] = math.floor((now + tau - new) / tv)
    reset_at[i] = new
  else
    ok[i] = false
    rem[i] = math.floor((now + tau - base) / tv)
    reset_at[i] = base
    retry_at[i] = new - tau
  end
end

local function fixed(i)
  local c, p = cap[i], per[i]
  local idx, count = math.floor(now / p), 0
  local v = redis.call('GET', KEYS[i])
  if v then
    local sidx, scount = string.match(v, '^(%d+):(%d+)$')
    sidx = tonumber(sidx)
    if sidx and sidx >= idx then idx, count = sidx, tonumber(scount) end
  end
  local new = math.max(count + cost, 0)
  st1[i], st2[i] = idx, new
  reset_at[i] = (idx + 1) * p
  if cost <= 0 or new <= c then
    ok[i] = true
    rem[i] = math.max(c - new, 0)
  else
    ok[i] = false
    rem[i] = math.max(c - count, 0)
    retry_at[i] = reset_at[i]
  end
end

local inspect = alg == 'sliding-window' and sliding or alg == 'gcra' and gcra or fixed
local allowed = true
for i = 1, nrules do
  inspect(i)
  if not ok[i] then allowed = false end
end

local blocked_until = nil
if block_key then
  blocked_until = tonumber(redis.call('GET', KEYS[nrules + 1]) or '')
  if blocked_until and blocked_until <= now then blocked_until = nil end
  if blocked_until then allowed = false end
end

-- Commit: all rules or none -----------------------------------------------------------------------------

local function ms(us)
  return math.max(math.ceil(us / 1000), 1)
end

if allowed and cost ~= 0 and not peek then
  for i = 1, nrules do
    local key = KEYS[i]
    if alg == 'sliding-window' then
      local t = st1[i]
      if cost > 0 then
        redis.call('ZADD', key, fmt(t), enc(st2[i], cost))
        redis.call('PEXPIRE', key, ms(t + per[i] - now))
      else
        -- A refund gives back the newest units first.
        local left = -cost
        while left > 0 do
          local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
          if not newest[1] then break end
          local s, c = dec(newest[1])
          redis.call('ZREM', key, newest[1])
          if c > left then redis.call('ZADD', key, newest[2], enc(s, c - left)) end
          left = left - c
        end
        local n = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
        local used = 0
        if n[1] then
          local s, c = dec(n[1])
          used = s + c - dec(redis.call('ZRANGE', key, 0, 0)[1])
        end
        reset_at[i] = n[2] and tonumber(n[2]) + per[i] or now
        rem[i] = math.max(cap[i] - used, 0)
      end
    elseif alg == 'gcra' then
      local new = st1[i]
      if new > now then
        redis.call('SET', key, fmt(new), 'PX', ms(new - now))
      else
        redis.call('DEL', key)
      end
    else
      redis.call('SET', key, fmt(st1[i]) .. ':' .. fmt(st2[i]), 'PX', ms(reset_at[i] - now))
    end
  end
end

-- Reply ---------------------------------------------------------------------------------------------------

local bind, retry = 1, 0
if allowed then
  for i = 2, nrules do
    if rem[i] < rem[bind] then bind = i end
  end
else
  local latest = -1
  for i = 1, nrules do
    if not ok[i] and retry_at[i] > latest then bind, latest = i, retry_at[i] end
  end
  if latest >= 0 then retry = latest - now end
  if blocked_until then
    retry = math.max(retry, blocked_until - now)
  elseif block_key and not peek then
    redis.call('SET', KEYS[nrules + 1], fmt(now + block_ms * 1000), 'PX', math.max(math.ceil(block_ms), 1))
    retry = math.max(retry, block_ms * 1000)
  end
  if latest < 0 then
    for i = 2, nrules do
      if rem[i] < rem[bind] then bind = i end
    end
  end
end

if not rich then
  if allowed then return rem[1] + 1 end
  return 0
end

local reply = { allowed and 1 or 0, rem[bind], math.max(reset_at[bind] - now, 0), math.max(retry, 0), bind - 1 }
if request_key and not peek then
  local longest = 0
  for i = 1, nrules do longest = math.max(longest, per[i]) end
  redis.call('SET', request_key, fmt(reply[1]) .. ' ' .. fmt(reply[2]) .. ' ' .. fmt(reply[3]) .. ' ' .. fmt(reply[4])
    .. ' ' .. fmt(reply[5]), 'PX', ms(math.max(longest, block_ms * 1000)))
end
return reply
