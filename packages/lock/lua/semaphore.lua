-- semaphore.lua: a counting semaphore with leased permits and fencing tokens: acquire, extend, release, status,
-- resize; with writer preference, also the read-write lock (readers take 1 permit, a writer all of them).
--
-- KEYS[1]  the semaphore, a hash: p = permits, u = permits held (by the holder records below, some of
--          whose leases may have ended since), n = a lower bound of the earliest lease end among them (server
--          ms since the epoch; 0 = no holder), f = last fencing token, w = 1 once someone waited (then every
--          release is published), x = the key's expiry, q = until when (server ms) a refused writer holds
--          new readers back (writer preference, see ARGV[6]); and one record per holder, field ':' .. owner =
--          '<count> <lease end ms> <token>'. Records whose lease ended are dropped by the next call that
--          finds n in the past. A release that ends the last lease deletes the key when nothing in it is
--          needed any more: its p is the releaser's own (ARGV[2]), no writer holds readers back (q) and f is
--          below the server clock in µs (so the next token, max(f + 1, TIME), is greater without it; a
--          Redlock fence can set f ahead). Otherwise the key outlives every lease by 25 s or more and is gone
--          60 s after the last lease ends at the latest, like distributed_lock.lua's: a semaphore nobody
--          holds costs nothing after that (tokens do not need the key, see acquire; `p` set by resize is
--          then forgotten, and the next acquire's ARGV[5] applies again).
-- ARGV[1]  owner: a caller-chosen unique value ('' for status and resize)
-- ARGV[2]  ttl in ms: integer 1 … 2^40 for acquire, wait and extend; release: the releaser's permits, as
--          the client writes them ('0' = unknown, which keeps the key, see KEYS[1]); an integer ≥ 0
--          (ignored) otherwise
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
--   release  EVALSHA sha 1 <key> <owner> <permits> release
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
--   release  ends this owner's lease (the last one: the key goes, see KEYS[1]); publishes the permits now
--            available on channel KEYS[1] when a live lease ended and w is set (an uncontended semaphore
--            costs no PUBLISH).
--   resize   sets p; holders keep what they hold (available may be negative until they release); publishes
--            like release when w is set.
--   fence    the owner's live lease: its token and f become at least floor (Redlock aligns the token of a
--            permit granted by several nodes on every one of them, so any later quorum issues a greater
--            one); the lease is unchanged.
--
-- Errors: 'ERR semaphore: <what>' on bad input, count above the permits, an owner asking for another
-- count than the one it holds, or a hash that is not a semaphore, before any write; WRONGTYPE if the key is not a hash.
-- Time: TIME of the server, once per call. Complexity: O(1) (one HMGET, one HSET, a PEXPIREAT when the
-- expiry moves, a PUBLISH when someone waited; a release: HDEL and HSET, or one DEL for the last lease),
-- plus O(holders) when a lease ended since the last call (HGETALL, HDEL in chunks of 1000) and for
-- status; holders ≤ permits ≤ 10^6.
-- Keys: only KEYS[1]; the PUBLISH goes to channel KEYS[1].

-- Fast path: acquire (without writer preference) and release, alone or in a batch: what the client sends
-- for every permit. `load` and `quick` are the only functions defined before the single-key form returns,
-- so such a call builds two closures and none of the general path's (the chunk body runs on every call:
-- each closure is an allocation). Same semantics, writes and replies as `run` below; what they do not
-- handle (bad input or state, a lease of this owner to renew, ended leases to drop, other modes) they
-- leave to the general path before any write, which checks it and answers it.

