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
  ARGV[7]     'limit' (decide and consume) | 'peek' (decide for this cost, write nothing; remaining and
              reset describe the state as it is) | 'batch' (see below).
  ARGV[8]     block: ms ≥ 0; once refused, the id stays refused this long (0 = off).
  ARGV[9]     request id ('' = none): a repeated call with the same id within the longest period gets
              the first reply again and consumes nothing more.
  ARGV[10..]  rules 2..n as triples: limit, window (s), burst ('' = limit).
  Reply:      { allowed 0|1, remaining, reset µs, retry-after µs, index of the binding rule (0-based) }, or,
              when admitted by rule 1 with reset = rule 1's period, just the integer remaining.

BATCH CALL (ARGV[7] = 'batch'): m 'limit' checks of other ids (or the same) in order, at one server time,
  each as if called alone. ARGV[6] = m; ARGV[9] = ''; after the rules' triples come the m costs. KEYS: m
  groups of the rich call's keys (rules, then block key). Reply: the m replies, in order.

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
  Refused calls store nothing. Every write of a rule key sets its expiry to the rule's period (P; GCRA:
  C × T), counted from the write, whatever the caller's time says, so an idle key vanishes within it and a
  caller time behind the server's clock never loses state early (block key: within block). A retry after
  exactly the returned retry-after is admitted (same rules, same cost).

ERRORS: 'ERR …' before any write on bad input: limit, window, time, burst, cost, algorithm, mode, block,
  argument count, key count, empty key or key over 65536 bytes.
COMPLEXITY: O(rules × log n) per check; a refused cost-c check reads at most min(c, 128) entries; a refund of
  r units removes at most r entries; a batch costs the sum of its checks (at most 1024).
]]

local MAX_INT = 1099511627776 -- 2^40: keeps every product of counts and µs exact in doubles
local MAX_US = 4503599627370496 -- 2^52
-- Written for speed: at 100k calls/s every closure, table, tonumber and string.format shows, so the
-- common path (one rule, cost 1, no block, no request id) creates as few of them as it can.
local call, tonumber, floor, ceil, max, format = redis.call, tonumber, math.floor, math.ceil, math.max, string.format
local E = 'ERR rate_limiter: '

local function integer(v, min, lim)
  local n = tonumber(v)
  if n == nil or n ~= floor(n) or n < min or n > lim then return nil end
  return n
end

-- Arguments (all validated before the first write) ---------------------------------------------------------

local rich = ARGV[5] ~= nil and ARGV[5] ~= ''
local alg, cost, peek, batch, block_ms, request_id = 'sliding-window', 1, false, nil, 0, ''
if rich then
  alg = ARGV[5]
  if alg ~= 'sliding-window' and alg ~= 'gcra' and alg ~= 'fixed-window' then return redis.error_reply(E .. 'unknown algorithm') end
  if ARGV[6] ~= '1' then
    cost = integer(ARGV[6], -MAX_INT, MAX_INT)
    if cost == nil then return redis.error_reply(E .. 'cost must be an integer') end
  end
  if ARGV[7] == 'peek' then
    peek = true
  elseif ARGV[7] == 'batch' then
    batch, cost = cost, 1
    if batch < 1 or batch > 1024 then return redis.error_reply(E .. 'a batch holds 1 to 1024 checks') end
  elseif ARGV[7] ~= 'limit' then
    return redis.error_reply(E .. 'mode must be limit, peek or batch')
  end
  if ARGV[8] ~= '0' then
    block_ms = tonumber(ARGV[8])
    if block_ms == nil or not (block_ms >= 0 and block_ms <= MAX_US / 1000) then return redis.error_reply(E .. 'block must be ms ≥ 0') end
  end
  request_id = ARGV[9] or ''
  if batch and request_id ~= '' then return redis.error_reply(E .. 'a batch takes no request id') end
elseif #ARGV < 3 or #ARGV > 5 then
  return redis.error_reply(E .. 'expected limit, window, current_time [, burst]')
end

