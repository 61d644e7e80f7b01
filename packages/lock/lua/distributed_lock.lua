-- distributed_lock.lua: a lease lock with fencing tokens, extension, release by owner, force unlock, status.
--
-- KEYS[1]  the lock, a hash. It holds the owner, the lease's end and the resource's fencing counter, so the
--          counter survives expiry and force unlock and no second key is needed (one key = one slot, whatever
--          KEYS[1] looks like). The hash itself never expires: about 100 bytes stay per resource ever locked.
--          Fields: o = owner, e = lease end (server ms since epoch; 0 = released by o), f = last fencing token.
-- ARGV[1]  owner: a caller-chosen unique value ('' for status and force)
-- ARGV[2]  ttl in ms: integer 1 … 2^40 for acquire and extend; an integer ≥ 0 (ignored) otherwise
-- ARGV[3]  mode: absent, '' or 'acquire' = acquire; 'extend'; 'release'; 'status'; 'fence'
-- ARGV[4]  'force' when ARGV[3] is '' (the seed's force unlock); for 'fence': the token floor (integer ≥ 0)
--
-- Calls (the seed's shape):
--   acquire  EVALSHA sha 1 <key> <owner> <ttl_ms>
--   extend   EVALSHA sha 1 <key> <owner> <ttl_ms> extend
--   release  EVALSHA sha 1 <key> <owner> 0 release
--   status   EVALSHA sha 1 <key> '' 0 status
--   force    EVALSHA sha 1 <key> '' 0 '' force
--   fence    EVALSHA sha 1 <key> <owner> 0 fence <floor>   (Redlock: raise a held lock's token to ≥ floor)
--
-- Reply, every mode: { ok, owner, ttl_ms, token }
--   ok      1 on success, 0 on refusal (status: 1 = locked, 0 = free)
--   owner   the holder after the call ('' when free); on refusal, who holds it; release/force: who held it
--   ttl_ms  remaining lease in ms after the call (0 when free; release/force: 0)
--   token   the holder's fencing token; when free, the last token issued (0 if never locked)
-- Semantics:
--   acquire  free or expired → new token = last + 1, lease = ttl. Held by the same owner → success with the
--            same token and the lease reset to ttl (a resent acquire is harmless). Held by another → refusal.
--   extend   only a live lease of the same owner; never re-creates an expired or released lock.
--   release  only by the owner; 1 also when the owner already released it (idempotent), 0 when the lease
--            expired or someone else holds it. Publishes on channel KEYS[1] when a live lease ends.
--   force    ends any live lease (1) or does nothing (0); publishes like release.
--   fence    holder only: token and counter become max(token, floor); the lease is unchanged.
-- Errors: ERR on bad input, before any write (WRONGTYPE if KEYS[1] is not a hash). Time: TIME of the server.
-- Complexity: O(1).

local mode = ARGV[3] or ''
if mode == '' then
  if ARGV[4] == 'force' then mode = 'force' elseif ARGV[4] == nil or ARGV[4] == '' then mode = 'acquire' end
end
if mode ~= 'acquire' and mode ~= 'extend' and mode ~= 'release' and mode ~= 'status' and mode ~= 'force' and mode ~= 'fence' then
  return redis.error_reply('ERR unknown mode (expected acquire, extend, release, status, fence or force)')
end
if #KEYS ~= 1 then return redis.error_reply('ERR expected exactly 1 key') end
local owner = ARGV[1]
local ttl = tonumber(ARGV[2])
if owner == nil or ttl == nil or ttl < 0 or ttl ~= math.floor(ttl) then
  return redis.error_reply('ERR ttl must be an integer number of ms')
end
if mode == 'acquire' or mode == 'extend' then
  if ttl < 1 or ttl > 1099511627776 then return redis.error_reply('ERR ttl must be 1 … 2^40 ms') end
end
if (mode == 'acquire' or mode == 'extend' or mode == 'release' or mode == 'fence') and owner == '' then
  return redis.error_reply('ERR owner must be a non-empty string')
end
local floor = 0
if mode == 'fence' then
  floor = tonumber(ARGV[4])
  if floor == nil or floor < 0 or floor ~= math.floor(floor) or floor > 9007199254740991 then
    return redis.error_reply('ERR fence floor must be an integer ≥ 0')
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'o', 'e', 'f')
local holder = h[1] or ''
local ends = tonumber(h[2]) or 0
local token = tonumber(h[3]) or 0
local live = holder ~= '' and ends > now
local left = live and ends - now or 0

if mode == 'status' then
  if live then return { 1, holder, left, token } end
  return { 0, '', 0, token }
end

if mode == 'acquire' then
  if live and holder ~= owner then return { 0, holder, left, token } end
  if not live then token = token + 1 end
  redis.call('HSET', KEYS[1], 'o', owner, 'e', now + ttl, 'f', token)
  return { 1, owner, ttl, token }
end

if mode == 'extend' then
  if not live or holder ~= owner then return { 0, live and holder or '', left, token } end
  redis.call('HSET', KEYS[1], 'e', now + ttl)
  return { 1, owner, ttl, token }
end

if mode == 'fence' then
  if not live or holder ~= owner then return { 0, live and holder or '', left, token } end
  if floor > token then
    token = floor
    redis.call('HSET', KEYS[1], 'f', token)
  end
  return { 1, owner, left, token }
end

if mode == 'release' then
  if live and holder == owner then
    redis.call('HSET', KEYS[1], 'e', 0)
    redis.call('PUBLISH', KEYS[1], token)
    return { 1, owner, 0, token }
  end
  if holder == owner and ends == 0 then return { 1, owner, 0, token } end
  return { 0, live and holder or '', left, token }
end

-- force
if not live then return { 0, '', 0, token } end
redis.call('HDEL', KEYS[1], 'o', 'e')
redis.call('PUBLISH', KEYS[1], token)
return { 1, holder, 0, token }