-- The state from HMGET's reply h for the fields p u n f x ':' .. owner (release: then w q): { p (false
-- when absent), u, n, f, x as numbers, p as read, the owner's count (false when it has no record), w, q
-- as read }; false when the hash is not a semaphore (the general path then says so). A new table of its
-- size, not h grown in place (growing a table costs more than making one). The fast path needs only a
-- record's count (its lease is live, see `quick`): a count of one digit is read from the first two
-- bytes, which spares the pattern match (the dearest part of reading a record).
local function load(h)
  local p, u, n, f, x, r, mine = h[1], h[2], h[3], h[4], h[5], h[6], false
  if p then p = tonumber(p) end
  if u then u = tonumber(u) else u = 0 end
  if n then n = tonumber(n) else n = 0 end
  if f then f = tonumber(f) else f = 0 end
  if x then x = tonumber(x) else x = 0 end
  if not (u and n and f and x) or (h[1] and not p) or (h[8] and not tonumber(h[8])) then return false end
  if r then
    local a, b = string.byte(r, 1, 2)
    if b == 32 and a > 48 and a <= 57 then
      mine = a - 48
    else
      local c = string.match(r, '^(%d+) %d+ %d+$')
      if not c then return false end
      mine = c + 0
    end
  end
  return { p, u, n, f, x, h[1], mine, h[7], h[8] }
end

-- Acquire (`acquire` true: `count` permits for `ttl` ms, `permits` the caller's, a number) or release
-- by the owner whose record is `field` (':' .. owner) on `key`, whose state `load` made (h); `given` is
-- the caller's permits as ARGV holds them.
-- `clock` is the call's time: { now ms, now µs, now µs in digits when TIME's own digits make it }, where
-- the lease end of the last ttl seen is kept as [4] ttl, [5] end, [6] end in digits, [7] the key's expiry
-- it asks for in digits (made when first needed), so a batch of one ttl formats them once. Returns the
-- reply; or nil, having written nothing, for the general path. Each string.format costs about as much as
-- a field of HMGET, so what is already digits (ARGV, TIME, a string made for another field) is reused.
local function quick(key, field, acquire, ttl, count, permits, given, h, clock)
  local p, u, n, f, x = h[1], h[2], h[3], h[4], h[5]
  local now = clock[1]
  -- A lease ended since the last call: the general path drops its record. Otherwise every lease is live.
  if n ~= 0 and n <= now then return nil end
  if acquire then
    -- This owner's lease is renewed, or another count asked for is an error: the general path.
    if h[7] then return nil end
    if not p then p = permits end
    if count > p then return nil end
    if count > p - u then
      local wait_ms = 0
      if n ~= 0 then wait_ms = n - now end
      return { 0, p - u, wait_ms, p }
    end
    local token, ts = f + 1, nil
    if clock[2] > token then token, ts = clock[2], clock[3] end
    if not ts then ts = string.format('%d', token) end
    if clock[4] ~= ttl then
      local e = now + ttl
      clock[4], clock[5], clock[6], clock[7] = ttl, e, string.format('%d', e), nil
    end
    local e, es, cs = clock[5], clock[6], '1'
    if count ~= 1 then cs = string.format('%d', count) end
    local us = cs
    if u ~= 0 then us = string.format('%d', u + count) end
    -- One HSET of fixed arity: a pair that need not be written (p when the key has it, n when this lease
    -- does not end first, x when the expiry stays) repeats u's instead (HSET takes a field twice).
    local pf, pv, nf, nv, xf, xv = 'u', us, 'u', us, 'u', us
    if not h[6] then pf, pv = 'p', given end
    if n == 0 or e < n then nf, nv = 'n', es end
    if e + 25000 > x then
      if not clock[7] then clock[7] = string.format('%d', math.max(e + 25000, now + 60000)) end
      xf, xv = 'x', clock[7]
    end
    redis.call('HSET', key, pf, pv, nf, nv, xf, xv, 'u', us, 'f', ts, field, cs .. ' ' .. es .. ' ' .. ts)
    if xf == 'x' then redis.call('PEXPIREAT', key, xv) end
    return token
  end
  local mine = h[7]
  if not mine then return 0 end
  u = u - mine
  if u <= 0 and h[6] == given and f < clock[2] and not (h[9] and h[9] + 0 > now) then
    -- The last lease ended: the key goes (see KEYS[1]).
    redis.call('DEL', key)
    u = 0
  else
    redis.call('HDEL', key, field)
    -- The key's expiry moves as `put` below moves it.
    local to
    if u > 0 then
      local us = string.format('%d', u)
      if n + 25000 > x then
        to = string.format('%d', math.max(n + 25000, now + 60000))
        redis.call('HSET', key, 'x', to, 'u', us)
        redis.call('PEXPIREAT', key, to)
      else
        redis.call('HSET', key, 'u', us)
      end
    else
      u = 0
      if x == 0 or x > now + 60000 then
        to = string.format('%d', now + 60000)
        redis.call('HSET', key, 'x', to, 'u', '0', 'n', '0')
        redis.call('PEXPIREAT', key, to)
      else
        redis.call('HSET', key, 'u', '0', 'n', '0')
      end
    end
  end
  if h[8] == '1' then redis.call('PUBLISH', key, string.format('%d', (p or 1) - u)) end
  return 1
