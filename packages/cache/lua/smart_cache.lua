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
  Tags         KEYS[4], the tag index: a ZSET of `<tag> NUL <member>` (score 0), so the entries of one tag are
               one lexicographic range; KEYS[5], a hash member → its tags joined by NUL. An entry's write
               replaces its tags; whatever removes a member from the log (a miss, eviction, the sweep, DEL,
               DELTAG, CLEAR) removes its tags too, so the index never keeps pairs of entries the log no
               longer lists. Tags are 1 to 256 bytes without NUL, at most 16 per entry.
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
  PUT, MPUT, MGET, MSET, TOUCH, DEL, LEASE, RELEASE, CLEAR, the bus messages) is internal to @cyredis/cache, whose
  src/protocol.ts is the only code that builds or reads it; it may change with the package version.

KEYS (seed contract: 3 keys)
  KEYS[1] entry key   KEYS[2] access-log ZSET   KEYS[3] stats hash
  KEYS[4] tag index ZSET   KEYS[5] tags hash: optional for the seed's GET, SET and STATS (with 3 keys no
          tags are kept), required by every other operation
  KEYS[6] (LEASE/RELEASE and SET with a lease token) the entry's lease key; (DEL) the lease of KEYS[1], then
          each further entry key followed by its lease key
  KEYS[6..] (MGET/MSET/TOUCH) further entry keys
  UNDECLARED KEYS (the only ones): eviction (SET/PUT/MSET), CLEAR, DELTAG and the expired-member sweep
  (SET/PUT/MSET/STATS) touch entry keys rebuilt from access-log or tag-index members, which no caller can know
  in advance: the LRU victim and a tag's entries are chosen inside the script. Redis and Valkey run this as is when every key of one cache shares a hash tag
  (`{c}:e:<k>`, `{c}:log`, `{c}:stats`, so they share a slot); Dragonfly needs
  `--default_lua_flags=allow-undeclared-keys`, and services that enforce declared keys refuse these calls.

