-- distributed_lock.lua: a lease lock with fencing tokens, extension, release by owner, force unlock, status.
--
-- KEYS[1]  the lock, a string: '<end> <token> <w> <owner>' where end = lease end (server ms since the epoch;
--          0 = released by owner or free), token = last fencing token, w = 1 once someone waited (then every
--          end of a lease is published), owner = the holder ('' when free). One key = one slot, whatever
--          KEYS[1] looks like. The key expires KEEP_MS (25 s) after its lease ends; a release or force
--          unlock ends the lease early and leaves the key at most 2 × KEEP_MS (50 s). A resource nobody holds
--          costs nothing after that (the fencing rule below does not need the key to survive).
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
--   wait     acquire; a refusal also sets w, so from then on the end of every lease is published. Subscribe
--            to channel KEYS[1] before calling it, and no release after the call goes unnoticed.
--   extend   only a live lease of the same owner; never re-creates an expired or released lock.
--   release  only by the owner; 1 also when the owner already released it (idempotent while the key is
--            kept), 0 when the lease expired or someone else holds it. Publishes the token on channel KEYS[1]
--            when a live lease ends and w is set (an uncontended lock costs no PUBLISH).
--   force    ends any live lease (1) or does nothing (0); publishes like release.
--   fence    holder only: token becomes max(token, floor); the lease is unchanged.
--
-- Batch form (internal; single node only, a cluster refuses keys of several slots): n = 2 … 256 keys, and
-- ARGV holds one (owner, ttl_ms, mode) triple per key, mode one of acquire, wait, extend, release, status,
-- force or a compact code. The ops run in order; the reply is an array of n replies, each in the shape its
-- mode asks for. Lets a client send many concurrent operations in one call: each still takes one round
-- trip, the server runs one script instead of n.
--
-- Errors: 'ERR distributed_lock: <what>' on bad input (any triple of a batch) or on a key that holds a
-- string that is not a lock, before any write; WRONGTYPE if a key is not a string.
-- Time: TIME of the server, once per call. Complexity: O(1) per key: one GET, at most one SET (and a PUBLISH
-- when someone waited).
-- Keys: only the keys in KEYS (KEYS[1], or KEYS[1..n] in a batch); the PUBLISH goes to channel KEYS[1],
-- a channel, not a key. Nothing is derived in-script, so every server that enforces declared keys runs it.
-- Speed (this path runs once per lock operation): the compact reply spares a table; integers are written
-- with %d, since redis.call formats a Lua number with %.17g, glibc's slow floating-point path; a write that
-- only moves the lease end reuses the rest of the value (`tail`); an early end keeps the key's expiry
-- (SET … KEEPTTL) when it comes soon anyway; nothing is published unless someone waited.

local call = redis.call
-- How long a key outlives its lease, in ms: a resent release still finds it, status still shows the last
-- token, and Redlock nodes whose clocks differ by less than this still issue increasing tokens.
local KEEP_MS = 25000

-- Numbers written as integers (see Speed above).
local function int(x)
  return string.format('%d', x)
end

local function invalid(message)
  return redis.error_reply('ERR distributed_lock: ' .. message)
end

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
    return invalid('unknown mode (expected acquire, wait, extend, release, status, fence, force, a, w, e or r)')
  end
  local ttl = tonumber(ttl_arg)
  if owner == nil or ttl == nil or ttl < 0 or ttl ~= math.floor(ttl) then
    return invalid('ttl must be an integer number of ms')
  end
  if lease and (ttl < 1 or ttl > 1099511627776) then
    return invalid('ttl must be 1 … 2^40 ms')
  end
  if owner == '' and mode ~= 'status' and mode ~= 'force' then
    return invalid('owner must be a non-empty string')
  end
  local floor = 0
  if mode == 'fence' then
    floor = tonumber(extra)
    if floor == nil or floor < 0 or floor ~= math.floor(floor) or floor > 9007199254740991 then
      return invalid('fence floor must be an integer ≥ 0')
    end
  end
  return nil, mode, compact, ttl, floor
end

