-- semaphore.lua: a counting semaphore with leased permits and fencing tokens: acquire, extend, release, status,
-- resize; with writer preference, also the read-write lock (readers take 1 permit, a writer all of them).
--
-- KEYS[1]  the semaphore, a hash: p = permits, u = permits held (by the holder records below, some of
--          whose leases may have ended since), n = a lower bound of the earliest lease end among them (server
--          ms since the epoch; 0 = no holder), f = last fencing token, w = 1 once someone waited (then every
--          release is published), x = the key's expiry, q = until when (server ms) a refused writer holds
--          new readers back (writer preference, see ARGV[6]); and one record per holder, field ':' .. owner =
--          '<count> <lease end ms> <token>'. Records whose lease ended are dropped by the next call that
--          finds n in the past. The key outlives every lease by 25 s or more and is gone 60 s after the
--          last lease ends at the latest, like distributed_lock.lua's: a semaphore nobody holds costs
--          nothing after that (tokens do not need the key, see acquire; `p` set by resize is then forgotten,
--          and the next acquire's ARGV[5] applies again).
-- ARGV[1]  owner: a caller-chosen unique value ('' for status and resize)
-- ARGV[2]  ttl in ms: integer 1 … 2^40 for acquire, wait and extend; an integer ≥ 0 (ignored) otherwise
-- ARGV[3]  mode: 'acquire', 'wait', 'extend', 'release', 'status', 'resize' or 'fence'
-- ARGV[4]  acquire, wait: count, integer 1 … permits; resize: the new permits, integer 1 … 10^6; fence: the
--          token floor, integer 0 … 2^53 − 1
-- ARGV[5]  acquire, wait, status: permits, integer 1 … 10^6, used while the key holds none (p)
-- ARGV[6]  acquire, wait: 'w' for writer preference (the read-write lock): a request for all permits is a
--          writer, any smaller one a reader; a writer refused by `wait` sets q = now + its ttl, and until
--          then (or until a writer is granted, which clears q) readers that hold nothing are refused. Absent
--          or '' otherwise (a semaphore, which ignores q).
--
-- Calls (internal: what the TypeScript client sends through src/protocol.ts; may change with any release):
--   acquire  EVALSHA sha 1 <key> <owner> <ttl_ms> acquire <count> <permits> [w]
--   wait     EVALSHA sha 1 <key> <owner> <ttl_ms> wait <count> <permits> [w]  (acquire; a refusal asks for
--            a release message: subscribe to channel KEYS[1] first)
--   extend   EVALSHA sha 1 <key> <owner> <ttl_ms> extend
--   release  EVALSHA sha 1 <key> <owner> 0 release
--   status   EVALSHA sha 1 <key> '' 0 status 0 <permits>
--   resize   EVALSHA sha 1 <key> '' 0 resize <permits>
--   fence    EVALSHA sha 1 <key> <owner> 0 fence <floor>  (Redlock: raise a live lease's token to ≥ floor)
--   batch    EVALSHA sha n <key1> … <keyn> then six ARGV per key (the single form's, '' where it has fewer):
--            n = 2 … 64 acquire, wait, extend or release operations, run in order (a key named twice sees
--            what the operations before it wrote); the reply is an array of n replies. Input errors fail the
--            whole call before any write, and so does a key that is not a semaphore; an owner asking for
--            another count than it holds fails only its own operation (an error element). Single node only
--            (a cluster refuses keys of several slots): lets many concurrent operations share one call.
--
-- Replies:
--   acquire, wait  granted: the token alone, an integer (the count and ttl are the caller's own); refused
--                  { 0, available, wait_ms, permits }, wait_ms
--                  = ms until the earliest lease ends or a writer's hold on readers ends, whichever comes
--                  first (when this request may succeed without a release message)
--   extend, fence  granted { 1, count, ttl_ms, token }; refused (no live lease of this owner) { 0, 0, 0, 0 }
--   release        1 when a live lease of this owner ended, 0 otherwise (expired, released, never held)
--   status         { permits, available, last token, owner1, count1, ttl_ms1, owner2, … } (live leases)
--   resize         { permits, available }
--
-- Semantics:
--   acquire  granted when count ≤ permits − permits held by live leases: a new token = max(last token + 1,
--            server TIME in µs) (strictly increasing per key also when the key was lost, as in
--            distributed_lock.lua), a lease of ttl. An owner that holds a live lease of the same count gets
--            it renewed, with its token (a resent acquire is harmless); of another count, an error.
--   release  ends this owner's lease; publishes the permits now available on channel KEYS[1] when a live
--            lease ended and w is set (an uncontended semaphore costs no PUBLISH).
--   resize   sets p; holders keep what they hold (available may be negative until they release); publishes
--            like release when w is set.
--   fence    the owner's live lease: its token and f become at least floor (Redlock aligns the token of a
--            permit granted by several nodes on every one of them, so any later quorum issues a greater
--            one); the lease is unchanged.
--
-- Errors: 'ERR semaphore: <what>' on bad input, count above the permits, an owner asking for another
-- count than the one it holds, or a hash that is not a semaphore, before any write; WRONGTYPE if the key is not a hash.
-- Time: TIME of the server, once per call. Complexity: O(1) (one HMGET, one HSET, a PEXPIREAT when the
-- expiry moves, a PUBLISH when someone waited), plus O(holders) when a lease ended since the last call
-- (HGETALL, HDEL in chunks of 1000) and for status; holders ≤ permits ≤ 10^6.
-- Keys: only KEYS[1]; the PUBLISH goes to channel KEYS[1].

-- Holder records of live leases: used permits, earliest lease end (0 if none), the fields of ended ones,
-- and the live ones as { owner, count, end }; or an error reply for a record that is not one.
local function scan(key, now)
  local all = redis.call('HGETALL', key)
  local used, first, dead, live = 0, 0, {}, {}
  for i = 1, #all, 2 do
    local field = all[i]
    if string.byte(field, 1) == 58 then
      local c, e = string.match(all[i + 1], '^(%d+) (%d+) %d+$')
      if not c then return redis.error_reply('ERR semaphore: key ' .. key .. ' does not hold a semaphore') end
      c, e = tonumber(c), tonumber(e)
      if e <= now then
        dead[#dead + 1] = field
      else
        used = used + c
        if first == 0 or e < first then first = e end
        live[#live + 1] = { string.sub(field, 2), c, e }
      end
    end
  end
  return nil, used, first, dead, live
end

-- Drops the records of ended leases (in chunks: unpack is bounded by Lua's stack).
local function drop(key, dead)
  for i = 1, #dead, 1000 do
    redis.call('HDEL', key, unpack(dead, i, math.min(i + 999, #dead)))
  end
end

-- Writes the field/value pairs and the key's expiry x, which moves only when needed (see KEYS[1]): `e` is
-- a lease end the key must outlive by 25 s, or nil when no lease is held any more (then it is gone within
-- 60 s).
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

local function int(name, value, min, max)
  local v = tonumber(value)
  if v == nil or v ~= math.floor(v) or v < min or v > max then
    return nil, redis.error_reply('ERR semaphore: ' .. name .. ' must be an integer ' .. min .. ' … ' .. max)
  end
  return v
end

-- Checks one operation before anything is written: nil and its ttl, count, permits and writer preference
-- (nil where they do not apply), or an error reply.
local function check(owner, ttl_arg, mode, a4, a5, a6)
  local lease = mode == 'acquire' or mode == 'wait' or mode == 'extend'
  if not lease and mode ~= 'release' and mode ~= 'status' and mode ~= 'resize' and mode ~= 'fence' then
    return redis.error_reply('ERR semaphore: unknown mode (expected acquire, wait, extend, release, status, resize or fence)')
  end
  local ttl, count, permits, floor, err
  if lease then
    ttl, err = int('ttl', ttl_arg, 1, 1099511627776)
    if err then return err end
  end
  if (lease or mode == 'release' or mode == 'fence') and (owner == nil or owner == '') then
    return redis.error_reply('ERR semaphore: owner must be a non-empty string')
  end
  local takes = mode == 'acquire' or mode == 'wait'
  if takes then
    count, err = int('count', a4, 1, 1000000)
    if err then return err end
  end
  if takes or mode == 'status' then
    permits, err = int('permits', a5, 1, 1000000)
    if err then return err end
  elseif mode == 'resize' then
    permits, err = int('permits', a4, 1, 1000000)
    if err then return err end
  end
  if takes and a6 ~= nil and a6 ~= '' and a6 ~= 'w' then
    return redis.error_reply("ERR semaphore: ARGV[6] must be 'w' or absent")
  end
  if mode == 'fence' then
    floor, err = int('floor', a4, 0, 9007199254740991)
    if err then return err end
  end
  return nil, ttl, count, permits, takes and a6 == 'w', floor
end

-- Reads the semaphore into the table HMGET returns, made the state in place (so reading allocates nothing
-- more): h[1] p, h[2] u, h[3] n, h[6] x and, when `tokens`, h[4] f as numbers; h[5] w and h[8] q as read;
-- h[9], h[10] the owner's count and lease end and h[11] its token (digits) when it has a record; h[12]
-- true when the key holds p. Only what
-- the operation uses is converted (each tonumber is a strtod), and a record's parts, digits by the pattern,
-- by Lua's own coercion. Returns the state, or nil and an error reply for a hash that is not a semaphore.
local function read(key, owner, permits, tokens, h)
  h = h or redis.call('HMGET', key, 'p', 'u', 'n', 'f', 'w', 'x', ':' .. owner, 'q')
  local p, u, n, x, f = h[1], h[2], h[3], h[6], h[4]
  if p then p = tonumber(p) else p = permits or 1 end
  if u then u = tonumber(u) else u = 0 end
  if n then n = tonumber(n) else n = 0 end
  if x then x = tonumber(x) else x = 0 end
  if tokens then
    if f then f = tonumber(f) else f = 0 end
  else
    f = 0
  end
  local ok = p and u and n and x and f
  if ok and h[8] and not tonumber(h[8]) then ok = false end
  local r = h[7]
  if ok and r and owner ~= '' then
    local c, e, t = string.match(r, '^(%d+) (%d+) (%d+)$')
    if c then h[9], h[10], h[11] = c + 0, e + 0, t else ok = false end
  end
  if not ok then return nil, redis.error_reply('ERR semaphore: key ' .. key .. ' does not hold a semaphore') end
  h[12] = h[1] and true
  h[1], h[2], h[3], h[6] = p, u, n, x
  if tokens then h[4] = f end
  return h
end

-- Runs one checked operation (see `check`) on `key` with its state h (from `read`; read here when nil) and
-- returns its reply: an error reply when the owner asks for another count than it holds or the key is not
-- a semaphore (in a batch, that operation's reply only). One function for every mode: each local function
-- is a closure Lua builds on every call. Integers go to Redis as strings made by one string.format each:
-- redis.call would format a Lua number with %.17g, and concatenation with %.14g, both slower.
local function run(key, owner, mode, ttl, count, permits, writers, now, now_us, h, floor)
  if not h then
    local bad
    h, bad = read(key, owner or '', permits, mode ~= 'release' and mode ~= 'extend', nil)
    if bad then return bad end
  end
  local p, u, n, f, x = h[1], h[2], h[3], h[4], h[6]
  local w = h[5] or '0'
  local mc, me, mt = h[9], h[10], h[11]
  if count and count > p then
    return redis.error_reply('ERR semaphore: count ' .. count .. ' exceeds the ' .. p .. ' permits')
  end

  if mode == 'status' then
    local bad, used, _, _, live = scan(key, now)
    if bad then return bad end
    local reply = { p, p - used, f }
    for i, r in ipairs(live) do
      reply[3 * i + 1], reply[3 * i + 2], reply[3 * i + 3] = r[1], r[2], r[3] - now
    end
    return reply
  end

  if count and mc and me > now and mc ~= count then
    return redis.error_reply('ERR semaphore: owner ' .. owner .. ' holds ' .. mc .. ' permit(s), not ' .. count)
  end

  -- A lease ended since the last call: drop its record, so `u` counts live leases only.
  if n ~= 0 and n <= now then
    local bad, used, first, dead = scan(key, now)
    if bad then return bad end
    drop(key, dead)
    u, n = used, first
    redis.call('HSET', key, 'u', string.format('%d', u), 'n', string.format('%d', n))
    if me and me <= now then mc = nil end
  end
  local live_mine = mc and me > now

  if mode == 'extend' then
    if not live_mine then return { 0, 0, 0, 0 } end
    local e = now + ttl
    put(key, x, e, now, ':' .. owner, string.format('%d %d %s', mc, e, mt))
    return { 1, mc, ttl, mt + 0 }
  end

  if mode == 'fence' then
    if not live_mine then return { 0, 0, 0, 0 } end
    mt = mt + 0
    if floor > mt or floor > f then
      if floor > mt then mt = floor end
      if floor > f then f = floor end
      put(key, x, me, now, ':' .. owner, string.format('%d %d %d', mc, me, mt), 'f', string.format('%d', f))
    end
    return { 1, mc, me - now, mt }
  end

  if mode == 'release' then
    if not mc then return 0 end
    redis.call('HDEL', key, ':' .. owner)
    u = u - mc
    if u <= 0 then
      put(key, x, nil, now, 'u', '0', 'n', '0')
      u = 0
    else
      put(key, x, n, now, 'u', string.format('%d', u))
    end
    if not live_mine then return 0 end
    if w == '1' then redis.call('PUBLISH', key, string.format('%d', p - u)) end
    return 1
  end

  if mode == 'resize' then
    local grew = permits > p
    put(key, x, u > 0 and n or nil, now, 'p', string.format('%d', permits))
    if grew and w == '1' then redis.call('PUBLISH', key, string.format('%d', permits - u)) end
    return { permits, permits - u }
  end

  -- acquire, wait
  if live_mine then
    local e = now + ttl
    put(key, x, e, now, ':' .. owner, string.format('%d %d %s', mc, e, mt))
    return mt + 0
  end
  -- Writer preference: a reader is held back while a refused writer waits (q), a writer clears q.
  local q = 0
  if writers and h[8] then q = tonumber(h[8]) end
  local writer = writers and count == p
  local held_back = writers and not writer and q > now
  if held_back or count > p - u then
    if mode == 'wait' and writer then
      q = math.max(q, now + ttl)
      redis.call('HSET', key, 'w', '1', 'q', string.format('%d', q))
    elseif mode == 'wait' and w ~= '1' then
      redis.call('HSET', key, 'w', '1')
    end
    local wait_ms = 0
    if n ~= 0 then wait_ms = n - now end
    if held_back and (wait_ms == 0 or q - now < wait_ms) then wait_ms = q - now end
    return { 0, p - u, wait_ms, p }
  end
  if writer and q ~= 0 then redis.call('HSET', key, 'q', '0') end
  local token = f + 1
  if now_us > token then token = now_us end
  local e = now + ttl
  local record = string.format('%d %d %d', count, e, token)
  local us = string.format('%d', u + count)
  -- p is written when the key had none; n when this lease ends first.
  if n == 0 or e < n then
    n = e
    if h[12] then
      put(key, x, e, now, 'u', us, 'n', string.format('%d', n), 'f', string.format('%d', token), ':' .. owner, record)
    else
      put(key, x, e, now, 'p', string.format('%d', p), 'u', us, 'n', string.format('%d', n), 'f', string.format('%d', token), ':' .. owner, record)
    end
  else
    put(key, x, e, now, 'u', us, 'f', string.format('%d', token), ':' .. owner, record)
  end
  return token
end

local n = #KEYS
if n == 1 then
  local err, ttl, count, permits, writers, floor = check(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
  if err then return err end
  local t = redis.call('TIME')
  -- TIME answers digits: Lua's coercion reads them without tonumber's call.
  local now_us = t[1] * 1000000 + t[2]
  return run(KEYS[1], ARGV[1], ARGV[3], ttl, count, permits, writers, math.floor(now_us / 1000), now_us, nil, floor)
end

-- Batch form: n = 2 … 64 operations, six ARGV each.
if n < 1 or n > 64 then return redis.error_reply('ERR semaphore: expected 1 … 64 keys') end
if #ARGV ~= 6 * n then return redis.error_reply('ERR semaphore: a batch needs six ARGV per key') end
local ops = {}
for i = 1, n do
  local at = 6 * (i - 1)
  local owner, mode = ARGV[at + 1], ARGV[at + 3]
  if mode ~= 'acquire' and mode ~= 'wait' and mode ~= 'extend' and mode ~= 'release' then
    return redis.error_reply('ERR semaphore: a batch takes acquire, wait, extend and release only')
  end
  local err, ttl, count, permits, writers = check(owner, ARGV[at + 2], mode, ARGV[at + 4], ARGV[at + 5], ARGV[at + 6])
  if err then return err end
  ops[i] = { owner, mode, ttl, count, permits, writers }
end
-- Every key is checked before the first write; what the first operation on a key read is handed to it
-- (later ones on the same key read again, after what the ones before them wrote).
local reads, seen = {}, {}
for i = 1, n do
  local op = ops[i]
  local h, bad = read(KEYS[i], op[1], op[5], op[2] ~= 'release' and op[2] ~= 'extend', nil)
  if bad then return bad end
  if not seen[KEYS[i]] then
    seen[KEYS[i]] = true
    reads[i] = h
  end
end
local t = redis.call('TIME')
local now_us = t[1] * 1000000 + t[2]
local now = math.floor(now_us / 1000)
local replies = {}
for i = 1, n do
  local op = ops[i]
  replies[i] = run(KEYS[i], op[1], op[2], op[3], op[4], op[5], op[6], now, now_us, reads[i])
end
return replies