ARGV (ARGV[1] is the operation; current_time is a number, validated, and used for nothing else: order
comes from the logical clock and expiry from Redis's own clock, so client clocks never matter)
  GET     <current_time> [grace_ms]
          → the value, or nil on a miss.
          With grace_ms (internal): → {value or nil, fresh_ms}; fresh_ms = PTTL - grace_ms. An entry
          with fresh_ms <= 0 is stale: returned for grace serving but counted as a miss, LRU order untouched.
  SET     <current_time> <value> <ttl_seconds> <max_size> [unit: s|ms] [grace_ms] [channel] [origin] [lease_token] [tags]
          (after the seed's four: the write settings, in the order MSET uses too; tags joined by NUL)
          Stores value for ttl (+ grace_ms) and evicts least recently used entries so at most max_size stay.
          ttl `none` stores it without a TTL: it stays until the LRU evicts it or it is deleted.
          → number of entries evicted; -1 when lease_token was given and KEYS[6] no longer holds it
          (a delete, a newer lease or the lease key's loss won), in which case nothing is written and, with
          a channel, a lease-released message wakes the callers waiting for the value.
  PUT     <current_time> <max_size> <channel> <origin> <value> <ttl_ms> [tags] → number of entries evicted:
          the client's lone `set`, a one-entry MSET in ms without grace (tags as MSET's, absent or '' for
          none), which the script runs on its fast path when the entry's tags stay as they were (see
          PERFORMANCE). KEYS as MSET's.
  MPUT    <current_time> <max_size> <channel> <origin> <ttl_ms> <value>… for KEYS[1], KEYS[6]… → number of
          entries evicted: the client's batch of writes that share one ttl and carry no tags, an MSET in ms
          without grace with that ttl (which may be `none`) and tags '' for every entry (each entry's old tags
          go).
  MSET    <current_time> <max_size> <unit> <grace_ms> <channel> <origin> (<value> <ttl> <tags>)… for KEYS[1],
          KEYS[6]… → number of entries evicted. The settings are SET's, in SET's order; a ttl may be `none`;
          tags '' for none.
  MGET    <current_time> <grace_ms> → {value or nil, fresh_ms, …} for KEYS[1], KEYS[6], KEYS[7]…
  TOUCH   <current_time> <hits> [<hit_count> <miss_count>] → hit_count, for the entry keys KEYS[6..]. Records
          lookups a client made with plain GET/MGET: the first <hits> entries (in the order of their last
          lookup) were hits and move to the MRU end; the rest were misses and leave the log unless their entry
          exists again. hit_count and miss_count are how many lookups hit and missed (a key looked up twice
          is given once; absent: one per key); the statistics count those. KEYS[1] is unused.
  DEL     <current_time> [channel] [origin] → how many of the entries existed; also drops their leases and tags.
  HAS     <current_time> <grace_ms> → 1 if KEYS[1] holds a fresh value (more than grace_ms to live, or no TTL),
          else 0; counts nothing and leaves the order alone.
  DELTAG  <current_time> <tag> <batch> [channel] [origin] → {removed, left, key…}: removes up to batch (≤ 1000)
          entries carrying tag, with all their tags; removed = how many still had a value (their keys
          follow), left = pairs of the tag still in the index (call again until 0).
  LEASE   <current_time> <grace_ms> <token> <lease_ms> <refresh_below_ms> [with_ttl: 0|1]
          → {value or nil, fresh_ms, acquired 1|0, lease_pttl}. A hit is fresh_ms > 0; when there is no hit,
          or fresh_ms <= refresh_below_ms, the lease KEYS[6] is taken with SET NX PX lease_ms if free.
          The TTL is read only with with_ttl 1, grace_ms > 0 or refresh_below_ms > 0 (else fresh_ms is 1);
          lease_pttl is 0 on a hit. An entry without a TTL has fresh_ms 2^52 (never stale).
  RELEASE <current_time> <token> [channel] [origin] → 1 if the lease was held by token and dropped, else 0.
  CLEAR   <current_time> <batch> [channel] [origin] → entries still left (call again until 0).
  STATS   <current_time>
          → {'hits', n, 'misses', n, 'sets', n, 'evictions', n, 'size', n, 'hit_rate', '0.7500'}
          (size = access-log members; hit_rate = hits / (hits + misses) as a string, '0.0000' before any
          lookup).
  With a channel, writes PUBLISH a JSON array [origin, op, [key…], [evicted key…]] (op: s set, d delete or
  deleted by tag, r lease released, c clear; an empty list may come as {}) so other processes can drop
  in-process copies and wake waiters.

ERRORS (all before the first write; nothing is written; each reads `ERR smart_cache: <what>`)
  ERR unknown operation, ERR current_time / ttl / max_size / grace_ms / lease_ms / batch / hits must be …,
  ERR value missing, ERR PUT takes 7 or 8 arguments, ERR wrong number of keys, ERR entry key must share
  the access log's hash-tag prefix, ERR tags must be …, ERR tag must be ….
  A log or stats key of the wrong type (WRONGTYPE) fails the call before its first write too: every
  operation but RELEASE, HAS and DELTAG reads the log (or removes from it) before it writes anything, and
  writes the stats hash before any entry; a write that changes tags reads both tag keys first. (PUT's fast
  path advances the clock, then stamps the log before it writes the entry: on a WRONGTYPE it puts the clock
  back and returns the error, so that call too leaves everything as it was.)

PERFORMANCE (the script's micro-optimisations, in one place; measured with INFO commandstats and with
callgrind instruction counts of redis-server)
  The chunk re-runs on every call, so every closure and table it builds is paid per call. Each operation is a
  section of the main chunk, helpers only one section uses are defined inside it, and the helpers for
  batches, tags, evictions and the sweep are built by load_helpers() only when a call needs them. The most
  common write, a client's lone `set`, is its own operation, PUT, with a fast path at the very top of the
  chunk: 7 arguments (8 with tags) instead of a one-entry MSET's 10 (each argument costs Redis about 1.2k
  instructions to hand to Lua), all input checked by two patterns (each library call costs about 1 to 2k
  instructions, whatever it does, and every byte Lua allocates about 11 more in garbage collection: the
  fewer calls and new strings the better), one HGET of the entry's tags instead of the general HMGET, no
  tables, and a bus message concatenated rather than built by cjson (whose table and encoder cost about 7k;
  the key pattern admits only text that needs no JSON escaping, so the two agree). A write that keeps the
  entry's tags takes it too. Redis 7.0, 1 KB value, with the sweep every 16th write: about 117k
  instructions per untagged `set` as a one-entry MSET, 108k as PUT (175k and 112k with two tags it keeps); the
  bare calls cost about 40k and the EVALSHA with its keys and arguments about 42k. The clock is one HINCRBY
  that also counts the write (reading the log's top score cost twice as much, and a separate `sets` counter
  one call more); the log's size comes from one ZCARD before the writes plus what ZADD added, except on
  PUT's fast path, which reads it only when its ZADD added a member (a rewrite does not change the size) or
  the write is a sweep's turn: about 99k -> 95k instructions per rewrite of a 1 KB entry, the clock's
  closure (tick, needed only for a new stats hash) no longer built there included. On the sweep's turn the
  fast path checks the 16 ranks itself (one ZRANGE, one EXISTS) when they need no wrap, and goes on to the
  general write only to remove what expired: its helpers cost about 33k more per turn, about 2k per write
  (91k -> 89k per rewrite in a log of 1024 entries). Batched writes and lookups stamp the log with one ZADD
  for many members, which is most of the saving over a call each. A batch checks a ttl text only when it
  differs from the entry before's (a batch's entries usually share one): 48.9k -> 47.6k instructions per
  entry of a 32-entry MSET of 1 KB values. A batch whose entries share a ttl and carry no tags is an MPUT,
  which passes the ttl once and no tags: two arguments fewer per entry, 47.6k -> 46.3k. A write checks an
  entry's tags text only where it differs from the one the entry holds (which was checked when it was
  written), and rewrites the tag index only then: 60.4k -> 48.9k per entry of a 32-entry MSET that rewrites
  1 KB entries with the two tags they hold. A whole-ms ttl with no grace is passed to PX as the caller's
  text: Redis turns a Lua number back into text for every call, which costs about a third of the SET itself.
  Entry keys are checked against the log's prefix with a plain find (no string allocated). TOUCH is given each
  key once, at its last lookup, with the lookups' counts: with keys drawn Zipf(1) over 2,000 entries, 64 in
  flight, about 12.2k -> 8.2k instructions per plain read (the read and its share of TOUCH). Tags cost an
  untagged write one read of the tags hash per call (about 0.5 µs; a missing hash is the cheapest case).