-- Reads one lock as { e = lease end, f = token, w = '0' or '1', o = holder, tail = the value after its
-- lease end, reused while only the lease end changes }; or an error reply for a value that is not a lock.
local function read(key)
  local v = call('GET', key)
  if not v then return nil, { e = 0, f = 0, w = '0', o = '' } end
  local e, f, w, o = string.match(v, '^(%d+) (%d+) ([01]) (.*)$')
  if not e then return invalid('key ' .. key .. ' does not hold a lock') end
  return nil, { e = tonumber(e), f = tonumber(f), w = w, o = o, tail = string.sub(v, #e + 1) }
end

-- Writes one lock as `s` says (callers that change more than the lease end drop s.tail). The expiry:
-- 'keep' leaves it; 'lease' sets it to KEEP_MS after the lease end; 'ended' (the lease just ended early)
-- keeps it when it comes within KEEP_MS of now anyway (SET … KEEPTTL is the cheaper write), else sets it to
-- KEEP_MS from now.
local function write(key, s, now, expiry, old_end)
  local value
  if s.tail then
    value = int(s.e) .. s.tail
  else
    value = int(s.e) .. ' ' .. int(s.f) .. ' ' .. s.w .. ' ' .. s.o
  end
  if expiry == 'keep' or (expiry == 'ended' and old_end <= now + KEEP_MS) then
    call('SET', key, value, 'KEEPTTL')
  elseif expiry == 'ended' then
    call('SET', key, value, 'PXAT', int(now + KEEP_MS))
  else
    call('SET', key, value, 'PXAT', int(s.e + KEEP_MS))
  end
end

-- Runs one checked operation (see `check`) on the lock state `s` (from `read`) and returns its reply: the
-- four values as a table, or the token alone when the reply is compact and the operation succeeded. One
-- section per operation, in one function rather than one function each: the script body runs on every
-- call, and each local function is a closure Redis's Lua builds anew every time.
local function run(key, s, owner, ttl, mode, compact, floor, now, now_us)
  local held = s.o ~= '' and s.e > now

  -- acquire, wait: a refusal of wait also sets w, so the end of the lease will be published.
  if mode == 'acquire' or mode == 'wait' then
    if held and s.o ~= owner then
      if mode == 'wait' and s.w == '0' then
        s.w, s.tail = '1', nil
        write(key, s, now, 'keep')
      end
      return { 0, s.o, s.e - now, s.f }
    end
    if not held then
      local token = s.f + 1
      if now_us > token then token = now_us end
      s.o, s.f, s.tail = owner, token, nil
    end
    s.e = now + ttl
    write(key, s, now, 'lease')
    if compact then return s.f end
    return { 1, owner, ttl, s.f }
  end

  if mode == 'status' then
    if held then return { 1, s.o, s.e - now, s.f } end
    return { 0, '', 0, s.f }
  end

  -- force and release end a live lease early (the key is kept, see `write`) and publish if someone waited.
  if mode == 'force' then
    if not held then return { 0, '', 0, s.f } end
    local holder, ends = s.o, s.e
    s.o, s.e, s.tail = '', 0, nil
    write(key, s, now, 'ended', ends)
    if s.w == '1' then call('PUBLISH', key, s.f) end
    return { 1, holder, 0, s.f }
  end

  -- release, extend and fence act for the holder only; a release this owner already made is granted again.
  local done = mode == 'release' and s.o == owner and s.e == 0
  if not done then
    if not held then return { 0, '', 0, s.f } end
    if s.o ~= owner then return { 0, s.o, s.e - now, s.f } end
  end

  if mode == 'release' then
    if not done then
      local ends = s.e
      s.e = 0
      write(key, s, now, 'ended', ends)
      if s.w == '1' then call('PUBLISH', key, s.f) end
    end
    if compact then return s.f end
    return { 1, owner, 0, s.f }
  end

  if mode == 'extend' then
    s.e = now + ttl
    write(key, s, now, 'lease')
    if compact then return s.f end
    return { 1, owner, ttl, s.f }
  end

  -- fence: the token becomes at least `floor`; the lease is unchanged.
  if floor > s.f then
    s.f, s.tail = floor, nil
    write(key, s, now, 'keep')
  end
  return { 1, owner, s.e - now, s.f }
end

-- Server time, read once per call, after the checks: in ms, and in µs for new tokens.
local function clock()
  local t = call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return math.floor(us / 1000), us
end

local n = #KEYS
if n == 1 then
  local mode = ARGV[3] or ''
  if mode == '' then
    if ARGV[4] == 'force' then mode = 'force' elseif ARGV[4] == nil or ARGV[4] == '' then mode = 'acquire' end
  end
  local err, full, compact, ttl, floor = check(ARGV[1], ARGV[2], mode, ARGV[4])
  if err then return err end
  local bad, s = read(KEYS[1])
  if bad then return bad end
  local now, now_us = clock()
  return run(KEYS[1], s, ARGV[1], ttl, full, compact, floor, now, now_us)
end

if n < 1 or n > 256 then return invalid('expected 1 … 256 keys') end
if #ARGV ~= 3 * n then return invalid('a batch needs one (owner, ttl, mode) triple per key') end
local modes, compacts, ttls = {}, {}, {}
for i = 1, n do
  local mode = ARGV[3 * i]
  if mode == 'fence' then return invalid('fence is not allowed in a batch') end
  local err
  err, modes[i], compacts[i], ttls[i] = check(ARGV[3 * i - 2], ARGV[3 * i - 1], mode, nil)
  if err then return err end
end
-- Every key is read before the first write; a key named twice shares one state, so each op sees what the
-- ops before it wrote.
local states = {}
for i = 1, n do
  if not states[KEYS[i]] then
    local bad, s = read(KEYS[i])
    if bad then return bad end
    states[KEYS[i]] = s
  end
end
local now, now_us = clock()
local replies = {}
for i = 1, n do
  replies[i] = run(KEYS[i], states[KEYS[i]], ARGV[3 * i - 2], ttls[i], modes[i], compacts[i], 0, now, now_us)
end
return replies