local block_key = block_ms > 0
local nkeys = #KEYS
local group = batch and nkeys / batch or nkeys
local nrules = group - (block_key and 1 or 0) - (request_id ~= '' and 1 or 0)
if nrules < 1 or nrules ~= floor(nrules) or (not rich and nkeys ~= 1) then return redis.error_reply(E .. 'wrong number of keys') end
if rich and #ARGV ~= 9 + 3 * (nrules - 1) + (batch or 0) then return redis.error_reply(E .. 'wrong number of arguments for the rules') end
for i = 1, nkeys do
  local n = #KEYS[i]
  if n == 0 or n > 65536 then return redis.error_reply(E .. 'keys must be 1 to 65536 bytes') end
end

local now
if ARGV[3] == nil or ARGV[3] == '' then
  local t = call('TIME')
  now = t[1] * 1000000 + t[2]
else
  local s = tonumber(ARGV[3])
  if s == nil or not (s >= 0 and s * 1000000 <= MAX_US) then return redis.error_reply(E .. 'current_time must be seconds ≥ 0') end
  now = floor(s * 1000000 + 0.5)
end

-- One record per rule (one table each, since tables cost at this rate): capacity, period (µs), GCRA
-- emission interval (µs), then what inspecting it finds: ok, remaining (after the call if admitted, else
-- now), reset and retry times (absolute µs), and what the commit needs (a: time, new TAT or window index;
-- b: next sequence number or new count).
local CAP, PER, EMIT, OK, REM, RESET, RETRY, A, B = 1, 2, 3, 4, 5, 6, 7, 8, 9
local rules = {}
for i = 1, nrules do
  local a = i == 1 and 1 or 10 + 3 * (i - 2)
  local limit = integer(ARGV[a], 1, MAX_INT)
  if limit == nil then return redis.error_reply(E .. 'limit must be an integer from 1 to 2^40') end
  local w = tonumber(ARGV[a + 1])
  if w == nil or not (w > 0 and w < MAX_US) then return redis.error_reply(E .. 'window must be seconds > 0') end
  local window = floor(w * 1000000 + 0.5)
  local burst_arg = ARGV[a + 2]
  if i == 1 then burst_arg = ARGV[4] end
  local c = limit
  if burst_arg ~= nil and burst_arg ~= '' and burst_arg ~= ARGV[a] then
    c = integer(burst_arg, limit, MAX_INT)
    if c == nil then return redis.error_reply(E .. 'burst must be an integer from limit to 2^40') end
  end
  if window < 1 or window * c > MAX_US then return redis.error_reply(E .. 'window out of range') end
  if cost > c or -cost > c then return redis.error_reply(E .. 'cost exceeds capacity') end
  rules[i] = { c, ceil(window * c / limit), ceil(window / limit), false, 0, 0, 0, 0, 0 }
end

local costs
if batch then
  costs = {}
  local base = 9 + 3 * (nrules - 1)
  for j = 1, batch do
    local c = integer(ARGV[base + j], -MAX_INT, MAX_INT)
    if c == nil then return redis.error_reply(E .. 'cost must be an integer') end
    for i = 1, nrules do
      if c > rules[i][CAP] or -c > rules[i][CAP] then return redis.error_reply(E .. 'cost exceeds capacity') end
    end
    costs[j] = c
  end
end

-- Sliding-window members: the first unit's sequence number, prefixed by its digit count so members order
-- like numbers ('a7' < 'b10'), then ':cost' when cost > 1.
local function dec(m)
  local colon = string.find(m, ':', 3, true)
  if colon then return tonumber(string.sub(m, 2, colon - 1)), tonumber(string.sub(m, colon + 1)) end
  return tonumber(string.sub(m, 2)), 1
end

-- In a batch, the sliding-window reads of a key ({newest, oldest}) until a check writes to it: a hot id
-- refused again and again costs no further reads.
local reads = batch and {} or nil

-- One check of the keys from KEYS[ko + 1] on, at cost `cost` ---------------------------------------------