end

if #KEYS == 1 then
  local owner, mode = ARGV[1], ARGV[3]
  local acquire = mode == 'acquire' and (ARGV[6] == nil or ARGV[6] == '')
  if (acquire or mode == 'release') and owner ~= '' then
    local ttl, count, permits, given, h, field = nil, nil, nil, ARGV[2], nil, ':' .. owner
    if acquire then
      given = ARGV[5]
      ttl, count, permits = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
      if ttl and count and permits and ttl >= 1 and ttl <= 1099511627776 and ttl % 1 == 0 and count >= 1
        and count <= 1000000 and count % 1 == 0 and permits >= 1 and permits <= 1000000 and permits % 1 == 0 then
        h = redis.call('HMGET', KEYS[1], 'p', 'u', 'n', 'f', 'x', field)
      end
    else
      h = redis.call('HMGET', KEYS[1], 'p', 'u', 'n', 'f', 'x', field, 'w', 'q')
    end
    if h then h = load(h) end
    if h then
      local t = redis.call('TIME')
      local now_us = t[1] * 1000000 + t[2]
      local stamp
      if acquire and #t[2] == 6 then stamp = t[1] .. t[2] end
      local clock = { (now_us - now_us % 1000) / 1000, now_us, stamp }
      local reply = quick(KEYS[1], field, acquire, ttl, count, permits, given, h, clock)
      if reply then return reply end
    end
  end
end

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
  elseif mode == 'release' then
    -- The releaser's permits (see ARGV[2]); anything else than an integer is only 'unknown'.
    permits = tonumber(ttl_arg)
  end
  return nil, ttl, count, permits, takes and a6 == 'w', floor
end

-- Reads the semaphore into the table HMGET returns, made the state in place (so reading allocates nothing
-- more): h[1] p, h[2] u, h[3] n, h[6] x and, when `tokens`, h[4] f as numbers; h[5] w and h[8] q as read;
-- h[9], h[10] the owner's count and lease end and h[11] its token (digits) when it has a record; h[12]
-- p as read, when the key holds it. Only what
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
  h[12] = h[1]
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
    h, bad = read(key, owner or '', permits, mode ~= 'extend', nil)
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
    u = u - mc
    if u <= 0 and h[12] and p == permits and f < now_us and not (h[8] and tonumber(h[8]) > now) then
      -- The last lease ended: the key goes (see KEYS[1]).
      redis.call('DEL', key)
      u = 0
    elseif u <= 0 then
      redis.call('HDEL', key, ':' .. owner)
      put(key, x, nil, now, 'u', '0', 'n', '0')
      u = 0
    else
      redis.call('HDEL', key, ':' .. owner)
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

