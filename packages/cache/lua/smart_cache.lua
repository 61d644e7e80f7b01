--[==[
smart_cache.lua: an LRU-bounded cache with TTL and shared hit/miss statistics.

DATA
  Entries      one Redis string per entry (KEYS[1] is the entry being read or written), with a native
               PEXPIRE (or none, for ttl `none`): Redis itself drops values whose TTL passed, so nothing past
               its TTL is ever returned.
  Access log   KEYS[2], a ZSET with one member per entry, scored by a logical clock: each hit or write stamps
               its entry with the log's highest score + 1. The lowest score is the least recently used entry;
               a clock instead of wall time keeps the order exact when two calls share a timestamp. The clock
               lives in the log itself, so losing any other key (the stats hash deleted, rotated or evicted)
               cannot disturb the order; losing the log restarts the clock together with the order it ranks.
               Member = the entry key, minus the prefix it shares with KEYS[2] through the hash tag when
               KEYS[2] has one (`{c}:log` + `{c}:e:k1` → `:e:k1`): this saves index memory, and the entry key
               is rebuilt as that prefix .. member on eviction. So when KEYS[2] has a hash tag, every entry
               key must start with KEYS[2]'s text up to and including its `}` (ERR otherwise).
  Stats        KEYS[3], a hash of counters only: hits, misses, sets (entries written), evictions. Updated
               inside the script, so the counts are exact under concurrency and shared by every process using
               the same keys; nothing else depends on it (a lost stats hash only restarts the counts).
  A member whose value expired is removed when a lookup misses on it, when it reaches the LRU end, and by
  a bounded sweep (16 ranks on every write that moves the clock past a multiple of 16, 64 per STATS, from
  the rank the clock points at), so the log never keeps entries whose values are gone for long and holds
  at most max_size members after every write.
  A hit on an entry that has no member (the log was lost, evicted or flushed while the entry survived) puts
  it back in the log, so the next write evicts down to max_size again: the bound recovers by itself.

FORMATS
  Public contract (the seed's raw calls, frozen): 3 keys (entry, access log, stats) with
  `GET <current_time>` → value or nil, `SET <current_time> <value> <ttl_seconds> <max_size>` → evicted count,
  `STATS <current_time>` → the flat field list below. Everything else (the optional arguments after those,
  MGET, MSET, TOUCH, DEL, LEASE, RELEASE, CLEAR, the bus messages) is internal to @cyredis/cache, whose
  src/protocol.ts is the only code that builds or reads it; it may change with the package version.

KEYS (seed contract: 3 keys)
  KEYS[1] entry key   KEYS[2] access-log ZSET   KEYS[3] stats hash
  KEYS[4] (DEL/LEASE/RELEASE and SET with a lease token only) the entry's lease key
  KEYS[4..] (MGET/MSET/TOUCH only) further entry keys, after the three seed keys
  UNDECLARED KEYS (the only ones): eviction (SET/MSET), CLEAR and the expired-member sweep (SET/MSET/STATS)
  touch entry keys rebuilt from access-log members, which no caller can know in advance: the LRU victim is
  chosen inside the script. Redis and Valkey run this as is when every key of one cache shares a hash tag
  (`{c}:e:<k>`, `{c}:log`, `{c}:stats`, so they share a slot); Dragonfly needs
  `--default_lua_flags=allow-undeclared-keys`, and services that enforce declared keys refuse these calls.

ARGV (ARGV[1] is the operation; current_time is a number, validated, and used for nothing else: order
comes from the logical clock and expiry from Redis's own clock, so client clocks never matter)
  GET     <current_time> [grace_ms]
          → the value, or nil on a miss.
          With grace_ms (internal): → {value or nil, fresh_ms}; fresh_ms = PTTL - grace_ms. An entry
          with fresh_ms <= 0 is stale: returned for grace serving but counted as a miss, LRU order untouched.
  SET     <current_time> <value> <ttl_seconds> <max_size> [unit: s|ms] [grace_ms] [channel] [origin] [lease_token]
          (after the seed's four: the write settings, in the order MSET uses too)
          Stores value for ttl (+ grace_ms) and evicts least recently used entries so at most max_size stay.
          ttl `none` stores it without a TTL: it stays until the LRU evicts it or it is deleted.
          → number of entries evicted; -1 when lease_token was given and KEYS[4] no longer holds it
          (a delete, a newer lease or the lease key's loss won), in which case nothing is written and, with
          a channel, a lease-released message wakes the callers waiting for the value.
  MSET    <current_time> <max_size> <unit> <grace_ms> <channel> <origin> (<value> <ttl>)… for KEYS[1], KEYS[4]…
          → number of entries evicted. The settings are SET's, in SET's order; a ttl may be `none`.
  MGET    <current_time> <grace_ms> → {value or nil, fresh_ms, …} for KEYS[1], KEYS[4], KEYS[5]…
  TOUCH   <current_time> <hits> → hits, for the entry keys KEYS[4..]. Records lookups a client made with plain
          GET/MGET: the first <hits> entries (in access order) were hits and move to the MRU end; the rest
          were misses and leave the log unless their entry exists again. KEYS[1] is unused.
  DEL     <current_time> [channel] [origin] → 1 if the entry existed, else 0; also drops the lease (KEYS[4]).
  LEASE   <current_time> <grace_ms> <token> <lease_ms> <refresh_below_ms> [with_ttl: 0|1]
          → {value or nil, fresh_ms, acquired 1|0, lease_pttl}. A hit is fresh_ms > 0; when there is no hit,
          or fresh_ms <= refresh_below_ms, the lease KEYS[4] is taken with SET NX PX lease_ms if free.
          The TTL is read only with with_ttl 1, grace_ms > 0 or refresh_below_ms > 0 (else fresh_ms is 1);
          lease_pttl is 0 on a hit. An entry without a TTL has fresh_ms 2^52 (never stale).
  RELEASE <current_time> <token> [channel] [origin] → 1 if the lease was held by token and dropped, else 0.
  CLEAR   <current_time> <batch> [channel] [origin] → entries still left (call again until 0).
  STATS   <current_time>
          → {'hits', n, 'misses', n, 'sets', n, 'evictions', n, 'size', n, 'hit_rate', '0.7500'}
          (size = access-log members; hit_rate = hits / (hits + misses) as a string, '0.0000' before any
          lookup).
  With a channel, writes PUBLISH a JSON array [origin, op, [key…], [evicted key…]] (op: s set, d delete,
  r lease released, c clear; an empty list may come as {}) so other processes can drop in-process copies
  and wake waiters.

ERRORS (all before the first write; nothing is written; each reads `ERR smart_cache: <what>`)
  ERR unknown operation, ERR current_time / ttl / max_size / grace_ms / lease_ms / batch / hits must be …,
  ERR value missing, ERR wrong number of keys, ERR entry key must share the access log's hash-tag prefix.
  A key of the wrong type (WRONGTYPE) or a stats field that is not an integer fails the call before its first
  write too: every operation but RELEASE touches the log, and then the stats hash, before any entry.

PERFORMANCE (the script's micro-optimisations, in one place)
  The operations are sections of the main chunk, not functions, and GET comes first: the hot path creates
  no closure it does not use. Batched writes stamp the log with one ZADD for many members, which is most of
  the saving over a call each. A whole-ms ttl with no grace is passed to PX as the caller's text: Redis turns
  a Lua number back into text for every call, which costs about a third of the SET itself. Entry keys are
  checked against the log's prefix with a plain find (no string allocated). TOUCH runs for every 256 plain
  reads, so its per-key loop is inlined with the string functions in locals: each key's check and member
  show in the cost of those reads.

COMPLEXITY
  GET/DEL/LEASE/RELEASE O(log N); SET O(log N + E·log N) for E evictions (E ≤ 1000 per call: shrinking
  max_size by more than that is absorbed over the following SETs); MGET/MSET O(K·log N) for K keys;
  CLEAR O(batch·log N) with batch ≤ 1000; STATS O(log N + 64); TOUCH O(M·log N) for M entry keys.
]==]

local op = ARGV[1]
local entry, log, stats = KEYS[1], KEYS[2], KEYS[3]

local function fail(message)
  return redis.error_reply('ERR smart_cache: ' .. message)
end

local function finite(value)
  local n = tonumber(value)
  if n == nil or n ~= n or n == math.huge or n == -math.huge then return nil end
  return n
end

local function optional_ms(value)
  if value == nil or value == '' then return 0 end
  local n = finite(value)
  if n == nil or n < 0 or n ~= math.floor(n) then return nil end
  return n
end

if finite(ARGV[2]) == nil or tonumber(ARGV[2]) < 0 then
  return fail('current_time must be a finite number >= 0')
end
if #KEYS < 3 then return fail('wrong number of keys: expected at least 3') end

-- Prefix of the access log through its hash tag; entry keys must carry it and members drop it.
local base = ''
do
  local open = string.find(log, '{', 1, true)
  local close = open and string.find(log, '}', open + 1, true)
  if close and close > open + 1 then base = string.sub(log, 1, close) end
end

local function member_of(key)
  if base == '' then return key end
  -- A plain find, not a sub: comparing the prefix allocates no string (see PERFORMANCE).
  if string.find(key, base, 1, true) ~= 1 then return nil end
  return string.sub(key, #base + 1)
end

-- fresh_ms of an entry without a TTL: never stale.
local FOREVER = 2 ^ 52

-- The logical clock: the log's highest score. Read once by the operations that stamp entries (and STATS,
-- whose sweep starts from it), before their first write (a log of the wrong type fails the call there),
-- then advanced locally.
local clock = 0
if op ~= 'DEL' and op ~= 'RELEASE' and op ~= 'CLEAR' then
  local top = redis.call('ZREVRANGE', log, 0, 0, 'WITHSCORES')
  if top[2] then clock = tonumber(top[2]) end
end

-- Moves a member that was hit to the MRU end; puts it back when the log lost it (the entry is there).
local function stamp_hit(member)
  clock = clock + 1
  if redis.call('ZADD', log, 'XX', 'CH', clock, member) == 0 then redis.call('ZADD', log, clock, member) end
end

-- One lookup: value or false, and fresh_ms (1 when with_ttl is false: the TTL is not read and any value
-- found is fresh). Counts a miss, or a hit (moving the entry to the MRU end).
local function lookup(key, member, grace, with_ttl)
  local value = redis.call('GET', key)
  if not value then
    redis.call('HINCRBY', stats, 'misses', 1)
    redis.call('ZREM', log, member)
    return false, 0
  end
  local fresh = 1
  if with_ttl then
    local pttl = redis.call('PTTL', key)
    fresh = pttl < 0 and FOREVER or pttl - grace
    if fresh <= 0 and grace > 0 then
      redis.call('HINCRBY', stats, 'misses', 1)
      return value, fresh
    end
  end
  redis.call('HINCRBY', stats, 'hits', 1)
  stamp_hit(member)
  return value, fresh
end

-- GET first (see PERFORMANCE).
if op == 'GET' then
  local member = member_of(entry)
  if member == nil then return fail("entry key must start with the access log's prefix through its hash tag: " .. base) end
  local grace = optional_ms(ARGV[3])
  if grace == nil then return fail('grace_ms must be an integer >= 0') end
  if ARGV[3] == nil then return (lookup(entry, member, 0, false)) end
  local value, fresh = lookup(entry, member, grace, true)
  return { value, fresh }
end

local function check_entries(first, last)
  for i = first, last do
    if i ~= 2 and i ~= 3 and member_of(KEYS[i]) == nil then
      return fail("entry key must start with the access log's prefix through its hash tag: " .. base)
    end
  end
  return nil
end

local function publish(channel, origin, kind, first, last, evicted)
  if channel == nil or channel == '' then return end
  local keys = {}
  for i = first, last do
    if i ~= 2 and i ~= 3 then keys[#keys + 1] = KEYS[i] end
  end
  redis.call('PUBLISH', channel, cjson.encode({ origin or '', kind, keys, evicted or {} }))
end

-- ZADD of a flat score/member list into the log, 1000 items per call (unpack is bounded by Lua's stack).
-- With a flag (XX), returns the number
-- of members whose score changed (every member present: stamps only grow).
local function zadd_all(flag, items)
  local added = 0
  for i = 1, #items, 1000 do
    local last = math.min(i + 999, #items)
    if flag then
      added = added + redis.call('ZADD', log, flag, 'CH', unpack(items, i, last))
    else
      added = added + redis.call('ZADD', log, unpack(items, i, last))
    end
  end
  return added
end

-- Removes dead members among `count` (<= 64) ranks starting at `start` (wrapping), so expired values leave
-- the log. One EXISTS over all of them first: usually every one is alive.
local function sweep(size, start, count)
  if size == 0 then return end
  if count > size then count = size end
  start = start % size
  local members = redis.call('ZRANGE', log, start, start + count - 1)
  if #members < count then
    local more = redis.call('ZRANGE', log, 0, count - #members - 1)
    for i = 1, #more do members[#members + 1] = more[i] end
  end
  local keys = {}
  for i = 1, #members do keys[i] = base .. members[i] end
  if #keys == 0 or redis.call('EXISTS', unpack(keys)) == #keys then return end
  for i = 1, #members do
    if redis.call('EXISTS', keys[i]) == 0 then redis.call('ZREM', log, members[i]) end
  end
end

-- Evicts least recently used entries until the log holds at most max_size members. Returns the evicted
-- keys and the log's size afterwards.
local function evict(max_size)
  local gone = {}
  local size = redis.call('ZCARD', log)
  local excess = size - max_size
  if excess <= 0 then return gone, size end
  if excess > 1000 then excess = 1000 end
  local popped = redis.call('ZPOPMIN', log, excess)
  for i = 1, #popped, 2 do
    local key = base .. popped[i]
    if redis.call('DEL', key) == 1 then gone[#gone + 1] = key end
  end
  if #gone > 0 then redis.call('HINCRBY', stats, 'evictions', #gone) end
  return gone, size - #popped / 2
end

-- The PX argument for a ttl, false for `none` (no TTL), or nil when it is neither `none` nor a finite
-- number > 0 (at most 2^52 ms). Whole milliseconds with no grace keep the caller's text (see PERFORMANCE).
local function parse_ttl(value, unit, grace)
  if value == 'none' then return false end
  local ttl = finite(value)
  if ttl == nil or ttl <= 0 then return nil end
  local ms = math.ceil(unit == 'ms' and ttl or ttl * 1000) + grace
  -- Beyond 2^52 ms Redis would refuse the expire time mid-script, after the first write.
  if ms > 2 ^ 52 then return nil end
  if unit == 'ms' and grace == 0 and string.find(value, '^%d+$') then return value end
  return ms
end

-- The settings SET and MSET share, in one order from ARGV[at]: max_size, unit, grace_ms, channel, origin.
-- Returns a table, or nil and the error reply.
local function write_settings(at)
  local unit = ARGV[at + 1] or 's'
  if unit ~= 's' and unit ~= 'ms' then return nil, fail('unit must be s or ms') end
  local max_size = finite(ARGV[at])
  if max_size == nil or max_size < 1 or max_size ~= math.floor(max_size) then
    return nil, fail('max_size must be an integer >= 1')
  end
  local grace = optional_ms(ARGV[at + 2])
  if grace == nil then return nil, fail('grace_ms must be an integer >= 0') end
  return { max_size = max_size, unit = unit, grace = grace, channel = ARGV[at + 3], origin = ARGV[at + 4] }
end

-- Parses SET or MSET: the settings, the entry keys' last KEYS index, the ARGV index of the first value and
-- each entry's PX argument (false: no TTL). Returns nil and the error reply on bad input.
local function parse_write()
  local settings, err, last, first_value
  if op == 'SET' then
    if ARGV[3] == nil then return nil, fail('value missing') end
    settings, err = write_settings(5)
    if err then return nil, err end
    settings.token = ARGV[10]
    if settings.token == '' then settings.token = nil end
    if settings.token and #KEYS < 4 then return nil, fail('wrong number of keys: a lease token needs KEYS[4]') end
    last, first_value = 1, 3
  else
    settings, err = write_settings(3)
    if err then return nil, err end
    last, first_value = #KEYS, 8
    if #ARGV - first_value + 1 ~= 2 * (#KEYS - 2) then return nil, fail('wrong number of keys: one per value/ttl pair') end
  end
  err = check_entries(1, last)
  if err then return nil, err end
  local ttls = {}
  local n = op == 'SET' and 1 or #KEYS - 2
  for slot = 1, n do
    ttls[slot] = parse_ttl(ARGV[first_value + 2 * slot - 1], settings.unit, settings.grace)
    if ttls[slot] == nil then return nil, fail('ttl must be none or a finite number > 0 and at most 2^52 ms') end
  end
  settings.last, settings.first_value, settings.ttls, settings.n = last, first_value, ttls, n
  return settings
end

-- Writes the parsed entries, stamps them, evicts beyond max_size and sweeps; returns the eviction count.
local function apply_write(w)
  -- The first write: a stats hash of the wrong type fails the call here, with nothing written.
  redis.call('HINCRBY', stats, 'sets', w.n)
  if w.token then redis.call('DEL', KEYS[4]) end
  -- One tick per entry: the entries get consecutive clock values in KEYS order (a key given twice ends with
  -- the later one), stamped by one ZADD.
  local stamps = {}
  local slot = 0
  for i = 1, w.last do
    if i ~= 2 and i ~= 3 then
      slot = slot + 1
      local value = ARGV[w.first_value + 2 * (slot - 1)]
      if w.ttls[slot] then redis.call('SET', KEYS[i], value, 'PX', w.ttls[slot]) else redis.call('SET', KEYS[i], value) end
      stamps[2 * slot - 1] = clock + slot
      stamps[2 * slot] = member_of(KEYS[i])
    end
  end
  clock = clock + w.n
  zadd_all(nil, stamps)
  -- Every write checks the bound (one ZCARD when within it): a new member, a smaller max_size or members a
  -- hit put back after the log was lost can each push the log past it.
  local evicted, size = evict(w.max_size)
  -- A write that moves the clock past a multiple of 16 also sweeps 16 ranks from there (one ZRANGE and
  -- one EXISTS).
  if clock % 16 < w.n then sweep(size, clock, 16) end
  publish(w.channel, w.origin, 's', 1, w.last, evicted)
  return #evicted
end

if op == 'SET' or op == 'MSET' then
  local w, err = parse_write()
  if err then return err end
  if w.token and redis.call('GET', KEYS[4]) ~= w.token then
    -- Whoever waits for this value would wait out the lease: tell them it is not coming.
    publish(w.channel, w.origin, 'r', 1, 1)
    return -1
  end
  return apply_write(w)

elseif op == 'TOUCH' then
  local hits = finite(ARGV[3])
  if hits == nil or hits < 0 or hits ~= math.floor(hits) or hits > #KEYS - 3 then
    return fail('hits must be an integer from 0 to the number of entry keys after KEYS[3]')
  end
  -- Every key checked first, and the hits' members computed once, inline (see PERFORMANCE).
  local stamps = {}
  local find, sub, from = string.find, string.sub, #base + 1
  for i = 4, #KEYS do
    local key = KEYS[i]
    if from > 1 and find(key, base, 1, true) ~= 1 then
      return fail("entry key must start with the access log's prefix through its hash tag: " .. base)
    end
    if i - 3 <= hits then
      stamps[2 * i - 7] = clock + i - 3
      stamps[2 * i - 6] = from > 1 and sub(key, from) or key
    end
  end
  if hits > 0 then
    redis.call('HINCRBY', stats, 'hits', hits)
    -- Members the log lost while their entry survived go back in, with the stamp they were given.
    if zadd_all('XX', stamps) < hits then
      for i = 1, hits do
        if redis.call('EXISTS', KEYS[3 + i]) == 1 then redis.call('ZADD', log, stamps[2 * i - 1], stamps[2 * i]) end
      end
    end
  end
  if #KEYS > 3 + hits then
    redis.call('HINCRBY', stats, 'misses', #KEYS - 3 - hits)
    for i = 4 + hits, #KEYS do
      if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('ZREM', log, member_of(KEYS[i])) end
    end
  end
  return hits

elseif op == 'MGET' then
  local err = check_entries(1, #KEYS)
  if err then return err end
  local grace = optional_ms(ARGV[3])
  if grace == nil then return fail('grace_ms must be an integer >= 0') end
  local out = {}
  for i = 1, #KEYS do
    if i ~= 2 and i ~= 3 then
      local value, fresh = lookup(KEYS[i], member_of(KEYS[i]), grace, true)
      out[#out + 1] = value
      out[#out + 1] = fresh
    end
  end
  return out

elseif op == 'DEL' then
  local err = check_entries(1, 1)
  if err then return err end
  redis.call('ZREM', log, member_of(entry))
  local existed = redis.call('DEL', entry)
  if KEYS[4] then redis.call('DEL', KEYS[4]) end
  publish(ARGV[3], ARGV[4], 'd', 1, 1)
  return existed

elseif op == 'LEASE' then
  if #KEYS < 4 then return fail('wrong number of keys: LEASE needs the lease key as KEYS[4]') end
  local err = check_entries(1, 1)
  if err then return err end
  local grace, lease_ms, refresh = optional_ms(ARGV[3]), optional_ms(ARGV[5]), optional_ms(ARGV[6])
  local with_ttl = ARGV[7] == '1' or grace > 0 or refresh > 0
  if grace == nil then return fail('grace_ms must be an integer >= 0') end
  if lease_ms == nil or lease_ms < 1 then return fail('lease_ms must be an integer >= 1') end
  if refresh == nil then return fail('refresh_below_ms must be an integer >= 0') end
  if ARGV[4] == nil or ARGV[4] == '' then return fail('token missing') end
  local value, fresh = lookup(entry, member_of(entry), grace, with_ttl)
  if value and fresh > refresh then return { value, fresh, 0, 0 } end
  if redis.call('SET', KEYS[4], ARGV[4], 'NX', 'PX', lease_ms) then return { value, fresh, 1, lease_ms } end
  return { value, fresh, 0, redis.call('PTTL', KEYS[4]) }

elseif op == 'RELEASE' then
  if #KEYS < 4 then return fail('wrong number of keys: RELEASE needs the lease key as KEYS[4]') end
  if ARGV[3] == nil or ARGV[3] == '' then return fail('token missing') end
  if redis.call('GET', KEYS[4]) ~= ARGV[3] then return 0 end
  redis.call('DEL', KEYS[4])
  publish(ARGV[4], ARGV[5], 'r', 1, 1)
  return 1

elseif op == 'CLEAR' then
  local batch = finite(ARGV[3])
  if batch == nil or batch < 1 or batch > 1000 or batch ~= math.floor(batch) then
    return fail('batch must be an integer from 1 to 1000')
  end
  local members = redis.call('ZPOPMIN', log, batch)
  for i = 1, #members, 2 do redis.call('DEL', base .. members[i]) end
  local left = redis.call('ZCARD', log)
  if left == 0 then publish(ARGV[4], ARGV[5], 'c', 4, 3) end
  return left

elseif op == 'STATS' then
  local values = redis.call('HMGET', stats, 'sets', 'misses', 'hits', 'evictions')
  local sets, hits, misses = tonumber(values[1] or '0'), tonumber(values[3] or '0'), tonumber(values[2] or '0')
  sweep(redis.call('ZCARD', log), clock, 64)
  local lookups = hits + misses
  return {
    'hits', hits, 'misses', misses, 'sets', sets, 'evictions', tonumber(values[4] or '0'),
    'size', redis.call('ZCARD', log), 'hit_rate', string.format('%.4f', lookups == 0 and 0 or hits / lookups),
  }
end

return fail('unknown operation ' .. tostring(op) .. ': expected GET, SET, MSET, MGET, TOUCH, DEL, LEASE, RELEASE, CLEAR or STATS')
