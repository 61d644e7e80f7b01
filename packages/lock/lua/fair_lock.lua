-- fair_lock.lua: a lease lock whose waiters are served strictly in arrival order, with fencing tokens.
--
-- KEYS[1]  the lock, a hash: o = the holder ('' when free), e = lease end (server ms since the epoch; 0 =
--          released), f = last fencing token, x = the key's expiry, h = sequence number of the queue's head,
--          t = the next sequence number to hand out; and per waiting owner two fields: '#' .. seq =
--          '<ticket end ms> <owner>' and '@' .. owner = seq. A ticket ends `ttl` after its waiter's last
--          `wait` call: a waiter that gives up, times out or dies stops renewing it, and it is dropped once
--          it ended, so it holds the ones behind it back for at most its own lease. The key outlives every
--          lease and ticket by 25 s or more and is gone 60 s after the last lease ends (with nobody waiting)
--          at the latest, like distributed_lock.lua's.
-- ARGV[1]  owner: a caller-chosen unique value ('' for status and force)
-- ARGV[2]  ttl in ms: integer 1 … 2^40 for acquire, wait and extend (wait: also the ticket's length); an
--          integer ≥ 0 (ignored) otherwise
-- ARGV[3]  mode: 'acquire' (no queueing), 'wait' (take a place in line, or keep it), 'leave' (give the
--          place up), 'extend', 'release', 'status' or 'force'
--
-- Calls (internal: what the TypeScript client sends through src/protocol.ts; may change with any release):
--   EVALSHA sha 1 <key> <owner> <ttl_ms> acquire|wait|extend
--   EVALSHA sha 1 <key> <owner> 0 release|leave
--   EVALSHA sha 1 <key> '' 0 status|force
--
-- Replies:
--   acquire, wait, extend  granted { 1, owner, ttl_ms, token }; refused { 0, holder ('' when free), wait_ms,
--                          token }, wait_ms = ms until the lease or the head's ticket (when it is not the
--                          caller's) ends: when a retry may succeed without a release message
--   release, force         1 when a live lease ended, 0 otherwise (release: 1 also when this owner already
--                          released it)
--   leave                  1 when the owner had a place in line, 0 otherwise
--   status                 { locked (1/0), holder, ttl_ms, token, waiting (places in line) }
--
-- Semantics:
--   acquire, wait  granted when no live lease holds the lock and nobody is in line before the caller (the
--                  line is empty, or the caller is its head): token = max(last token + 1, server TIME in µs),
--                  strictly increasing per key also when the key was lost; the caller's place is freed. The
--                  holder acquiring again renews its lease (same token). A refused `wait` takes a place at
--                  the end of the line, or renews the caller's place; a refused `acquire` takes none.
--   release, force end the lease; when someone is in line, publish the head's owner on channel KEYS[1], so
--                  exactly that waiter retries.
--   leave          drops the owner's place (a waiter that gave up); when it was the head of the line and the
--                  lock is free, publishes the new head's owner.
--
-- Errors: 'ERR fair_lock: <what>' on bad input or a hash that is not a fair lock, before any write;
-- WRONGTYPE if the key is not a hash.
-- Time: TIME of the server, once per call. Complexity: O(1), plus O(k) for k ended tickets dropped at the
-- head (at most 100 per call; the rest by the next calls).
-- Keys: only KEYS[1]; the PUBLISH goes to channel KEYS[1].

-- Writes the field/value pairs; the key's expiry x moves only when needed: `e` is a lease or ticket end the
-- key must outlive by 25 s, or nil when the lease ended early (then gone within 60 s, unless someone waits).
local function put(key, x, e, now, ...)
  local to
  if e and e + 25000 > x then
    to = math.max(e + 25000, now + 60000)
  elseif not e and (x == 0 or x > now + 60000) then
    to = now + 60000
  end
  if not to then
    redis.call('HSET', key, ...)
    return
  end
  to = string.format('%d', to)
  redis.call('HSET', key, 'x', to, ...)
  redis.call('PEXPIREAT', key, to)
end

local key, owner, mode = KEYS[1], ARGV[1], ARGV[3]
if #KEYS ~= 1 then return redis.error_reply('ERR fair_lock: expected 1 key') end
local lease = mode == 'acquire' or mode == 'wait' or mode == 'extend'
if not lease and mode ~= 'release' and mode ~= 'leave' and mode ~= 'status' and mode ~= 'force' then
  return redis.error_reply('ERR fair_lock: unknown mode (expected acquire, wait, leave, extend, release, status or force)')
end
local ttl = tonumber(ARGV[2])
if ttl == nil or ttl ~= math.floor(ttl) or ttl < 0 or (lease and (ttl < 1 or ttl > 1099511627776)) then
  return redis.error_reply('ERR fair_lock: ttl must be an integer 1 … 2^40 ms')
end
if owner == nil or (owner == '' and mode ~= 'status' and mode ~= 'force') then
  return redis.error_reply('ERR fair_lock: owner must be a non-empty string')
end

local v = redis.call('HMGET', key, 'o', 'e', 'f', 'x', 'h', 't', '@' .. owner)
local o = v[1] or ''
local e, f, x, hd, tl = tonumber(v[2] or 0), tonumber(v[3] or 0), tonumber(v[4] or 0), tonumber(v[5] or 0), tonumber(v[6] or 0)
local mine = v[7] and tonumber(v[7])
if not (e and f and x and hd and tl) or (v[7] and not mine) then
  return redis.error_reply('ERR fair_lock: key ' .. key .. ' does not hold a fair lock')
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)
local held = o ~= '' and e > now