COMPLEXITY
  GET/DEL/LEASE/RELEASE O(log N); SET and PUT O(log N + E·log N) for E evictions (E ≤ 1000 per call: shrinking
  max_size by more than that is absorbed over the following SETs; a PUT rewriting an entry the log holds
  adds no member and evicts only on its sweep turn, every 16th write); MGET/MSET/MPUT O(K·log N) for K keys;
  CLEAR and DELTAG O(batch·(T + 1)·log N) with batch ≤ 1000 and T tags per entry (≤ 16); STATS O(log N + 64);
  TOUCH O(M·log N) for M entry keys; HAS O(1). Every write and removal also reads the tags hash once.
]==]

local op = ARGV[1]
local entry, log, stats = KEYS[1], KEYS[2], KEYS[3]

-- Fast path (see PERFORMANCE): PUT, a client's lone `set`, runs before anything else is set up. Two
-- patterns check all of its input at once: the entry key with its prefix through the hash tag (which the
-- log must share), and current_time, max_size, ttl and origin (digits, then printable ASCII). `[]-~ -!#-[]`
-- is printable ASCII but `"` and `\`, so the bus message needs no encoder; the prefix's two classes also
-- leave out `{` (before the tag) and `}` (inside it), as the general path finds the tag. Input they refuse
-- (a key without a hash tag, say), an entry whose tags change (found before any write) and a write that
-- must evict or sweep go on to the general write below, which checks everything again. A tags text the
-- entry already holds was checked by the write that stored it (only this script writes the tags hash).
local written -- {size, max_size, clock} of a fast-path write whose evictions and sweep are still to do
if op == 'PUT' and (#ARGV == 7 or #ARGV == 8) and #KEYS == 5 then
  local now, max_text, origin, ttl = ARGV[2], ARGV[3], ARGV[5], ARGV[7]
  local prefix, member = string.match(entry, '^([]-z -!#-[|~]*{[]-| -!#-[~]+})([]-~ -!#-[]*)$')
  if member and #now <= 15 and #max_text <= 15 and #ttl <= 15 and string.sub(log, 1, #prefix) == prefix
    and string.find(now .. ',' .. max_text .. ',' .. ttl .. ',' .. origin, '^%d+,[1-9]%d*,[1-9]%d*,[]-~ -!#-[]*$') then
    -- The entry keeps the tags it had (none, or a text a write checked when it stored it): nothing to retag.
    if (redis.call('HGET', KEYS[5], member) or '') == (ARGV[8] or '') then
      local clock = redis.call('HINCRBY', stats, 'clock', 1)
      if clock == 1 then
        -- A new clock restarts from the log's stamps (tick, below): put back, for the general write.
        redis.call('HDEL', stats, 'clock')
      else
        -- The log is stamped before the value is written: a log of the wrong type fails the call before
        -- the entry is written, and the clock is put back, so nothing has changed.
        local added = redis.pcall('ZADD', log, clock, member)
        if added ~= 0 and added ~= 1 then
          redis.call('HINCRBY', stats, 'clock', -1)
          return added
        end
        redis.call('SET', entry, ARGV[6], 'PX', ttl)
        -- Only a new member changes the log's size; the sweep (every 16th write) reads it too.
        local size = (added == 1 or clock % 16 == 0) and redis.call('ZCARD', log)
        local max_size = size and max_text + 0
        local done = not size or size <= max_size and clock % 16 ~= 0
        if not done and size <= max_size then
          -- The sweep's turn with nothing to evict: its check (sweep, below) of the 16 ranks from clock % size,
          -- when they need no wrap. All alive (the usual case) ends the call here; else the general path
          -- sweeps them.
          local start = clock % size
          if start + 16 <= size then
            local keys = redis.call('ZRANGE', log, start, start + 15)
            for i = 1, #keys do keys[i] = prefix .. keys[i] end
            done = #keys == 16 and redis.call('EXISTS', unpack(keys)) == 16
          end
        end
        if done then
          local channel = ARGV[4]
          if channel ~= '' then redis.call('PUBLISH', channel, '["' .. origin .. '","s",["' .. entry .. '"],[]]') end
          return 0
        end
        written = { size, max_size, clock }
      end
    end
  end
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

local function fail(message)
  return redis.error_reply('ERR smart_cache: ' .. message)
end

do
  local now = tonumber(ARGV[2])
  if now == nil or now ~= now or now < 0 or now == math.huge then return fail('current_time must be a finite number >= 0') end
end
-- Prefix of the access log through its hash tag; entry keys must carry it and members drop it.
local base = ''
do
  -- (`log` may be missing here: the key count is checked below.)
  local open = log and string.find(log, '{', 1, true)
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

-- Publishes [origin, kind, [key…], [evicted key…]] on channel, if one was given. (cjson, a C encoder, beats
-- any check-and-concatenate in Lua: scanning 32 keys for characters to escape took 5 times as long.)
local function publish(channel, origin, kind, keys, evicted)
  if channel == nil or channel == '' then return end
  redis.call('PUBLISH', channel, cjson.encode({ origin or '', kind, keys, evicted or {} }))
end

-- A whole number of ms >= 0 (absent: 0), or nil.
local function optional_ms(value)
  if value == nil or value == '' then return 0 end
  local n = tonumber(value)
  if n == nil or n < 0 or n ~= math.floor(n) or n == math.huge then return nil end
  return n
end

-- The seed's GET, SET and STATS take 3 keys (and then keep no tags); every call may pass the tag index and
-- the entries' tags as KEYS[4] and KEYS[5], and the other operations must.
local UNKNOWN = 'unknown operation %s: expected GET, SET, PUT, MPUT, MSET, MGET, TOUCH, DEL, LEASE, RELEASE, HAS, DELTAG, CLEAR or STATS'
local tag_index, tag_of, extra = nil, nil, 4
if #KEYS >= 5 then
  tag_index, tag_of, extra = KEYS[4], KEYS[5], 6
end
do
  -- Keys each operation needs (an unknown one falls through to its error at the end of the script).
  local seed = op == 'GET' or op == 'SET' or op == 'STATS'
  local need = seed and 3 or (op == 'DEL' or op == 'LEASE' or op == 'RELEASE') and 6 or 5
  if #KEYS < need or #KEYS == 4 then
    if not string.find(' PUT MPUT MSET MGET TOUCH DEL LEASE RELEASE HAS DELTAG CLEAR ', ' ' .. tostring(op) .. ' ', 1, true) and not seed then
      return fail(string.format(UNKNOWN, tostring(op)))
    end
    return fail('wrong number of keys: ' .. op .. ' takes ' .. (seed and '3, or at least 5' or 'at least ' .. need))
  end
end

-- The entry keys of a call: KEYS[1], then every `step`-th key from KEYS[start].
local function entry_keys(start, step)
  local keys = { entry }
  for i = start, #KEYS, step do keys[#keys + 1] = KEYS[i] end
  return keys
end

-- Helpers for batches, tags, evictions and the sweep. A one-entry untagged write needs none of them, and the
-- chunk re-runs on every call, so they are built only when a section first needs one (see PERFORMANCE).
local chunked, zadd_all, tags_in, untag, sweep, check_tags
local function load_helpers()
  if chunked then return end
  -- Runs redis.call(head…, items…) over `items`, up to 1000 per call (unpack is bounded by Lua's stack; an
  -- even count keeps score/member pairs together); returns the sum of the replies, 0 for no items.
  chunked = function(head, items)
    local total = 0
    for from = 1, #items, 1000 do
      local args = { unpack(head) }
      for i = from, math.min(from + 999, #items) do args[#args + 1] = items[i] end
      total = total + redis.call(unpack(args))
    end
    return total
  end

  -- ZADD of members[1..count] (count: all of them by default) into `key`, 500 pairs per call, member i
  -- scored first + i (consecutive clock stamps; 0 without first): returns the number of new members, or
  -- with `flags` {'XX', 'CH'} the number of members whose score changed. (Stamps computed here, not kept
  -- in a table of their own: TOUCH stamps up to 256 members per call.)
  zadd_all = function(key, first, members, flags, count)
    local total = 0
    count = count or #members
    for from = 1, count, 500 do
      local args = { 'ZADD', key }
      if flags then args[3], args[4] = flags[1], flags[2] end
      local n = #args
      for i = from, math.min(from + 499, count) do
        args[n + 1], args[n + 2] = first and first + i or 0, members[i]
        n = n + 2
      end
      total = total + redis.call(unpack(args))
    end
    return total
  end

  -- The tags in a tags text (joined by NUL), in order.
  tags_in = function(text)
    local tags = {}
    if text then for tag in string.gmatch(text, '[^%z]+') do tags[#tags + 1] = tag end end
    return tags
  end

  -- Drops the tags of `members` (entries that are gone): their tag-index pairs and their field in tag_of.
  untag = function(members)
    if tag_of == nil or #members == 0 then return end
    local pairs_, fields = {}, {}
    for from = 1, #members, 500 do
      local last = math.min(from + 499, #members)
      local held = redis.call('HMGET', tag_of, unpack(members, from, last))
      for i = from, last do
        local text = held[i - from + 1]
        if text then
          fields[#fields + 1] = members[i]
          for _, tag in ipairs(tags_in(text)) do pairs_[#pairs_ + 1] = tag .. '\0' .. members[i] end
        end
      end
    end
    if #fields == 0 then return end
    chunked({ 'ZREM', tag_index }, pairs_)
    chunked({ 'HDEL', tag_of }, fields)
  end

  -- Removes dead members among `count` (<= 64) ranks starting at `start` (wrapping), so expired values leave
  -- the log (and their tags the tag index). One EXISTS over all of them first: usually every one is alive.
  sweep = function(size, start, count)
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
    local dead = {}
    for i = 1, #members do
      if redis.call('EXISTS', keys[i]) == 0 then dead[#dead + 1] = members[i] end
    end
    chunked({ 'ZREM', log }, dead)
    untag(dead)
  end

  -- Whether a (non-empty) tags text is 1 to 16 tags of 1 to 256 bytes joined by NUL.
  check_tags = function(text)
    local count = 0
    for tag in string.gmatch(text .. '\0', '([^%z]*)%z') do
      count = count + 1
      if #tag == 0 or #tag > 256 or count > 16 then return false end
    end
    return true
  end
end

local BAD_TAGS = 'tags must be up to 16 tags of 1 to 256 bytes, joined by NUL'
local BAD_TTL = 'ttl must be none or a finite number > 0 and at most 2^52 ms'

-- Every other operation uses the helpers on most calls; the writes load them where they need one.
if op ~= 'SET' and op ~= 'PUT' and op ~= 'MSET' and op ~= 'MPUT' then load_helpers() end

if op == 'SET' or op == 'PUT' or op == 'MSET' or op == 'MPUT' then
  -- What every write ends with, once its entries and log stamps are written (`size`: the log's size now):
  -- evictions down to max_size, the sweep, the bus message; returns the number of entries evicted.
  local function settle(size, max_size, clock, n, keys, channel, origin)
    -- Every write checks the bound: a new member, a smaller max_size or members a hit put back after the log
    -- was lost can each push the log past it. At most 1000 evictions per call.
    local evicted = {}
    local excess = math.min(size - max_size, 1000)
    if excess > 0 then
      load_helpers()
      local popped = redis.call('ZPOPMIN', log, excess)
      local victims = {}
      for i = 1, #popped, 2 do
        victims[#victims + 1] = popped[i]
        local key = base .. popped[i]
        if redis.call('DEL', key) == 1 then evicted[#evicted + 1] = key end
      end
      untag(victims)
      if #evicted > 0 then redis.call('HINCRBY', stats, 'evictions', #evicted) end
      size = size - #victims
    end
    -- A write that moves the clock past a multiple of 16 also sweeps 16 ranks from there.
    if clock % 16 < n then
      load_helpers()
      sweep(size, clock, 16)
    end
    publish(channel, origin, 's', keys, evicted)
    return #evicted
  end

  if written then return settle(written[1], written[2], written[3], 1, { entry }, ARGV[4], ARGV[5]) end

  -- SET: value and ttl in ARGV[3..4], the write settings from ARGV[5], a lease token in ARGV[10] and tags in
  -- ARGV[11]; MSET: the settings from ARGV[3], then value, ttl and tags per entry key (KEYS[1], KEYS[6…]);
  -- PUT: max_size, channel and origin in ARGV[3..5] (unit ms, no grace), value, ttl and tags in ARGV[6..8];
  -- MPUT: PUT's settings, the one ttl in ARGV[6], then a value per entry key.
  -- The value of entry `slot` is ARGV[first_value + stride * (slot - 1)].
  -- Everything is checked before the first write.
  local first_value, stride, n = 3, 0, 1
  local max_text, unit, grace_text, channel, origin
  if op == 'SET' then
    if ARGV[3] == nil then return fail('value missing') end
    max_text, unit, grace_text, channel, origin = ARGV[5], ARGV[6] or 's', ARGV[7], ARGV[8], ARGV[9]
  elseif op == 'PUT' then
    if #ARGV < 7 or #ARGV > 8 then return fail('PUT takes 7 or 8 arguments: PUT current_time max_size channel origin value ttl_ms [tags]') end
    first_value = 6
    max_text, unit, grace_text, channel, origin = ARGV[3], 'ms', '0', ARGV[4], ARGV[5]
  elseif op == 'MPUT' then
    first_value, stride, n = 7, 1, #KEYS - extra + 2
    if #ARGV - first_value + 1 ~= n then return fail('wrong number of keys: one per value') end
    max_text, unit, grace_text, channel, origin = ARGV[3], 'ms', '0', ARGV[4], ARGV[5]
  else
    first_value, stride, n = 8, 3, #KEYS - extra + 2
    if #ARGV - first_value + 1 ~= 3 * n then return fail('wrong number of keys: one per value/ttl/tags triple') end
    max_text, unit, grace_text, channel, origin = ARGV[3], ARGV[4] or 's', ARGV[5], ARGV[6], ARGV[7]
  end
  if unit ~= 's' and unit ~= 'ms' then return fail('unit must be s or ms') end
  local max_size = tonumber(max_text)
  if max_size == nil or max_size < 1 or max_size ~= math.floor(max_size) or max_size == math.huge then
    return fail('max_size must be an integer >= 1')
  end
  local grace = optional_ms(grace_text)
  if grace == nil then return fail('grace_ms must be an integer >= 0') end
  local token = op == 'SET' and ARGV[10] or nil
  if token == '' then token = nil end
  if token and tag_of == nil then return fail('wrong number of keys: a lease token needs the lease key as KEYS[6]') end

  -- Each entry's key, member, PX argument (false: no TTL) and tags. A whole-ms ttl with no grace is passed
  -- as the caller's text (see PERFORMANCE): up to 15 digits it is below 2^52 ms. Any other ttl must be
  -- `none` or a finite number > 0 of at most 2^52 ms (past it Redis would refuse the expire time mid-script).
  local keys = op == 'SET' and { entry } or entry_keys(extra, 1)
  -- The ttl of entry `slot` is ARGV[first_ttl + ttl_stride * (slot - 1)]: after its value, or MPUT's one ttl.
  local first_ttl, ttl_stride = first_value + 1, stride
  if op == 'MPUT' then first_ttl, ttl_stride = 6, 0 end
  local members, pxs, tags = {}, {}, {}
  local ms_text = unit == 'ms' and grace == 0
  -- A batch's entries usually share one ttl text: a text equal to the last one checked is not checked again
  -- (see PERFORMANCE).
  local checked_text, checked_px
  for slot = 1, n do
    local member = member_of(keys[slot])
    if member == nil then return fail(BAD_PREFIX .. base) end
    local at_ttl = first_ttl + ttl_stride * (slot - 1)
    local text = ARGV[at_ttl] or ''
    local px = text
    if text == checked_text then
      px = checked_px
    elseif not (ms_text and #text <= 15 and string.find(text, '^[1-9]%d*$')) then
      px = text ~= 'none' and tonumber(text)
      if px == nil or px ~= px or (px and px <= 0) then return fail(BAD_TTL) end
      if px then
        px = math.ceil(unit == 'ms' and px or px * 1000) + grace
        if px > 2 ^ 52 then return fail(BAD_TTL) end
      end
    end
    checked_text, checked_px = text, px
    local tag_text
    -- (MPUT's entries carry none: their old tags go, as with MSET's '')
    if op == 'MSET' then tag_text = ARGV[at_ttl + 1] elseif op ~= 'MPUT' then tag_text = ARGV[op == 'SET' and 11 or 8] end
    members[slot], pxs[slot], tags[slot] = member, px, tag_text or ''
  end

  -- Reads before the first write: the log's size (a log of the wrong type fails here), and the tags the
  -- entries had (each entry's tags replace them).
  local size = redis.call('ZCARD', log)
  local had = tag_of and redis.call('HMGET', tag_of, unpack(members)) or {}
  -- Tags are checked only where they change: the text an entry holds was checked when it was written (see
  -- PERFORMANCE). retag: some entry's tags change, so the tag index and the tags hash are rewritten.
  local retag = false
  for slot = 1, n do
    local tag_text = tags[slot]
    if tag_text ~= (had[slot] or '') then
      retag = true
      if tag_text ~= '' then
        load_helpers()
        if not check_tags(tag_text) then return fail(BAD_TAGS) end
      end
    end
    if tag_text ~= '' and tag_of == nil then return fail('wrong number of keys: tags need the tag keys as KEYS[4] and KEYS[5]') end
  end
  if retag then redis.call('ZCARD', tag_index) end

  if token and redis.call('GET', KEYS[extra]) ~= token then
    -- Whoever waits for this value would wait out the lease: tell them it is not coming.
    publish(channel, origin, 'r', { entry })
    return -1
  end
  -- The clock is the first write (a stats hash of the wrong type fails there, with nothing written).
  local clock = tick(n, n)
  if token then redis.call('DEL', KEYS[extra]) end
  for slot = 1, n do
    local value = ARGV[first_value + stride * (slot - 1)]
    if pxs[slot] then redis.call('SET', keys[slot], value, 'PX', pxs[slot]) else redis.call('SET', keys[slot], value) end
  end
  -- The entries get consecutive clock values in KEYS order (a key given twice ends with the later one).
  if n == 1 then
    size = size + redis.call('ZADD', log, clock, members[1])
  else
    load_helpers()
    size = size + zadd_all(log, clock - n, members)
  end
  if retag then
    load_helpers()
    -- Per distinct entry: the pairs of the tags it had and no longer has go, the new ones come.
    local first, last = {}, {}
    for slot = 1, n do
      local m = members[slot]
      if first[m] == nil then first[m] = had[slot] or '' end
      last[m] = tags[slot]
    end
    local gone, added, set, unset = {}, {}, {}, {}
    for m, before in pairs(first) do
      local after = last[m]
      if before ~= after then
        local keep = {}
        for _, tag in ipairs(tags_in(after)) do keep[tag] = true end
        for _, tag in ipairs(tags_in(before)) do
          if keep[tag] then keep[tag] = false else gone[#gone + 1] = tag .. '\0' .. m end
        end
        for tag, new in pairs(keep) do if new then added[#added + 1] = tag .. '\0' .. m end end
        if after == '' then unset[#unset + 1] = m else set[#set + 1] = m; set[#set + 1] = after end
      end
    end
    chunked({ 'ZREM', tag_index }, gone)
    zadd_all(tag_index, nil, added)
    chunked({ 'HSET', tag_of }, set)
    chunked({ 'HDEL', tag_of }, unset)
  end
  return settle(size, max_size, clock, n, keys, channel, origin)

elseif op == 'GET' or op == 'MGET' or op == 'LEASE' then
  -- Lookups: each counts a hit or a miss; hits move to the MRU end, members of missing entries leave.
  local grace = optional_ms(ARGV[3])
  if grace == nil then return fail('grace_ms must be an integer >= 0') end
  local keys = op == 'MGET' and entry_keys(extra, 1) or { entry }
  for i = 1, #keys do
    if member_of(keys[i]) == nil then return fail(BAD_PREFIX .. base) end
  end
  local with_ttl, lease_ms, refresh = op == 'MGET' or ARGV[3] ~= nil, 0, 0
  if op == 'LEASE' then
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
  for i = 1, #keys do
    local key = keys[i]
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
    out[2 * i - 1] = value
    out[2 * i] = fresh
  end
  if misses > 0 then redis.call('HINCRBY', stats, 'misses', misses) end
  if #hits > 0 then
    redis.call('HINCRBY', stats, 'hits', #hits)
    zadd_all(log, tick(#hits, 0) - #hits, hits)
  end
  chunked({ 'ZREM', log }, gone)
  untag(gone)
  if op == 'MGET' then return out end
  if op == 'GET' then
    if ARGV[3] == nil then return out[1] end
    return out
  end
  local value, fresh = out[1], out[2]
  if value and fresh > refresh then return { value, fresh, 0, 0 } end
  if redis.call('SET', KEYS[extra], ARGV[4], 'NX', 'PX', lease_ms) then return { value, fresh, 1, lease_ms } end
  return { value, fresh, 0, redis.call('PTTL', KEYS[extra]) }

elseif op == 'TOUCH' then
  local count = #KEYS - extra + 1
  local hits = tonumber(ARGV[3])
  if hits == nil or hits < 0 or hits ~= math.floor(hits) or hits > count then
    return fail('hits must be an integer from 0 to the number of entry keys after KEYS[5]')
  end
  -- Lookups counted: at least one per key given, none where no key is, and at most 2^31 per call (a client
  -- sends its lookups every few ms), so the clock they advance stays far below 2^53.
  local hit_count, miss_count = hits, count - hits
  if ARGV[4] ~= nil or ARGV[5] ~= nil then
    hit_count, miss_count = tonumber(ARGV[4]), tonumber(ARGV[5])
    local function counts(n, keys)
      return n ~= nil and n == math.floor(n) and n >= keys and n <= 2 ^ 31 and (keys > 0 or n == 0)
    end
    if not (counts(hit_count, hits) and counts(miss_count, count - hits)) then
      return fail('hit_count and miss_count must be integers up to 2^31, each at least its number of keys and 0 without keys')
    end
  end
  -- Every key checked first, and each member computed once. TOUCH runs for every 256 plain reads, so this
  -- loop is inlined with the string functions in locals (see PERFORMANCE).
  local members, find, sub, from = {}, string.find, string.sub, #base + 1
  for j = 1, count do
    local key = KEYS[extra + j - 1]
    if from > 1 then
      if find(key, base, 1, true) ~= 1 then return fail(BAD_PREFIX .. base) end
      key = sub(key, from)
    end
    members[j] = key
  end
  redis.call('ZCARD', log)
  if hits > 0 then
    redis.call('HINCRBY', stats, 'hits', hit_count)
    local first = tick(hit_count, 0) - hits -- hit j is stamped first + j
    -- Members the log lost while their entry survived go back in, with the stamp they were given.
    if zadd_all(log, first, members, { 'XX', 'CH' }, hits) < hits then
      for j = 1, hits do
        if redis.call('EXISTS', KEYS[extra + j - 1]) == 1 then redis.call('ZADD', log, first + j, members[j]) end
      end
    end
  end
  if count > hits then
    redis.call('HINCRBY', stats, 'misses', miss_count)
    local gone = {}
    for j = hits + 1, count do
      if redis.call('EXISTS', KEYS[extra + j - 1]) == 0 then gone[#gone + 1] = members[j] end
    end
    chunked({ 'ZREM', log }, gone)
    untag(gone)
  end
  return hit_count

elseif op == 'DEL' then
  -- Entries KEYS[1], KEYS[7], KEYS[9]…, each followed by its lease key (KEYS[6], KEYS[8]…).
  if (#KEYS - extra) % 2 ~= 0 then return fail('wrong number of keys: a lease key after each entry key') end
  local keys, leases, members = entry_keys(extra + 1, 2), {}, {}
  for i = 1, #keys do
    leases[i] = KEYS[extra + 2 * (i - 1)]
    members[i] = member_of(keys[i])
    if members[i] == nil then return fail(BAD_PREFIX .. base) end
  end
  chunked({ 'ZREM', log }, members)
  untag(members)
  local existed = chunked({ 'DEL' }, keys)
  chunked({ 'DEL' }, leases)
  publish(ARGV[3], ARGV[4], 'd', keys)
  return existed

elseif op == 'RELEASE' then
  if ARGV[3] == nil or ARGV[3] == '' then return fail('token missing') end
  if redis.call('GET', KEYS[extra]) ~= ARGV[3] then return 0 end
  redis.call('DEL', KEYS[extra])
  publish(ARGV[4], ARGV[5], 'r', { entry })
  return 1

elseif op == 'HAS' then
  -- Whether a lookup would find a fresh value; counts nothing and leaves the order alone.
  local grace = optional_ms(ARGV[3])
  if grace == nil then return fail('grace_ms must be an integer >= 0') end
  local pttl = redis.call('PTTL', entry)
  if pttl == -1 or pttl > grace then return 1 end
  return 0

elseif op == 'DELTAG' then
  -- Removes up to <batch> entries carrying <tag>, with all their tags; → {removed, left, key…}.
  local tag, batch = ARGV[3], tonumber(ARGV[4])
  if tag == nil or #tag == 0 or #tag > 256 or string.find(tag, '\0', 1, true) then
    return fail('tag must be 1 to 256 bytes without NUL')
  end
  if batch == nil or batch < 1 or batch > 1000 or batch ~= math.floor(batch) then
    return fail('batch must be an integer from 1 to 1000')
  end
  local from, to = '[' .. tag .. '\0', '(' .. tag .. '\1'
  local found = redis.call('ZRANGEBYLEX', tag_index, from, to, 'LIMIT', 0, batch)
  local members, keys, removed = {}, {}, {}
  for i = 1, #found do
    members[i] = string.sub(found[i], #tag + 2)
    keys[i] = base .. members[i]
  end
  -- Its own pairs go even where tag_of disagrees, so the loop over batches always ends.
  chunked({ 'ZREM', tag_index }, found)
  untag(members)
  chunked({ 'ZREM', log }, members)
  for i = 1, #keys do
    if redis.call('DEL', keys[i]) == 1 then removed[#removed + 1] = keys[i] end
  end
  publish(ARGV[5], ARGV[6], 'd', removed)
  local reply = { #removed, redis.call('ZLEXCOUNT', tag_index, from, to) }
  for i = 1, #removed do reply[i + 2] = removed[i] end
  return reply

elseif op == 'CLEAR' then
  local batch = tonumber(ARGV[3])
  if batch == nil or batch < 1 or batch > 1000 or batch ~= math.floor(batch) then
    return fail('batch must be an integer from 1 to 1000')
  end
  local popped = redis.call('ZPOPMIN', log, batch)
  local members = {}
  for i = 1, #popped, 2 do
    members[#members + 1] = popped[i]
    redis.call('DEL', base .. popped[i])
  end
  untag(members)
  local left = redis.call('ZCARD', log)
  if left == 0 then
    -- What tags are left can only describe entries outside the log (after its loss): no clear reaches them.
    redis.call('DEL', tag_index, tag_of)
    publish(ARGV[4], ARGV[5], 'c', {})
  end
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

return fail(string.format(UNKNOWN, tostring(op)))
