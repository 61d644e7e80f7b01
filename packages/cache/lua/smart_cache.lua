--[==[
smart_cache.lua: an LRU-bounded cache with TTL and shared hit/miss statistics.

DATA
  Entries      one Redis string per entry (KEYS[1] is the entry being read or written), with a native
               PEXPIRE (or none, for ttl `none`): Redis itself drops values whose TTL passed, so nothing past
               its TTL is ever returned.
  Access log   KEYS[2], a ZSET with one member per entry, scored by a logical clock: each hit or write stamps
               its entry with the next clock value. The lowest score is the least recently used entry; a
               clock instead of wall time keeps the order exact when two calls share a timestamp.
               Member = the entry key, minus the prefix it shares with KEYS[2] through the hash tag when
               KEYS[2] has one (`{c}:log` + `{c}:e:k1` → `:e:k1`): this saves index memory, and the entry key
               is rebuilt as that prefix .. member on eviction. So when KEYS[2] has a hash tag, every entry
               key must start with KEYS[2]'s text up to and including its `}` (ERR otherwise).
  Stats        KEYS[3], a hash: clock, epoch, hits, misses, evictions. `clock` counts one per entry written
               and one per hit, so `sets` is clock - epoch - hits and a write updates one field. When the
               clock field is missing (the hash was deleted, expired, evicted or replaced by one without it)
               the next stamp continues from the log's highest score, so no entry is stamped below one
               already there: losing the hash restarts the counts, never the order; `epoch` is set then so
               that `sets` restarts too (or continues from a `sets` field the new hash holds).
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
  r lease released, c clear) so other processes can drop in-process copies and wake waiters.

ERRORS (all before the first write; nothing is written; each reads `ERR smart_cache: <what>`)
  ERR unknown operation, ERR current_time / ttl / max_size / grace_ms / lease_ms / batch / hits must be …,
  ERR value missing, ERR wrong number of keys, ERR entry key must share the access log's hash-tag prefix.
  A log or stats key of the wrong type (WRONGTYPE) fails the call before its first write too: every
  operation but RELEASE reads the log (or removes from it) before it writes anything, and writes the stats
  hash before any entry.

PERFORMANCE (the script's micro-optimisations, in one place; measured with INFO commandstats)
  Each operation is a section of the main chunk, and helpers only one section uses are defined inside it, so
  a call creates only the closures it runs. The clock is one HINCRBY that also counts the write (reading the
  log's top score cost twice as much, and a separate `sets` counter one call more); the log's size comes
  from one ZCARD before the writes plus what ZADD added. Batched writes and lookups stamp the log with one
  ZADD for many members, which is most of the saving over a call each. A whole-ms ttl with no grace is
  passed to PX as the caller's text: Redis turns a Lua number back into text for every call, which costs
  about a third of the SET itself. Bus messages are concatenated (cjson only for a key that needs escaping).
  Entry keys are checked against the log's prefix with a plain find (no string allocated).

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

-- A whole number of ms >= 0 (absent: 0), or nil.
local function optional_ms(value)
  if value == nil or value == '' then return 0 end
  local n = tonumber(value)
  if n == nil or n < 0 or n ~= math.floor(n) or n == math.huge then return nil end
  return n
end

do
  local now = tonumber(ARGV[2])
  if now == nil or now ~= now or now < 0 or now == math.huge then return fail('current_time must be a finite number >= 0') end
end
if #KEYS < 3 then return fail('wrong number of keys: expected at least 3') end

-- Prefix of the access log through its hash tag; entry keys must carry it and members drop it.
local base = ''
do
  local open = string.find(log, '{', 1, true)
  local close = open and string.find(log, '}', open + 1, true)
  if close and close > open + 1 then base = string.sub(log, 1, close) end
end
local BAD_PREFIX = "entry key must start with the access log's prefix through its hash tag: "

local function member_of(key)
  if base == '' then return key end
  -- A plain find, not a sub: comparing the prefix allocates no string (see PERFORMANCE).
  if string.find(key, base, 1, true) ~= 1 then return nil end
  return string.sub(key, #base + 1)
end

-- Advances the clock by n (n stamps: `written` entries written, the rest hits) and returns its new value.
-- A missing clock field (HINCRBY answers n) means the hash is new: continue from the log's highest stamp.
local function tick(n, written)
  local clock = redis.call('HINCRBY', stats, 'clock', n)
  if clock ~= n then return clock end
  local top = redis.call('ZREVRANGE', log, 0, 0, 'WITHSCORES')
  local high = math.floor(tonumber(top[2] or 0))
  if high > 0 then clock = high + n end
  -- `sets` (clock - epoch - hits) restarts at this call's writes, plus any `sets` the hash was given.
  local held = redis.call('HMGET', stats, 'hits', 'sets')
  local epoch = clock - tonumber(held[1] or 0) - tonumber(held[2] or 0) - written
  redis.call('HSET', stats, 'clock', clock, 'epoch', epoch)
  if held[2] then redis.call('HDEL', stats, 'sets') end
  return clock
end

-- JSON for a string and for a list of strings. Keys rarely need escaping, so one check over a whole list
-- decides between plain concatenation and cjson (see PERFORMANCE).
local function needs_escape(text)
  return string.find(text, '[%c"\\]') ~= nil
end

local function json_list(list)
  if #list == 0 then return '[]' end
  if needs_escape(table.concat(list)) then return cjson.encode(list) end
  return '["' .. table.concat(list, '","') .. '"]'
end

-- Publishes [origin, kind, [KEYS[first..last] but 2 and 3], [evicted…]] on channel, if one was given.
local function publish(channel, origin, kind, first, last, evicted)
  if channel == nil or channel == '' then return end
  local keys = {}
  for i = first, last do
    if i ~= 2 and i ~= 3 then keys[#keys + 1] = KEYS[i] end
  end
  origin = origin or ''
  if needs_escape(origin) then origin = cjson.encode(origin) else origin = '"' .. origin .. '"' end
  local message = '[' .. origin .. ',"' .. kind .. '",' .. json_list(keys) .. ',' .. json_list(evicted or {}) .. ']'
  redis.call('PUBLISH', channel, message)
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

-- ZADD (or ZREM, for a nil score list) of many members, 500 per call (unpack is bounded by Lua's stack).
-- With scores, returns the number of new members.
local function zadd_all(scores, members, flags)
  local added, items = 0, {}
  for from = 1, #members, 500 do
    local last = math.min(from + 499, #members)
    local n = 0
    for i = from, last do
      if scores then items[n + 1] = scores[i]; n = n + 1 end
      items[n + 1] = members[i]
      n = n + 1
    end
    if not scores then
      redis.call('ZREM', log, unpack(items, 1, n))
    elseif flags then
      added = added + redis.call('ZADD', log, flags, 'CH', unpack(items, 1, n))
    else
      added = added + redis.call('ZADD', log, unpack(items, 1, n))
    end
  end
  return added
end

if op == 'SET' or op == 'MSET' then
  -- SET: value and ttl in ARGV[3..4], the write settings from ARGV[5]; MSET: the settings from ARGV[3],
  -- then a value and ttl per entry key (KEYS[1], KEYS[4…]). Everything is checked before the first write.
  local at, first_value, last, n = 5, 3, 1, 1
  if op == 'SET' then
    if ARGV[3] == nil then return fail('value missing') end
  else
    at, first_value, last, n = 3, 8, #KEYS, #KEYS - 2
    if #ARGV - first_value + 1 ~= 2 * n then return fail('wrong number of keys: one per value/ttl pair') end
  end
  local unit = ARGV[at + 1] or 's'
  if unit ~= 's' and unit ~= 'ms' then return fail('unit must be s or ms') end
  local max_size = tonumber(ARGV[at])
  if max_size == nil or max_size < 1 or max_size ~= math.floor(max_size) or max_size == math.huge then
    return fail('max_size must be an integer >= 1')
  end
  local grace = optional_ms(ARGV[at + 2])
  if grace == nil then return fail('grace_ms must be an integer >= 0') end
  local channel, origin = ARGV[at + 3], ARGV[at + 4]
  local token = op == 'SET' and ARGV[10] or nil
  if token == '' then token = nil end
  if token and #KEYS < 4 then return fail('wrong number of keys: a lease token needs KEYS[4]') end

  -- The PX argument of a ttl other than plain digits: false for `none` (no TTL), nil when it is not a
  -- finite number > 0 of at most 2^52 ms (Redis would refuse the expire time mid-script).
  local function parse_ttl(text)
    if text == 'none' then return false end
    local ttl = tonumber(text)
    if ttl == nil or ttl ~= ttl or ttl <= 0 then return nil end
    local ms = math.ceil(unit == 'ms' and ttl or ttl * 1000) + grace
    if ms > 2 ^ 52 then return nil end
    return ms
  end
  -- Each entry's KEYS index, member and PX argument (false: no TTL). A whole-ms ttl with no grace is passed
  -- as the caller's text (see PERFORMANCE): up to 15 digits it is below 2^52 ms.
  local slots, members, pxs = {}, {}, {}
  local ms_text = unit == 'ms' and grace == 0
  for slot = 1, n do
    local i = slot == 1 and 1 or slot + 2
    local member = member_of(KEYS[i])
    if member == nil then return fail(BAD_PREFIX .. base) end
    local text = ARGV[first_value + 2 * slot - 1] or ''
    local px = text
    if not (ms_text and #text <= 15 and string.find(text, '^[1-9]%d*$')) then
      px = parse_ttl(text)
      if px == nil then return fail('ttl must be none or a finite number > 0 and at most 2^52 ms') end
    end
    slots[slot], members[slot], pxs[slot] = i, member, px
  end

  if token and redis.call('GET', KEYS[4]) ~= token then
    -- Whoever waits for this value would wait out the lease: tell them it is not coming.
    publish(channel, origin, 'r', 1, 1)
    return -1
  end
  -- The log's size, read before any write (a log of the wrong type fails here); then the clock, the first
  -- write (a stats hash of the wrong type fails there, with nothing written).
  local size = redis.call('ZCARD', log)
  local clock = tick(n, n)
  if token then redis.call('DEL', KEYS[4]) end
  for slot = 1, n do
    local key, value = KEYS[slots[slot]], ARGV[first_value + 2 * slot - 2]
    if pxs[slot] then redis.call('SET', key, value, 'PX', pxs[slot]) else redis.call('SET', key, value) end
  end
  -- The entries get consecutive clock values in KEYS order (a key given twice ends with the later one).
  if n == 1 then
    size = size + redis.call('ZADD', log, clock, members[1])
  else
    local stamps = {}
    for slot = 1, n do stamps[slot] = clock - n + slot end
    size = size + zadd_all(stamps, members)
  end
  -- Every write checks the bound: a new member, a smaller max_size or members a hit put back after the log
  -- was lost can each push the log past it. At most 1000 evictions per call.
  local evicted = {}
  local excess = math.min(size - max_size, 1000)
  if excess > 0 then
    local popped = redis.call('ZPOPMIN', log, excess)
    for i = 1, #popped, 2 do
      local key = base .. popped[i]
      if redis.call('DEL', key) == 1 then evicted[#evicted + 1] = key end
    end
    if #evicted > 0 then redis.call('HINCRBY', stats, 'evictions', #evicted) end
    size = size - #popped / 2
  end
  -- A write that moves the clock past a multiple of 16 also sweeps 16 ranks from there.
  if clock % 16 < n then sweep(size, clock, 16) end
  publish(channel, origin, 's', 1, last, evicted)
  return #evicted

elseif op == 'GET' or op == 'MGET' or op == 'LEASE' then
  -- Lookups: each counts a hit or a miss; hits move to the MRU end, members of missing entries leave.
  local grace = optional_ms(ARGV[3])
  if grace == nil then return fail('grace_ms must be an integer >= 0') end
  local last = op == 'MGET' and #KEYS or 1
  for i = 1, last do
    if i ~= 2 and i ~= 3 and member_of(KEYS[i]) == nil then return fail(BAD_PREFIX .. base) end
  end
  local with_ttl, lease_ms, refresh = op == 'MGET' or ARGV[3] ~= nil, 0, 0
  if op == 'LEASE' then
    if #KEYS < 4 then return fail('wrong number of keys: LEASE needs the lease key as KEYS[4]') end
    lease_ms, refresh = optional_ms(ARGV[5]), optional_ms(ARGV[6])
    if lease_ms == nil or lease_ms < 1 then return fail('lease_ms must be an integer >= 1') end
    if refresh == nil then return fail('refresh_below_ms must be an integer >= 0') end
    if ARGV[4] == nil or ARGV[4] == '' then return fail('token missing') end
    with_ttl = ARGV[7] == '1' or grace > 0 or refresh > 0
  end
  -- Read the log first: a log of the wrong type fails here, before any write.
  redis.call('ZCARD', log)
  -- fresh_ms is 1 without with_ttl (the TTL is not read: any value found is fresh), 2^52 with no TTL.
  local out, hits, gone = {}, {}, {}
  local misses = 0
  for i = 1, last do
    if i ~= 2 and i ~= 3 then
      local key = KEYS[i]
      local value, fresh = redis.call('GET', key), 0
      if not value then
        misses = misses + 1
        gone[#gone + 1] = member_of(key)
      else
        fresh = 1
        if with_ttl then
          local pttl = redis.call('PTTL', key)
          fresh = pttl < 0 and 2 ^ 52 or pttl - grace
        end
        -- A stale value (grace only) is a miss that leaves the order alone.
        if fresh <= 0 and grace > 0 then misses = misses + 1 else hits[#hits + 1] = member_of(key) end
      end
      out[#out + 1] = value
      out[#out + 1] = fresh
    end
  end
  if misses > 0 then redis.call('HINCRBY', stats, 'misses', misses) end
  if #hits > 0 then
    redis.call('HINCRBY', stats, 'hits', #hits)
    local clock = tick(#hits, 0)
    local stamps = {}
    for j = 1, #hits do stamps[j] = clock - #hits + j end
    zadd_all(stamps, hits)
  end
  if #gone > 0 then zadd_all(nil, gone) end
  if op == 'MGET' then return out end
  if op == 'GET' then
    if ARGV[3] == nil then return out[1] end
    return out
  end
  local value, fresh = out[1], out[2]
  if value and fresh > refresh then return { value, fresh, 0, 0 } end
  if redis.call('SET', KEYS[4], ARGV[4], 'NX', 'PX', lease_ms) then return { value, fresh, 1, lease_ms } end
  return { value, fresh, 0, redis.call('PTTL', KEYS[4]) }

elseif op == 'TOUCH' then
  local hits = tonumber(ARGV[3])
  if hits == nil or hits < 0 or hits ~= math.floor(hits) or hits > #KEYS - 3 then
    return fail('hits must be an integer from 0 to the number of entry keys after KEYS[3]')
  end
  -- Every key checked first, and each member computed once.
  local members = {}
  for i = 4, #KEYS do
    members[i - 3] = member_of(KEYS[i])
    if members[i - 3] == nil then return fail(BAD_PREFIX .. base) end
  end
  redis.call('ZCARD', log)
  if hits > 0 then
    redis.call('HINCRBY', stats, 'hits', hits)
    local clock = tick(hits, 0)
    local stamps, stamped = {}, {}
    for j = 1, hits do stamps[j], stamped[j] = clock - hits + j, members[j] end
    -- Members the log lost while their entry survived go back in, with the stamp they were given.
    if zadd_all(stamps, stamped, 'XX') < hits then
      for j = 1, hits do
        if redis.call('EXISTS', KEYS[3 + j]) == 1 then redis.call('ZADD', log, stamps[j], stamped[j]) end
      end
    end
  end
  if #KEYS > 3 + hits then
    redis.call('HINCRBY', stats, 'misses', #KEYS - 3 - hits)
    for j = hits + 1, #members do
      if redis.call('EXISTS', KEYS[3 + j]) == 0 then redis.call('ZREM', log, members[j]) end
    end
  end
  return hits

elseif op == 'DEL' then
  local member = member_of(entry)
  if member == nil then return fail(BAD_PREFIX .. base) end
  redis.call('ZREM', log, member)
  local existed = redis.call('DEL', entry)
  if KEYS[4] then redis.call('DEL', KEYS[4]) end
  publish(ARGV[3], ARGV[4], 'd', 1, 1)
  return existed

elseif op == 'RELEASE' then
  if #KEYS < 4 then return fail('wrong number of keys: RELEASE needs the lease key as KEYS[4]') end
  if ARGV[3] == nil or ARGV[3] == '' then return fail('token missing') end
  if redis.call('GET', KEYS[4]) ~= ARGV[3] then return 0 end
  redis.call('DEL', KEYS[4])
  publish(ARGV[4], ARGV[5], 'r', 1, 1)
  return 1

elseif op == 'CLEAR' then
  local batch = tonumber(ARGV[3])
  if batch == nil or batch < 1 or batch > 1000 or batch ~= math.floor(batch) then
    return fail('batch must be an integer from 1 to 1000')
  end
  local members = redis.call('ZPOPMIN', log, batch)
  for i = 1, #members, 2 do redis.call('DEL', base .. members[i]) end
  local left = redis.call('ZCARD', log)
  if left == 0 then publish(ARGV[4], ARGV[5], 'c', 4, 3) end
  return left

elseif op == 'STATS' then
  local values = redis.call('HMGET', stats, 'clock', 'epoch', 'hits', 'misses', 'evictions', 'sets')
  local clock, hits, misses = tonumber(values[1] or 0), tonumber(values[3] or 0), tonumber(values[4] or 0)
  -- Without a clock (no write since the hash was made) a `sets` field it was given is the count.
  local sets = values[1] and clock - tonumber(values[2] or 0) - hits or tonumber(values[6] or 0)
  sweep(redis.call('ZCARD', log), clock, 64)
  local lookups = hits + misses
  return {
    'hits', hits, 'misses', misses, 'sets', sets, 'evictions', tonumber(values[5] or 0),
    'size', redis.call('ZCARD', log), 'hit_rate', string.format('%.4f', lookups == 0 and 0 or hits / lookups),
  }
end

return fail('unknown operation ' .. tostring(op) .. ': expected GET, SET, MSET, MGET, TOUCH, DEL, LEASE, RELEASE, CLEAR or STATS')