-- The head of the line from sequence number `hd` on: tickets that ended or were given up are skipped
-- (the ended ones dropped), at most 100 per call. Returns the new head's sequence number, owner and ticket
-- end (nil when the line is empty, or when 100 were skipped), and whether the caller's place was dropped.
local function advance(hd, tl, now)
  local start, dropped_mine = hd, false
  while hd < tl and hd < start + 100 do
    local ticket = redis.call('HGET', key, '#' .. hd)
    if ticket then
      local te, to = string.match(ticket, '^(%d+) (.*)$')
      if not te then return nil end
      te = tonumber(te)
      if te > now then return hd, to, te, dropped_mine end
      redis.call('HDEL', key, '#' .. hd)
      if redis.call('HGET', key, '@' .. to) == tostring(hd) then redis.call('HDEL', key, '@' .. to) end
      if to == owner then dropped_mine = true end
    end
    hd = hd + 1
  end
  return hd, nil, nil, dropped_mine
end

local start = hd
local head, head_end, dropped_mine
hd, head, head_end, dropped_mine = advance(hd, tl, now)
if not hd then return redis.error_reply('ERR fair_lock: key ' .. key .. ' does not hold a fair lock') end
if dropped_mine then mine = nil end
if hd ~= start then redis.call('HSET', key, 'h', hd) end

if mode == 'status' then
  if held then return { 1, o, e - now, f, tl - hd } end
  return { 0, '', 0, f, tl - hd }
end

if mode == 'leave' then
  if not mine then return 0 end
  redis.call('HDEL', key, '#' .. mine, '@' .. owner)
  if head == owner and not held then
    local start2 = hd
    hd, head = advance(hd, tl, now)
    if hd and hd ~= start2 then redis.call('HSET', key, 'h', hd) end
    if head then redis.call('PUBLISH', key, head) end
  end
  return 1
end

if mode == 'release' or mode == 'force' then
  if mode == 'release' and o == owner and e == 0 then return 1 end
  if not held or (mode == 'release' and o ~= owner) then return 0 end
  if mode == 'force' then
    put(key, x, head_end, now, 'o', '', 'e', '0')
  else
    put(key, x, head_end, now, 'e', '0')
  end
  if head then redis.call('PUBLISH', key, head) end
  return 1
end

if mode == 'extend' then
  if not held or o ~= owner then return { 0, held and o or '', held and e - now or 0, f } end
  e = now + ttl
  put(key, x, e, now, 'e', string.format('%d', e))
  return { 1, owner, ttl, f }
end

-- acquire, wait
if held and o == owner then
  e = now + ttl
  put(key, x, e, now, 'e', string.format('%d', e))
  return { 1, owner, ttl, f }
end
-- More than 100 ended tickets: whoever is next is not known yet, so nobody jumps the line this call.
local unknown = head == nil and hd < tl
if not held and not unknown and (head == nil or head == owner) then
  local token = f + 1
  if now_us > token then token = now_us end
  e = now + ttl
  if head == owner then
    redis.call('HDEL', key, '#' .. hd, '@' .. owner)
    hd = hd + 1
  elseif mine then
    -- A place further back (the head's ticket ended meanwhile is handled above): give it up.
    redis.call('HDEL', key, '#' .. mine, '@' .. owner)
  end
  put(key, x, e, now, 'o', owner, 'e', string.format('%d', e), 'f', string.format('%d', token), 'h', hd)
  return { 1, owner, ttl, token }
end
if mode == 'wait' then
  local te = now + ttl
  local seq = mine
  if not seq then
    seq = tl
    tl = tl + 1
  end
  put(key, x, te, now, '#' .. seq, string.format('%d', te) .. ' ' .. owner, '@' .. owner, seq, 't', tl)
end
-- When a retry may succeed without a message: the lease ends, or the head's place does (a waiter that
-- died without leaving is skipped then).
local wait_ms = 0
if unknown then
  wait_ms = 1
else
  if held then wait_ms = e - now end
  if head_end and head ~= owner and (wait_ms == 0 or head_end - now < wait_ms) then wait_ms = head_end - now end
end
return { 0, held and o or '', wait_ms, f }
