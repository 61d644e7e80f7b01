-- distributed_lock.lua: a lease lock with fencing tokens, extension, release by owner, force unlock, status.
--
-- KEYS[1]  the lock, a hash: o = the holder ('' or absent when free), e = lease end (server ms since the
--          epoch; 0 = released by owner), f = last fencing token, x = the key's expiry (server ms since the
--          epoch), negated once someone waited (then every end of a lease is published; one field for
--          both spares every call a field to read). One key = one slot, whatever KEYS[1] looks like.
--          The key always outlives a lease by KEEP_MS (25 s) or more, and is gone IDLE_MS (60 s) after the
--          lease ends at the latest (also after an early release or force unlock): a resource nobody holds
--          costs nothing after that (the fencing rule below does not need the key to survive). The expiry
--          is moved only when a lease end passes |x| - KEEP_MS or an early end leaves |x| more than IDLE_MS
--          away, so a busy lock rewrites it about once a minute, not per call.
-- ARGV[1]  owner: a caller-chosen unique value ('' for status and force)
-- ARGV[2]  ttl in ms: integer 1 … 2^40 for acquire, wait and extend; an integer ≥ 0 (ignored) otherwise
-- ARGV[3]  mode: absent, '' or 'acquire' = acquire; 'wait'; 'extend'; 'release'; 'status'; 'fence'; or the
--          compact codes 'a', 'w', 'e', 'r' (acquire, wait, extend, release with the compact reply)
-- ARGV[4]  'force' when ARGV[3] is '' (the seed's force unlock); for 'fence': the token floor (integer ≥ 0)
--
-- Calls. The public contract: the seed's three calls are frozen (they work exactly as the seed wrote
-- them); release, status and wait are documented for raw users and kept as stable as the seed's.
--   acquire  EVALSHA sha 1 <key> <owner> <ttl_ms>                 (seed)
--   extend   EVALSHA sha 1 <key> <owner> <ttl_ms> extend          (seed)
--   force    EVALSHA sha 1 <key> '' 0 '' force                    (seed)
--   release  EVALSHA sha 1 <key> <owner> 0 release
--   status   EVALSHA sha 1 <key> '' 0 status
--   wait     EVALSHA sha 1 <key> <owner> <ttl_ms> wait     (acquire; on refusal, ask for a release message)
-- Internal (what the TypeScript client sends, through src/protocol.ts; may change with any release):
--   compact  EVALSHA sha 1 <key> <owner> <ttl_ms> a|w|e|r   (acquire, wait, extend, release; compact reply)
--   fence    EVALSHA sha 1 <key> <owner> 0 fence <floor>   (Redlock: raise a held lock's token to ≥ floor)
--   batch    see "Batch form" below
--
-- Reply, every public call: { ok, owner, ttl_ms, token }
--   ok      1 on success, 0 on refusal (status: 1 = locked, 0 = free)
--   owner   the holder after the call ('' when free); on refusal, who holds it; release/force: who held it
--   ttl_ms  remaining lease in ms after the call (0 when free; release/force: 0)
--   token   the holder's fencing token; when free, the last token issued (0 if never locked or forgotten)
-- Compact reply (internal; codes a, w, e, r): on success the token alone, an integer (owner and ttl are the
-- caller's own, release: ttl 0); on refusal the four values above. Less for the server to build and for
-- the client to decode.
--
-- Semantics:
--   acquire  free or expired → new token = max(last token + 1, server TIME in µs), lease = ttl. Tokens are
--            therefore strictly increasing per key also when the key was lost (eviction, DEL, restart without
--            persistence, failover to a replica that lacks it), as long as the server clock is not behind
--            the clock that issued the last token: a clock stepped back by d µs, or a replica whose clock is
--            d µs slower, can repeat the tokens of the last d µs once the key is gone. Held by the same
--            owner → success with the same token and the lease reset to ttl (a resent acquire is harmless).
--            Held by another → refusal.
--   wait     acquire; a refusal also marks the key as waited on (x < 0), so from then on the end of every
--            lease is published. Subscribe to channel KEYS[1] before calling it, and no release after the
--            call goes unnoticed.
--   extend   only a live lease of the same owner; never re-creates an expired or released lock.
--   release  only by the owner; 1 also when the owner already released it (idempotent while the key is
--            kept), 0 when the lease expired or someone else holds it. Publishes the token on channel KEYS[1]
--            when a live lease ends and someone waited (an uncontended lock costs no PUBLISH).
--   force    ends any live lease (1) or does nothing (0); publishes like release.
--   fence    holder only: token becomes max(token, floor); the lease is unchanged.
--
-- Batch form (internal; on a cluster, keys of one slot only): n = 2 … 256 keys, and
-- ARGV holds one (owner, ttl_ms, mode) triple per key, mode one of acquire, wait, extend, release, status,
-- force or a compact code. The ops run in order; the reply is an array of n replies, each in the shape its
-- mode asks for. Lets a client send many concurrent operations in one call: each still takes one round
-- trip, the server runs one script instead of n.
--
-- Errors: 'ERR distributed_lock: <what>' on bad input (any triple of a batch) or on a key that holds a
-- hash that is not a lock, before any write; WRONGTYPE if a key is not a hash.
-- Time: TIME of the server, once per call. Complexity: O(1) per key: one HMGET, at most one HSET (plus a
-- PEXPIREAT when the expiry moves, and a PUBLISH when someone waited).
-- Keys: only the keys in KEYS (KEYS[1], or KEYS[1..n] in a batch); the PUBLISH goes to channel KEYS[1],
-- a channel, not a key. Nothing is derived in-script, so every server that enforces declared keys runs it.
-- Speed (this path runs once per lock operation; measured on Redis 7.0): a hash, since writing only the
-- fields that change costs less than parsing and rebuilding one string; the expiry moves about once a
-- minute (see KEYS[1]), not per call (setting an expiry cost 0.3 µs more than a write that keeps it);
-- few closures, no upvalues but one, no state tables (HMGET's reply table is the state): Redis steps Lua's
-- garbage collector as scripts run, so each allocation is paid on every call; no vararg functions (each
-- call copies its arguments); each HMGET field costs a Redis reply element, a Lua string and table
-- growth, hence four fields; the compact reply spares a table; integers are written with %d,
-- since redis.call formats a Lua number with %.17g, glibc's slow floating-point path; nothing is
-- published unless someone waited.

-- Fast path: one key in compact acquire (a) or release (r), what LockManager sends one operation at a time.
-- It runs before the general path's local functions are defined, so such a call builds no closures and
-- makes no Lua function calls (the chunk body runs on every call: each closure is an allocation, each
-- call a frame). Same semantics, writes and replies as `run` below; anything else (bad input, a hash that
-- is not a lock, other modes, the batch form) falls through to the general path, which checks it and
-- answers it before any write.
if #KEYS == 1 and (ARGV[3] == 'a' or ARGV[3] == 'r') then
  local key, owner, acquire = KEYS[1], ARGV[1], ARGV[3] == 'a'
  local ttl
  if acquire then
    ttl = tonumber(ARGV[2])
    if ttl and (ttl < 1 or ttl > 1099511627776 or ttl % 1 ~= 0) then ttl = nil end
  elseif ARGV[2] == '0' then
    ttl = 0
  end
  local s = (ttl and owner ~= '' and owner) and redis.call('HMGET', key, 'o', 'e', 'f', 'x')
  local o, e, f, x = '', 0, 0, 0
  if s then
    o, e, f, x = s[1] or '', s[2], s[3], s[4]
    if e then e = tonumber(e) else e = 0 end
    if f then f = tonumber(f) else f = 0 end
    if x then x = tonumber(x) else x = 0 end
  end
  if s and e and f and x then
    local t = redis.call('TIME')
    local now_us = t[1] * 1000000 + t[2]
    local now = (now_us - now_us % 1000) / 1000
    local held = o ~= '' and e > now
    local waited = x < 0
    if waited then x = -x end
    -- `to`: the key's new expiry when the rule of KEYS[1] moves it (KEEP_MS 25 s, IDLE_MS 60 s), else nil
    local to
    if acquire then
      if held and o ~= owner then return { 0, o, e - now, f } end
      e = now + ttl
      if e + 25000 > x then
        to = e + 25000
        if now + 60000 > to then to = now + 60000 end
      end
      local es = string.format('%d', e)
      local at, xs
      if to then
        at = string.format('%d', to)
        xs = at
        if waited then xs = '-' .. at end
      end
      if held then
        if to then redis.call('HSET', key, 'x', xs, 'e', es) else redis.call('HSET', key, 'e', es) end
      else
        f = f + 1
        if now_us > f then f = now_us end
        local fs = string.format('%d', f)
        if to then redis.call('HSET', key, 'x', xs, 'o', owner, 'e', es, 'f', fs)
        else redis.call('HSET', key, 'o', owner, 'e', es, 'f', fs) end
      end
      if to then redis.call('PEXPIREAT', key, at) end
      return f
    end
    -- release: granted again when this owner already released it
    if o == owner and e == 0 then return f end
    if not held then return { 0, '', 0, f } end
    if o ~= owner then return { 0, o, e - now, f } end
    if x > now + 60000 then
      local at = string.format('%d', now + 60000)
      local xs = at
      if waited then xs = '-' .. at end
      redis.call('HSET', key, 'x', xs, 'e', '0')
      redis.call('PEXPIREAT', key, at)
    else
      redis.call('HSET', key, 'e', '0')
    end
    if waited then redis.call('PUBLISH', key, string.format('%d', f)) end
    return f
  end
end

-- No constants or shortcuts (redis.call, string.format) as top-level locals: a local captured by a function
-- costs an allocation on every call (Lua 5.1 upvalues), more than the global lookups it would save.

-- Checks one operation before anything is written. Returns nil, the mode's full name, whether the reply
-- is compact, the ttl and the floor; or an error reply.
local function check(owner, ttl_arg, mode, extra)
  local compact = true
  if mode == 'a' then mode = 'acquire'
  elseif mode == 'r' then mode = 'release'
  elseif mode == 'e' then mode = 'extend'
  elseif mode == 'w' then mode = 'wait'
  else compact = false end
  local lease = mode == 'acquire' or mode == 'wait' or mode == 'extend'
  if not lease and mode ~= 'release' and mode ~= 'status' and mode ~= 'force' and mode ~= 'fence' then
    return redis.error_reply('ERR distributed_lock: unknown mode (expected acquire, wait, extend, release, status, fence, force, a, w, e or r)')
  end
  -- A release's ttl is '0': no tonumber (a strtod) for it; % 1 rather than math.floor (a C call).
  local ttl
  if ttl_arg == '0' then ttl = 0 else ttl = tonumber(ttl_arg) end
  if owner == nil or ttl == nil or ttl < 0 or ttl % 1 ~= 0 then
    return redis.error_reply('ERR distributed_lock: ttl must be an integer number of ms')
  end
  if lease and (ttl < 1 or ttl > 1099511627776) then
    return redis.error_reply('ERR distributed_lock: ttl must be 1 … 2^40 ms')
  end
  if owner == '' and mode ~= 'status' and mode ~= 'force' then
    return redis.error_reply('ERR distributed_lock: owner must be a non-empty string')
  end
  local floor = 0
  if mode == 'fence' then
    floor = tonumber(extra)
    if floor == nil or floor < 0 or floor ~= math.floor(floor) or floor > 9007199254740991 then
      return redis.error_reply('ERR distributed_lock: fence floor must be an integer ≥ 0')
    end
  end
  return nil, mode, compact, ttl, floor
end

-- Reads one lock into the table HMGET returns, made the state { o, e, f, x } in place: o the holder ('' when
-- free), e the lease end, f the last token, x the key's expiry, negative once someone waited. The
-- reply table is reused as the state, so reading a lock allocates nothing more. Returns the state, or nil
-- and an error reply for a hash that is not a lock.
local function read(key)
  local s = redis.call('HMGET', key, 'o', 'e', 'f', 'x')
  local e, f, x = s[2], s[3], s[4]
  if e then e = tonumber(e) else e = 0 end
  if f then f = tonumber(f) else f = 0 end
  if x then x = tonumber(x) else x = 0 end
  if not (e and f and x) then
    return nil, redis.error_reply('ERR distributed_lock: key ' .. key .. ' does not hold a lock')
  end
  s[1], s[2], s[3], s[4] = s[1] or '', e, f, x
  return s
end

-- Writes up to three field/value pairs (b, c: nil for fewer) of the lock `key` with state s. The lease end
-- becomes e: `ended` is nil when it did not change, false when it became a lease end (the key must outlive
-- it by KEEP_MS), true when the lease just ended early (the key must be gone within IDLE_MS); the expiry
-- moves (field x and PEXPIREAT) only when that rule asks for it. Fixed parameters, not varargs: a vararg
-- call costs Lua 5.1 a copy of the arguments.
local function put(key, s, e, now, ended, a, av, b, bv, c, cv)
  local keep, idle = 25000, 60000 -- KEEP_MS and IDLE_MS (see KEYS[1])
  local x = s[4]
  local waited = x < 0
  if waited then x = -x end
  local to
  if ended == false and e + keep > x then
    to = math.max(e + keep, now + idle)
  elseif ended and x > now + idle then
    to = now + idle
  end
  if not to then
    if c then redis.call('HSET', key, a, av, b, bv, c, cv)
    elseif b then redis.call('HSET', key, a, av, b, bv)
    else redis.call('HSET', key, a, av) end
    return
  end
  local at = string.format('%d', to)
  local xs = at
  if waited then s[4], xs = -to, '-' .. at else s[4] = to end
  if c then redis.call('HSET', key, 'x', xs, a, av, b, bv, c, cv)
  elseif b then redis.call('HSET', key, 'x', xs, a, av, b, bv)
  elseif a then redis.call('HSET', key, 'x', xs, a, av)
  else redis.call('HSET', key, 'x', xs) end
  redis.call('PEXPIREAT', key, at)
end

-- Runs one checked operation (see `check`) on the lock state s (from `read`; updated in place, so later
-- operations of a batch on the same key see it). Returns the reply: the four values as a table, or the
-- token alone when the reply is compact and the operation succeeded. One section per operation, in one
-- function rather than one function each: the script body runs on every call, and each local function is
-- a closure Redis's Lua builds anew every time.
local function run(key, s, owner, ttl, mode, compact, floor, now, now_us)
  local o, e, f = s[1], s[2], s[3]
  local held = o ~= '' and e > now

  -- acquire, wait: a refusal of wait also marks the key as waited on (x < 0), so the end of the lease will
  -- be published.
  if mode == 'acquire' or mode == 'wait' then
    if held and o ~= owner then
      if mode == 'wait' and s[4] >= 0 then
        if s[4] > 0 then
          s[4] = -s[4]
          redis.call('HSET', key, 'x', string.format('%d', s[4]))
        else
          -- a lease with no x (a hash written by an earlier layout): mark it and give it an expiry
          s[4] = -1
          put(key, s, e, now, false)
        end
      end
      return { 0, o, e - now, f }
    end
    e = now + ttl
    s[2] = e
    if held then
      put(key, s, e, now, false, 'e', string.format('%d', e))
    else
      f = f + 1
      if now_us > f then f = now_us end
      s[1], s[3] = owner, f
      put(key, s, e, now, false, 'o', owner, 'e', string.format('%d', e), 'f', string.format('%d', f))
    end
    if compact then return f end
    return { 1, owner, ttl, f }
  end

  if mode == 'status' then
    if held then return { 1, o, e - now, f } end
    return { 0, '', 0, f }
  end

  -- force and release end a live lease early (the key is kept, see `put`) and publish if someone waited.
  if mode == 'force' then
    if not held then return { 0, '', 0, f } end
    s[1], s[2] = '', 0
    put(key, s, 0, now, true, 'o', '', 'e', '0')
    if s[4] < 0 then redis.call('PUBLISH', key, string.format('%d', f)) end
    return { 1, o, 0, f }
  end

  -- release, extend and fence act for the holder only; a release this owner already made is granted again.
  local done = mode == 'release' and o == owner and e == 0
  if not done then
    if not held then return { 0, '', 0, f } end
    if o ~= owner then return { 0, o, e - now, f } end
  end

  if mode == 'release' then
    if not done then
      s[2] = 0
      put(key, s, 0, now, true, 'e', '0')
      if s[4] < 0 then redis.call('PUBLISH', key, string.format('%d', f)) end
    end
    if compact then return f end
    return { 1, owner, 0, f }
  end

  if mode == 'extend' then
    e = now + ttl
    s[2] = e
    put(key, s, e, now, false, 'e', string.format('%d', e))
    if compact then return f end
    return { 1, owner, ttl, f }
  end

  -- fence: the token becomes at least `floor`; the lease is unchanged.
  if floor > f then
    f = floor
    s[3] = f
    put(key, s, e, now, nil, 'f', string.format('%d', f))
  end
  return { 1, owner, e - now, f }
end

-- Server time, read once per call after the checks: now in ms, now_us in µs (for new tokens). TIME answers
-- digits, which Lua's arithmetic coerces without tonumber's C call; the ms come by arithmetic, not math.floor.
local t, now, now_us
local n = #KEYS
if n == 1 then
  local mode = ARGV[3] or ''
  if mode == '' then
    if ARGV[4] == 'force' then mode = 'force' elseif ARGV[4] == nil or ARGV[4] == '' then mode = 'acquire' end
  end
  local err, full, compact, ttl, floor = check(ARGV[1], ARGV[2], mode, ARGV[4])
  if err then return err end
  local s, bad = read(KEYS[1])
  if bad then return bad end
  t = redis.call('TIME')
  now_us = t[1] * 1000000 + t[2]
  now = (now_us - now_us % 1000) / 1000
  return run(KEYS[1], s, ARGV[1], ttl, full, compact, floor, now, now_us)
end

if n < 1 or n > 256 then return redis.error_reply('ERR distributed_lock: expected 1 … 256 keys') end
if #ARGV ~= 3 * n then return redis.error_reply('ERR distributed_lock: a batch needs one (owner, ttl, mode) triple per key') end
local modes, compacts, ttls = {}, {}, {}
for i = 1, n do
  local mode = ARGV[3 * i]
  if mode == 'fence' then return redis.error_reply('ERR distributed_lock: fence is not allowed in a batch') end
  local err
  err, modes[i], compacts[i], ttls[i] = check(ARGV[3 * i - 2], ARGV[3 * i - 1], mode, nil)
  if err then return err end
end
-- Every key is read before the first write; a key named twice shares one state, so each op sees what the
-- ops before it wrote.
local states = {}
for i = 1, n do
  local key = KEYS[i]
  if not states[key] then
    local s, bad = read(key)
    if bad then return bad end
    states[key] = s
  end
end
t = redis.call('TIME')
now_us = t[1] * 1000000 + t[2]
now = (now_us - now_us % 1000) / 1000
local replies = {}
for i = 1, n do
  replies[i] = run(KEYS[i], states[KEYS[i]], ARGV[3 * i - 2], ttls[i], modes[i], compacts[i], 0, now, now_us)
end
return replies