local function check(ko, cost)
  -- Replay of a request id -----------------------------------------------------------------------------

  local request_key = request_id ~= '' and KEYS[nkeys] or nil
  if request_key and not peek then
    local seen = call('GET', request_key)
    if seen then
      local out = {}
      for v in string.gmatch(seen, '%-?%d+') do out[#out + 1] = tonumber(v) end
      return out
    end
  end

  -- Inspect every rule: reads only, plus dropping expired entries -------------------------------------------

  local allowed = true
  for i = 1, nrules do
    local r = rules[i]
    local key, c, p = KEYS[ko + i], r[CAP], r[PER]
    local ok, rem, reset, retry, a, b
    if alg == 'sliding-window' then
      local t, used, last, oldest = now, 0, nil, nil
      b = 0
      local memo = reads and reads[key]
      local newest = memo and memo[1] or call('ZRANGE', key, '-1', '-1', 'WITHSCORES')
      if memo then oldest = memo[2] end
      if newest[1] then
        -- Time never runs backwards for a key: an earlier caller time is raised to the newest entry's.
        local s = tonumber(newest[2])
        if s > t then t = s end
        local cutoff = t - p
        if s > cutoff then
          local ns, nc = dec(newest[1])
          b, last = ns + nc, s
          oldest = oldest or call('ZRANGE', key, '0', '0', 'WITHSCORES')
          if tonumber(oldest[2]) <= cutoff then
            if peek then
              oldest = call('ZRANGEBYSCORE', key, '(' .. format('%d', cutoff), '+inf', 'WITHSCORES', 'LIMIT', '0', '1')
            else
              call('ZREMRANGEBYSCORE', key, '-inf', format('%d', cutoff))
              oldest = call('ZRANGE', key, '0', '0', 'WITHSCORES')
            end
          end
          used = b - dec(oldest[1])
        elseif not peek then
          call('DEL', key)
          newest = {}
        end
      end
      if reads then reads[key] = { newest, oldest } end
      a = t
      if cost <= 0 or used + cost <= c then
        ok = true
        local consumed = cost > 0 and not peek
        rem = max(c - used - (consumed and cost or 0), 0)
        reset = consumed and t + p or (last and last + p or now)
      else
        ok, rem, reset = false, max(c - used, 0), last + p
        -- The deficit is paid once the oldest entries holding that many units have left the window.
        local deficit = used + cost - c
        local os, oc = dec(oldest[1])
        if oc >= deficit then
          retry = tonumber(oldest[2]) + p
        else
          retry = last + p
          local scan = call('ZRANGEBYSCORE', key, '(' .. format('%d', t - p), '+inf', 'WITHSCORES', 'LIMIT', '0', math.min(deficit, 128))
          for j = 1, #scan, 2 do
            local es, ec = dec(scan[j])
            if es + ec - os >= deficit then
              retry = tonumber(scan[j + 1]) + p
              break
            end
          end
        end
      end
    elseif alg == 'gcra' then
      local tv = r[EMIT]
      local tau = c * tv
      local base = max(tonumber(call('GET', key) or '0') or 0, now)
      a = cost > 0 and base + cost * tv or max(base + cost * tv, now)
      if a - now <= tau then
        ok = true
        local shown = peek and base or a
        rem, reset = floor((now + tau - shown) / tv), shown
      else
        ok, rem, reset, retry = false, floor((now + tau - base) / tv), base, a - tau
      end
    else
      local count = 0
      a = floor(now / p)
      local v = call('GET', key)
      if v then
        local sidx, scount = string.match(v, '^(%d+):(%d+)$')
        sidx = tonumber(sidx)
        if sidx and sidx >= a then a, count = sidx, tonumber(scount) end
      end
      b = max(count + cost, 0)
      reset = (a + 1) * p
      if cost <= 0 or b <= c then
        ok, rem = true, max(c - (peek and count or b), 0)
      else
        ok, rem, retry = false, max(c - count, 0), reset
      end
    end
    r[OK], r[REM], r[RESET], r[RETRY], r[A], r[B] = ok, rem, reset, retry, a, b
    if not ok then allowed = false end
  end

  local blocked_until = nil
  if block_key then
    blocked_until = tonumber(call('GET', KEYS[ko + nrules + 1]) or '')
    if blocked_until and blocked_until <= now then blocked_until = nil end
    if blocked_until then allowed = false end
  end

  -- Commit: all rules or none -----------------------------------------------------------------------------

  if allowed and cost ~= 0 and not peek then
    for i = 1, nrules do
      local r = rules[i]
      local key, p = KEYS[ko + i], r[PER]
      if alg == 'sliding-window' then
        local t = r[A]
        if cost > 0 then
          local d = format('%d', r[B])
          local member = string.char(96 + #d) .. d
          if cost > 1 then member = member .. ':' .. cost end
          call('ZADD', key, format('%d', t), member)
          if reads then reads[key] = nil end
          call('PEXPIRE', key, ceil((t + p - now) / 1000))
        else
          -- A refund gives back the newest units first.
          if reads then reads[key] = nil end
          local left = -cost
          while left > 0 do
            local newest = call('ZRANGE', key, '-1', '-1', 'WITHSCORES')
            if not newest[1] then break end
            local s, c = dec(newest[1])
            call('ZREM', key, newest[1])
            if c > left then
              local d = format('%d', s)
              call('ZADD', key, newest[2], string.char(96 + #d) .. d .. (c - left > 1 and ':' .. (c - left) or ''))
            end
            left = left - c
          end
          local n = call('ZRANGE', key, '-1', '-1', 'WITHSCORES')
          local used = 0
          if n[1] then
            local s, c = dec(n[1])
            used = s + c - dec(call('ZRANGE', key, '0', '0')[1])
          end
          r[RESET] = n[2] and tonumber(n[2]) + p or now
          r[REM] = max(r[CAP] - used, 0)
        end
      elseif alg == 'gcra' then
        local tat = r[A]
        if tat > now then
          -- Kept for the whole tolerance, not just until the TAT: a caller time (ARGV[3]) that runs behind the
          -- server's clock must not see its state expire early; a TAT in the past reads like no key.
          call('SET', key, format('%d', tat), 'PX', max(ceil(r[CAP] * r[EMIT] / 1000), 1))
        else
          call('DEL', key)
        end
      else
        -- Kept a whole period, not just to the window's end, for the same reason: a count of an earlier
        -- window reads like no key.
        call('SET', key, format('%d:%d', r[A], r[B]), 'PX', max(ceil(p / 1000), 1))
      end
    end
  end

  -- Reply: the binding rule is the one with the least left, or, when refused, the one that frees up last --

  local bind, retry = 1, 0
  if allowed then
    for i = 2, nrules do
      if rules[i][REM] < rules[bind][REM] then bind = i end
    end
  else
    local latest = -1
    for i = 1, nrules do
      local r = rules[i]
      if not r[OK] and r[RETRY] > latest then bind, latest = i, r[RETRY] end
    end
    if latest >= 0 then retry = latest - now end
    if blocked_until then
      retry = max(retry, blocked_until - now)
    elseif block_key and not peek then
      call('SET', KEYS[ko + nrules + 1], format('%d', now + block_ms * 1000), 'PX', max(ceil(block_ms), 1))
      retry = max(retry, block_ms * 1000)
    end
    if latest < 0 then
      for i = 2, nrules do
        if rules[i][REM] < rules[bind][REM] then bind = i end
      end
    end
  end

  if not rich then
    if allowed then return rules[1][REM] + 1 end
    return 0
  end

  local r = rules[bind]
  local reset = max(r[RESET] - now, 0)
  if request_key and not peek then
    local longest = block_ms * 1000
    for i = 1, nrules do longest = max(longest, rules[i][PER]) end
    call('SET', request_key, format('%d %d %d %d %d', allowed and 1 or 0, r[REM], reset, max(retry, 0), bind - 1), 'PX', max(ceil(longest / 1000), 1))
  end
  -- The common answer (admitted by rule 1, full period to reset) as one integer: no table to build or parse.
  if allowed and bind == 1 and reset == r[PER] then return r[REM] end
  return { allowed and 1 or 0, r[REM], reset, max(retry, 0), bind - 1 }
end

if batch then
  local out = {}
  for j = 1, batch do out[j] = check((j - 1) * group, costs[j]) end
  return out
end
return check(0, cost)