-- Batch form: n = 2 … 64 operations, six ARGV each. An acquire without writer preference and a release
-- are checked here and run by the fast path (as in the single form); the rest go through `check` and `run`.
if n < 1 or n > 64 then return redis.error_reply('ERR semaphore: expected 1 … 64 keys') end
if #ARGV ~= 6 * n then return redis.error_reply('ERR semaphore: a batch needs six ARGV per key') end
-- Per operation, flat (one table for all, not one each): ttl, count, permits, writers, fast.
local ops, last = {}, {}
for i = 1, n do
  local at = 6 * (i - 1)
  local owner, mode, a6 = ARGV[at + 1], ARGV[at + 3], ARGV[at + 6]
  local o = 5 * (i - 1)
  local fast = false
  if owner ~= '' and (mode == 'release' or (mode == 'acquire' and a6 == '')) then
    fast = true
    if mode == 'acquire' then
      local a2, a4, a5 = ARGV[at + 2], ARGV[at + 4], ARGV[at + 5]
      -- The acquires of one batch mostly repeat ttl, count and permits: checked once (strings compare by
      -- reference in Lua).
      if a2 ~= last[1] or a4 ~= last[2] or a5 ~= last[3] then
        local ttl, count, permits = tonumber(a2), tonumber(a4), tonumber(a5)
        fast = ttl and count and permits and ttl >= 1 and ttl <= 1099511627776 and ttl % 1 == 0 and count >= 1
          and count <= 1000000 and count % 1 == 0 and permits >= 1 and permits <= 1000000 and permits % 1 == 0
        if fast then last = { a2, a4, a5, ttl, count, permits } end
      end
      if fast then ops[o + 1], ops[o + 2], ops[o + 3] = last[4], last[5], last[6] end
    end
  end
  if not fast then
    if mode ~= 'acquire' and mode ~= 'wait' and mode ~= 'extend' and mode ~= 'release' then
      return redis.error_reply('ERR semaphore: a batch takes acquire, wait, extend and release only')
    end
    local err, ttl, count, permits, writers = check(owner, ARGV[at + 2], mode, ARGV[at + 4], ARGV[at + 5], a6)
    if err then return err end
    ops[o + 1], ops[o + 2], ops[o + 3], ops[o + 4] = ttl, count, permits, writers
  end
  ops[o + 5] = fast
end
-- Every key is checked before the first write; what the first operation on a key read is handed to it
-- (later ones on the same key read again, after what the ones before them wrote).
local reads, seen = {}, {}
for i = 1, n do
  local at, key = 6 * (i - 1), KEYS[i]
  local h, bad
  if ops[5 * i] and ARGV[at + 3] == 'acquire' then
    h = redis.call('HMGET', key, 'p', 'u', 'n', 'f', 'x', ':' .. ARGV[at + 1])
  elseif ops[5 * i] then
    h = redis.call('HMGET', key, 'p', 'u', 'n', 'f', 'x', ':' .. ARGV[at + 1], 'w', 'q')
  end
  if h then
    h = load(h)
    if not h then return redis.error_reply('ERR semaphore: key ' .. key .. ' does not hold a semaphore') end
  else
    h, bad = read(key, ARGV[at + 1], ops[5 * i - 2], ARGV[at + 3] ~= 'extend', nil)
    if bad then return bad end
  end
  if not seen[key] then
    seen[key] = true
    reads[i] = h
  end
end
local t = redis.call('TIME')
local now_us = t[1] * 1000000 + t[2]
local now = (now_us - now_us % 1000) / 1000
local stamp
if #t[2] == 6 then stamp = t[1] .. t[2] end
local clock = { now, now_us, stamp }
local replies = {}
for i = 1, n do
  local at, o, key = 6 * (i - 1), 5 * (i - 1), KEYS[i]
  local owner, mode = ARGV[at + 1], ARGV[at + 3]
  local reply, h = nil, reads[i]
  if ops[o + 5] then
    local acquire, field = mode == 'acquire', ':' .. owner
    if not h then
      if acquire then h = redis.call('HMGET', key, 'p', 'u', 'n', 'f', 'x', field)
      else h = redis.call('HMGET', key, 'p', 'u', 'n', 'f', 'x', field, 'w', 'q') end
      h = load(h)
    end
    local given = ARGV[at + 2]
    if acquire then given = ARGV[at + 5] end
    if h then reply = quick(key, field, acquire, ops[o + 1], ops[o + 2], ops[o + 3], given, h, clock) end
    -- The general path reads the key again, with the release's permits as `check` makes them.
    h = nil
    if reply == nil and not acquire then ops[o + 3] = tonumber(ARGV[at + 2]) end
  end
  replies[i] = reply or run(key, owner, mode, ops[o + 1], ops[o + 2], ops[o + 3], ops[o + 4], now, now_us, h)
end
return replies
