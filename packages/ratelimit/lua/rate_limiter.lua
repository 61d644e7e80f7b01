--[[
rate_limiter.lua — exact sliding-window (default), GCRA and fixed-window rate limits with burst, one call.

FORMATS: the seed call below is the PUBLIC CONTRACT (lua-scripts-README.md): frozen, argument for argument and
  reply for reply. The rich and batch calls are INTERNAL to @cyredis/ratelimit (src/protocol.ts is their only
  caller and encodes/decodes them); they may change with the package.

SEED CALL (public contract):
  EVALSHA sha 1 <key> <limit> <window> <current_time> [<burst>]
  KEYS[1]  the limited key (a string holding the packed log below; a sorted set of the previous layout is
           converted). It may be any key; it is the only key touched.
  ARGV[1]  limit: integer 1 … 2^40, admissions per window.
  ARGV[2]  window: seconds (fractions allowed, resolution 1 µs), > 0.
  ARGV[3]  current_time: seconds since the epoch (fractions allowed, ≥ 0); '' = the server's TIME.
  ARGV[4]  burst: optional integer, limit ≤ burst ≤ 2^40; '' or absent = limit.
  Reply:   integer. N ≥ 1: admitted, and N was the capacity left for this request (N − 1 remain after it).
           0: limited; nothing was stored.

RICH CALL (internal; ARGV[5] present switches it on):
  KEYS[1..n]  one key per rule, then the block key when ARGV[8] > 0, then the policy key when ARGV[10] = '1',
              then the request key when ARGV[9] ~= ''. All under one hash tag on Redis Cluster.
  ARGV[1..4]  rule 1 as above (ARGV[3] is the time of every rule).
  ARGV[5]     algorithm: 'sliding-window' | 'gcra' | 'fixed-window' (every rule of the call).
  ARGV[6]     cost: integer, |cost| ≤ the smallest capacity (with a policy key: ≤ 2^40, and a cost above the
              id's capacity is refused with retry-after -1); negative refunds, 0 consumes nothing.
  ARGV[7]     'limit' (decide and consume) | 'peek' (decide for this cost, write nothing; remaining and
              reset describe the state as it is) | 'batch' (see below).
  ARGV[8]     block: ms ≥ 0; once refused, the id stays refused this long (0 = off).
  ARGV[9]     request id ('' = none): a repeated call with the same id within the longest period gets
              the first reply again and consumes nothing more.
  ARGV[10]    policy: '1' = read the policy key (below) first; '' = no policy key.
  ARGV[11..]  rules 2..n as triples: limit, window (s), burst ('' = limit).
  Short form: ARGV[1..5] only (one key) = cost 1, 'limit', no block, no request id, no policy: the
              commonest call, with half the arguments to send and parse (see SPEED).
  Compact form: ARGV[1..3] = limit, window, algorithm (one key) = the short form at the server's time with
              burst = limit: the limiter's plain limit(id), two arguments fewer again (a seed call's
              current_time is a number or '', never an algorithm's name, so the two do not overlap). Its
              reply is one string: 'allowed remaining reset' (decimal, one space between) and, when
              refused, ' retry-after' too; the binding rule is rule 0 (see SPEED).
  Reply:      { allowed 0|1, remaining, reset µs, retry-after µs, index of the binding rule (0-based) }, and
              with a policy key three more: listed (0 no, 1 allow list, 2 deny list), the binding rule's
              capacity and period (µs), as the override made them. Retry-after -1: never (deny list, or a
              cost above an override's capacity).
  POLICY KEY  a hash, written by src/protocol.ts encoders: field 'deny' present = always refused (nothing
              read or written but the policy); else 'allow' present = always admitted, nothing consumed;
              else 'rules' = 'limit window_s burst' per rule (';' between, one per rule of the call, burst ''
              = limit) replacing the call's rules for this id (their keys stay the same).

BATCH CALL (internal; ARGV[7] = 'batch'): m 'limit' checks of other ids (or the same) in order, at one server
  time, each as if called alone. ARGV[6] = m; ARGV[9] = ''; after the rules' triples come the m costs. KEYS: m
  groups of the rich call's keys (rules, then block key, then policy key). Reply: the m rich replies, in order.

KEYS TOUCHED: only those in KEYS (checked by test/keys.test.ts); nothing is derived inside the script.

SEMANTICS (capacity C = burst or limit; period P = ceil(window × C / limit), in µs):
  sliding-window  at most C admitted (weighted by cost) in any interval of length P, so at most C in any
                  window-length interval and at most limit per window in the long run. Without burst:
                  at most limit in any window, exactly. One entry per admitted call in a packed log
                  (STORAGE). A caller time earlier than the newest entry is raised to it, so time never
                  runs backwards for a key.
  gcra            emission interval T = ceil(window / limit) µs, tolerance C × T: C back to back from
                  idle, then one every T. Worst case in a window-length interval: C + limit. O(1): a string
                  holding the theoretical arrival time (TAT, µs).
  fixed-window    at most C per aligned period P (worst case 2 × C across a boundary). O(1): a string
                  '<period index>:<count>'.
  Refused calls store nothing. Every write of a rule key sets its expiry to the rule's period (P; GCRA:
  C × T), counted from the write, whatever the caller's time says, so an idle key vanishes within it and a
  caller time behind the server's clock never loses state early (block key: within block). A retry after
  exactly the returned retry-after is admitted (same rules, same cost).

STORAGE (sliding window; internal, read by src/protocol.ts decodeWindowLog): one string per rule key, at most
  8 bytes per admitted unit plus a quarter of room. A 30-byte header: 'W1', then head (offset of the oldest
  live entry), tail (end of the newest) and size (bytes of the string) as big-endian uint32, then units used
  from head to tail and the newest entry's time (µs) as big-endian doubles. Then the entries, oldest first:
  one double (the time, one unit) or two (minus the units, then the time), so the log reads both ways.
  A check reads the header and the entries at head; entries that left the period move head past them (each
  once: O(1) amortised); an admission writes its entry at tail and the header in place, and when the
  string is full rewrites it as the live entries plus a quarter as much room (O(live) once per live / 4
  admissions, so O(1) amortised, and dead entries go). The seed call and the TypeScript API share this.
  OLD LAYOUT: until 0.1.x, a sorted set (score = time in µs, member = the first unit's sequence number,
  length-prefixed, plus ':units' when over one). Such a key is read as the same log and converted in place
  by the first write (its expiry kept); refusals and peeks leave it as it is. So an upgrade keeps every
  window: it never admits a fresh one. A key holding anything else is an error reply.
ERRORS: 'ERR rate_limiter: …' before any write on bad input: limit, window, time, burst, cost, algorithm, mode,
  block, argument count, key count, empty key or key over 65536 bytes. Also, before that check's writes (in a
  batch, the checks before it stand), a sliding-window key that holds something other than a log or the
  old sorted set, or a policy key whose override is malformed or has the wrong number of rules.
COMPLEXITY: O(rules) amortised per check; a refused cost-c check reads at most min(c, 128) entries; a refund
  of r units removes at most r entries; a batch costs the sum of its checks (at most 1024). Entries that
  expired since the last write are read by the next check (and by every peek until then).

LAYOUT: the sliding-window log's functions and the fixed window's read (each defined for its algorithm's
  calls only), the FAST PATH, then the general path: argument parsing (all of it before the first write),
  one section per algorithm defining the same two functions, inspect (reads only) and commit (the writes),
  then one check (replay, inspect every rule, block, commit all or none, reply) and the entry point.
SPEED: written for 100k calls/s, where every closure, table, tonumber and number-to-text conversion shows.
  Redis runs the whole chunk on every call, so each `function` statement makes a closure each time: parsing
  is top-level code rather than functions, only the algorithm in use gets its functions defined, globals
  are cached in locals, one record per rule is made once per call and reused by every check of a batch.
  The FAST PATH (a cost-1 'limit' on one rule with no block, policy or request id, alone or in a batch: the
  limiter's commonest calls) is top-level code that makes no closure of its own and one table per check
  (its reply). Numbers passed to redis.call are turned into text by Redis on every call, so expiries and
  read bounds are sent as text, made once per call (or per distinct value in a batch).
  Measured with callgrind (instructions counted in redis-server 7.0, which a loaded machine does not move):
  an EVALSHA of an empty script with one key and five arguments costs about 21k instructions, a closure
  0.75k, a table 1.3k, TIME 6.6k, GET 4k, GETRANGE with number bounds 9k, SET … PX 15–21k (1.9k more when
  the PX is a Lua number). Per check, batches of 16 on 10k keys: sliding window 46k (60k before the fast
  path took batches), GCRA and fixed window 37k (53k and 50k). Through the limiter on one hot key at 64 in
  flight: GCRA 27k, fixed window 33k, sliding window 53k (the build before: 43k, 50k, 77k; the 4fe707b
  build: 38k, 51k, 106k); rate-limiter-flexible's consume 41–49k. One call alone: sliding window 104k (the
  build before: 140–150k), GCRA and fixed window 73–75k (unchanged: about 21k is the EVALSHA itself and
  25k TIME, GET and SET … PX), rate-limiter-flexible's consume about 50k.
  Where one short-form GCRA check on 10k keys goes (67k; fixed window 70k; in the compact form 65.5k and
  69k; rate-limiter-flexible's consume 45–48k): the EVALSHA of a script that returns 1, 21.7k with five
  arguments (18.3k with three: each costs about 1.1k); the reply table of five integers 6.6k (two: 4.8k);
  TIME 6.7k plus 1.6k to turn its two strings into µs; GET 3k; SET … PX 13k (a PXAT made from TIME costs
  more, as its digits cost a bigger format); two string.format 3.7k; tonumber 1.3k ('100') to 1.9k (16
  digits), as Lua 5.1's tonumber converts a string twice (arithmetic on a string converts once, but raises
  on bad input); the remaining branches and checks about 5k. A math library call costs about 0.3k and
  x % 1 0.08k, so the fast path tests integers with % and drops clamps its inputs already guarantee.
  rate-limiter-flexible reads no clock, parses and formats no number in Lua and returns two integers.
  The compact form's reply: a table reply costs Redis about 5k instructions before its elements (it looks
  the table up for the fields of an error, a status and the other reply types) and about 0.6k per element,
  and each number string.format turns into digits about 1k, so a string of three numbers (four when refused)
  is the cheapest reply that keeps every field: GCRA 67k -> 64k, fixed window 72k -> 67k per check on 10k
  keys that hold state (the fixed window also converts its stored digits by arithmetic, once each).
]]

local MAX_INT = 1099511627776 -- 2^40: keeps every product of counts and µs exact in doubles
local MAX_US = 4503599627370496 -- 2^52
local call, tonumber, floor, ceil, max, min, format = redis.call, tonumber, math.floor, math.ceil, math.max, math.min, string.format
local E = 'ERR rate_limiter: '
-- ARGV and KEYS are globals, each use a lookup: the code before the general path reads them through locals.
local A, K = ARGV, KEYS
-- The algorithm of a rich call (nil or '' for the seed call), and the caller's time ('' = the server's): the
-- compact form names its algorithm where the others have the time, and runs at the server's.
local nargs = #A
local alg, time_s = A[5], A[3]
if nargs == 3 and (time_s == 'gcra' or time_s == 'fixed-window' or time_s == 'sliding-window') then alg, time_s = time_s, '' end

-- The time of every check, in µs: set by the fast path when it read the clock, else by the general path.
local now

-- Sliding-window log (see STORAGE) -------------------------------------------------------------------------
-- The reads and writes of a log, shared by the fast path and the general path; defined only for a sliding-
-- window call (the seed call or a rich one), so other calls make none of these closures (see SPEED).
local pack, unpack, sub
local HF, H = '>c2I4I4I4dd', 30
-- Every read takes at least SLICE bytes, so a small log comes whole with its header, and the entries at head
-- serve the trim, the retry-after and the rewrite.
local SLICE, SLICE_END = 256, '255'
-- Logs converted from the old sorted-set layout in this call, by key, until a commit writes them; the last
-- slice read from each key (offset, bytes), which a write to the key drops.
local converted, seen_from, seen
-- The last expiry set (ms) and its digits: the checks of a batch mostly set the same one (see SPEED).
local last_ttl, last_ttl_s
local read, locate, paid_at, append
if alg == nil or alg == '' or alg == 'sliding-window' then
  pack, unpack, sub = struct.pack, struct.unpack, string.sub
  seen_from, seen = {}, {}

  -- Bytes [from, to) of the log (to > from).
  function read(key, from, to)
    local log = converted and converted[key]
    if log then return sub(log, from + 1, to) end
    local at, slice = seen_from[key], seen[key]
    if slice == nil or from < at or to > at + #slice then
      at, slice = from, call('GETRANGE', key, from, max(to, from + SLICE) - 1)
      seen_from[key], seen[key] = at, slice
    end
    return sub(slice, from - at + 1, to - at)
  end

  -- The live log of a rule of `period` µs at `now`: the check's time (now raised to the newest entry's, so
  -- time never runs backwards for a key), head (offset of the oldest live entry), tail (end of the newest),
  -- size, units used from head to tail, and the newest entry's time (nil when none is live). Nothing when
  -- `plain` and the key is not a string: the fast path leaves an old-layout key to the general path, which
  -- converts it.
  function locate(key, period, plain)
    local h = converted and converted[key]
    if not h then
      h = redis.pcall('GETRANGE', key, '0', SLICE_END)
      if type(h) ~= 'table' then
        seen_from[key], seen[key] = 0, h
      elseif plain then
        return nil
      elseif call('TYPE', key).ok == 'zset' then
        -- The old layout: one sorted-set member per admitted call, score = time in µs, member = the first
        -- unit's sequence number, length-prefixed, plus ':units' when more than one. Read once, as a log.
        local all, parts, used, newest = call('ZRANGE', key, '0', '-1', 'WITHSCORES'), {}, 0, 0
        for j = 1, #all, 2 do
          local colon = string.find(all[j], ':', 3, true)
          local units = colon and tonumber(string.sub(all[j], colon + 1)) or 1
          newest = tonumber(all[j + 1])
          parts[#parts + 1] = units == 1 and pack('>d', newest) or pack('>dd', -units, newest)
          used = used + units
        end
        local body = table.concat(parts)
        converted = converted or {}
        converted[key] = pack(HF, 'W1', H, H + #body, H + #body, used, newest) .. body
        h = converted[key]
      else
        h = nil
      end
    end
    if h == nil or (h ~= '' and sub(h, 1, 2) ~= 'W1') then error(redis.error_reply(E .. 'the key holds something other than a rate limit')) end
    local t = now
    if h == '' then return t, H, H, 0, 0, nil end
    local _, head, tail, size, used, newest = unpack(HF, h)
    if tail > head and newest > t then t = newest end
    local cutoff = t - period
    if tail == head or newest <= cutoff then return t, H, H, size, 0, nil end
    -- Moves head past the entries at or before cutoff (the newest is after it), reading ever larger slices,
    -- so a long run of expired entries costs few calls.
    local n = 128
    while true do
      local to = min(head + n, tail)
      local s = read(key, head, to)
      local pos, len = 1, to - head
      while pos + 7 <= len do
        local v = unpack('>d', s, pos)
        local cost, at = 1, pos
        if v < 0 then
          if pos + 15 > len then break end
          cost, at = -v, pos + 8
          v = unpack('>d', s, at)
        end
        if v > cutoff then return t, head + pos - 1, tail, size, used, newest end
        used, pos = used - cost, at + 8
      end
      head, n = head + pos - 1, n * 2
    end
  end

  -- When `deficit` units over capacity are paid: once the oldest entries holding that many have left the
  -- period (reads at most min(deficit, 128) entries; past them, the newest entry's expiry is the answer).
  function paid_at(key, head, tail, period, deficit, fallback)
    local want = min(deficit, 128)
    local s = read(key, head, min(head + 16 * want, tail))
    local pos, paid = 1, 0
    for _ = 1, want do
      if pos > #s then break end
      local v = unpack('>d', s, pos)
      local cost = 1
      if v < 0 then cost, v, pos = -v, unpack('>d', s, pos + 8), pos + 16 else pos = pos + 8 end
      paid = paid + cost
      if paid >= deficit then return v + period end
    end
    return fallback
  end

  -- Appends an entry of c units at time `at` to the live log (head, tail, size, used) of a rule of `period`
  -- µs: in place while the string has room, else rewritten as the live entries and the new one plus a
  -- quarter as much room (so rewrites cost O(1) amortised per entry and dead entries go).
  function append(key, at, head, tail, size, used, period, c)
    local entry = c == 1 and pack('>d', at) or pack('>dd', -c, at)
    local new_tail = tail + #entry
    local ttl = ceil((at + period - now) / 1000)
    if ttl ~= last_ttl then last_ttl, last_ttl_s = ttl, format('%d', ttl) end
    ttl = last_ttl_s
    if new_tail <= size and new_tail > SLICE then
      call('SETRANGE', key, tail, entry)
      call('SETRANGE', key, '0', pack(HF, 'W1', head, new_tail, size, used + c, at))
      call('PEXPIRE', key, ttl)
    else
      local body = (tail > head and read(key, head, tail) or '') .. entry
      local room = H + #body > SLICE and floor(#body / 32) * 8 or 0
      call('SET', key, pack(HF, 'W1', H, H + #body, H + #body + room, used + c, at) .. body .. string.rep('\0', room), 'PX', ttl)
    end
    seen[key] = nil
  end
end

-- Fixed window: the period index and count stored in `key` for a period of `period` µs, as of `now` (a count
-- of an earlier period reads as none). Defined for a fixed-window call only (see SPEED).
local fixed_state
if alg == 'fixed-window' then
  function fixed_state(key, period)
    local index, count = floor(now / period), 0
    local v = call('GET', key)
    if v then
      local stored_index, stored_count = string.match(v, '^(%d+):(%d+)$')
      -- Digits only (the pattern says so): arithmetic converts them, once each (tonumber converts twice).
      stored_index = stored_index and stored_index + 0
      if stored_index and stored_index >= index then index, count = stored_index, stored_count + 0 end
    end
    return index, count
  end
end

-- Fast path (see SPEED) -------------------------------------------------------------------------------------
-- The commonest rich calls, decided with the fewest operations and no closure of their own: a 'limit' of
-- cost 1 on one rule with no block, no policy and no request id (short or full form), and a batch of such
-- checks. It takes only arguments the general path accepts and answers exactly as the general path does
-- (the model tests drive both); otherwise it leaves the call to the general path below, which then
-- handles it and any error. A sliding-window key that is not a log (an old-layout sorted set, or anything
-- else) is also left to the general path, before any write of its check: in a batch the replies so far
-- stay in `fast_out` and the general path goes on from check `fast_from`, at the same time.
local fast_out, fast_from
local fast_n = #K
if alg ~= 'sliding-window' and alg ~= 'gcra' and alg ~= 'fixed-window' then
  fast_n = 0
elseif fast_n == 1 and (nargs == 5 or nargs == 3 or (nargs == 10 and A[6] == '1' and A[7] == 'limit' and A[8] == '0' and A[9] == '' and A[10] == '')) then
  fast_out = false
elseif A[7] == 'batch' and A[8] == '0' and A[9] == '' and A[10] == '' and nargs == 10 + fast_n and A[6] == tostring(fast_n) and fast_n <= 1024 then
  -- Every cost 1, so no cost needs parsing.
  for j = 11, 10 + fast_n do
    if A[j] ~= '1' then fast_n = 0 end
  end
  fast_out = {}
else
  fast_n = 0
end
-- The rule: limit, window (µs) and capacity, as rule_record (below) reads them; nil when the general path
-- must say what is wrong.
local fast_limit, fast_capacity, fast_window
if fast_n > 0 then
  local limit_s = A[1]
  fast_limit, fast_window = tonumber(limit_s), tonumber(A[2])
  -- x % 1 ~= 0: not an integer (also true of ±inf and NaN).
  if fast_limit == nil or fast_limit % 1 ~= 0 or fast_limit < 1 or fast_limit > MAX_INT or fast_window == nil or not (fast_window > 0 and fast_window < MAX_US) then fast_limit = nil end
  fast_capacity = fast_limit
  local burst = A[4]
  if fast_limit and burst and burst ~= '' and burst ~= limit_s then
    fast_capacity = tonumber(burst)
    if fast_capacity == nil or fast_capacity % 1 ~= 0 or fast_capacity < fast_limit or fast_capacity > MAX_INT then fast_limit = nil end
  end
  if fast_limit then
    fast_window = floor(fast_window * 1000000 + 0.5)
    if fast_window < 1 or fast_window * fast_capacity > MAX_US then fast_limit = nil end
  end
  for j = 1, fast_n do
    local n = #K[j]
    if n == 0 or n > 65536 then fast_limit = nil end
  end
  if fast_limit and time_s == '' then
    local t = call('TIME')
    now = t[1] * 1000000 + t[2]
  elseif fast_limit then
    local s = tonumber(time_s)
    if s == nil or not (s >= 0 and s * 1000000 <= MAX_US) then fast_limit = nil else now = floor(s * 1000000 + 0.5) end
  end
end
-- GCRA: interval and tolerance; the others: the period. Then the expiry every write sets (ms, as digits).
local interval, tolerance, period, ttl
if fast_limit then
  if alg == 'gcra' then
    interval = ceil(fast_window / fast_limit)
    tolerance = fast_capacity * interval
    ttl = tolerance
  else
    period = ceil(fast_window * fast_capacity / fast_limit)
    ttl = period
  end
  -- At least 1 ms, as ttl ≥ 1 µs.
  ttl = format('%d', ceil(ttl / 1000))
end
if fast_limit then
  for j = 1, fast_n do
    -- The check's reply: allowed (nil: the general path decides), remaining, reset and retry-after (µs).
    local key, ok, left, reset, retry = K[j], nil, 0, 0, 0
    if alg == 'gcra' then
      -- A missing key reads as now, with no number to parse.
      local v = call('GET', key)
      local stored = v and max(tonumber(v) or 0, now) or now
      local tat = stored + interval
      if tat - now > tolerance then
        ok, left, reset, retry = 0, floor((now + tolerance - stored) / interval), stored - now, tat - tolerance - now
      else
        call('SET', key, format('%d', tat), 'PX', ttl)
        ok, left, reset = 1, floor((now + tolerance - tat) / interval), tat - now
      end
    elseif alg == 'fixed-window' then
      local index, count = fixed_state(key, period)
      -- index ≥ now's period index, so the reset is > 0.
      reset = (index + 1) * period - now
      if count + 1 > fast_capacity then
        ok, left, retry = 0, max(fast_capacity - count, 0), reset
      else
        call('SET', key, format('%d:%d', index, count + 1), 'PX', ttl)
        ok, left = 1, fast_capacity - count - 1
      end
    else
      local t, head, tail, size, used, newest = locate(key, period, true)
      if t ~= nil and used < fast_capacity then
        append(key, t, head, tail, size, used, period, 1)
        ok, left, reset = 1, fast_capacity - used - 1, t + period - now
      elseif t ~= nil then
        local ends = newest + period
        ok, left, reset = 0, max(fast_capacity - used, 0), max(ends - now, 0)
        retry = max(paid_at(key, head, tail, period, used + 1 - fast_capacity, ends) - now, 0)
      end
    end
    if ok == nil then
      fast_from = j
      break
    end
    if not fast_out then
      -- The compact form's reply is one string (see its Reply above): a table costs Redis more to send,
      -- and each number formatted costs too, so an admission leaves out its retry-after (0).
      if nargs == 3 then return ok == 1 and format('1 %d %d', left, reset) or format('0 %d %d %d', left, reset, retry) end
      return { ok, left, reset, retry, 0 }
    end
    fast_out[j] = { ok, left, reset, retry, 0 }
  end
  if not fast_from then return fast_out end
end

local function integer(v, lo, hi)
  local n = tonumber(v)
  if n == nil or n ~= floor(n) or n < lo or n > hi then return nil end
  return n
end

-- Arguments (all validated before the first write; top-level code, see SPEED) ----------------------------------

local rich = alg ~= nil and alg ~= ''
-- The short or compact rich call: the defaults for the rest.
local short = rich and (#ARGV == 5 or #ARGV == 3)
local algorithm, cost, peek, batch_size, block_ms, request_id, policy = 'sliding-window', 1, false, nil, 0, '', false
if rich then
  algorithm = alg
  if algorithm ~= 'sliding-window' and algorithm ~= 'gcra' and algorithm ~= 'fixed-window' then return redis.error_reply(E .. 'unknown algorithm') end
end
if rich and not short then
  if ARGV[6] ~= '1' then
    cost = integer(ARGV[6], -MAX_INT, MAX_INT)
    if cost == nil then return redis.error_reply(E .. 'cost must be an integer') end
  end
  if ARGV[7] == 'peek' then
    peek = true
  elseif ARGV[7] == 'batch' then
    batch_size, cost = cost, 1
    if batch_size < 1 or batch_size > 1024 then return redis.error_reply(E .. 'a batch holds 1 to 1024 checks') end
  elseif ARGV[7] ~= 'limit' then
    return redis.error_reply(E .. 'mode must be limit, peek or batch')
  end
  if ARGV[8] ~= '0' then
    block_ms = tonumber(ARGV[8])
    if block_ms == nil or not (block_ms >= 0 and block_ms <= MAX_US / 1000) then return redis.error_reply(E .. 'block must be ms ≥ 0') end
  end
  request_id = ARGV[9] or ''
  if batch_size and request_id ~= '' then return redis.error_reply(E .. 'a batch takes no request id') end
  if ARGV[10] ~= '' and ARGV[10] ~= '1' then return redis.error_reply(E .. "policy must be '' or 1") end
  policy = ARGV[10] == '1'
elseif #ARGV < 3 or #ARGV > 5 then
  return redis.error_reply(E .. 'expected limit, window, current_time [, burst]')
end

-- Keys: one group per check (rules, then the block key, then the policy key, then the request key).
local nkeys = #KEYS
local group_size = batch_size and nkeys / batch_size or nkeys
local nrules = group_size - (block_ms > 0 and 1 or 0) - (policy and 1 or 0) - (request_id ~= '' and 1 or 0)
if nrules < 1 or nrules ~= floor(nrules) or ((not rich or short) and nkeys ~= 1) then return redis.error_reply(E .. 'wrong number of keys') end
if rich and not short and #ARGV ~= 10 + 3 * (nrules - 1) + (batch_size or 0) then return redis.error_reply(E .. 'wrong number of arguments for the rules') end
for i = 1, nkeys do
  local n = #KEYS[i]
  if n == 0 or n > 65536 then return redis.error_reply(E .. 'keys must be 1 to 65536 bytes') end
end

-- The time of every check, in µs, unless the fast path read it (a batch it began goes on at that time).
if now == nil and (time_s == nil or time_s == '') then
  local t = call('TIME')
  now = t[1] * 1000000 + t[2]
elseif now == nil then
  local s = tonumber(time_s)
  if s == nil or not (s >= 0 and s * 1000000 <= MAX_US) then return redis.error_reply(E .. 'current_time must be seconds ≥ 0') end
  now = floor(s * 1000000 + 0.5)
end

-- One record per rule: capacity, period (µs), then each algorithm's own state (sliding window: at, the
-- check's time raised to the newest entry's, and the log's head, tail, size and units used; GCRA: interval
-- T in µs and tat, the theoretical arrival time after the check; fixed window: window_index and count after
-- the check), then what inspecting it found: ok, remaining (after the call if admitted, else now), reset and
-- retry times (absolute µs).
-- The record of a rule given as limit, window (s) and burst ('' or absent = limit), or nil and what is wrong.
local function rule_record(limit_s, window_s, burst)
  local limit = integer(limit_s, 1, MAX_INT)
  if limit == nil then return nil, 'limit must be an integer from 1 to 2^40' end
  local w = tonumber(window_s)
  if w == nil or not (w > 0 and w < MAX_US) then return nil, 'window must be seconds > 0' end
  local window = floor(w * 1000000 + 0.5)
  local capacity = limit
  if burst ~= nil and burst ~= '' and burst ~= limit_s then
    capacity = integer(burst, limit, MAX_INT)
    if capacity == nil then return nil, 'burst must be an integer from limit to 2^40' end
  end
  if window < 1 or window * capacity > MAX_US then return nil, 'window out of range' end
  return {
    capacity = capacity, period = ceil(window * capacity / limit),
    at = 0, head = 0, tail = 0, size = 0, used = 0, interval = ceil(window / limit), tat = 0, window_index = 0, count = 0,
    ok = false, remaining = 0, reset = 0, retry = 0,
  }
end

local rules = {}
for i = 1, nrules do
  local at = i == 1 and 1 or 11 + 3 * (i - 2)
  local burst = ARGV[at + 2]
  if i == 1 then burst = ARGV[4] end
  local r, wrong = rule_record(ARGV[at], ARGV[at + 1], burst)
  if r == nil then return redis.error_reply(E .. wrong) end
  -- With a policy the id's own rules bound the cost (a cost above them is refused, never admitted).
  if not policy and (cost > r.capacity or -cost > r.capacity) then return redis.error_reply(E .. 'cost exceeds capacity') end
  rules[i] = r
end

-- A batch's m costs, after the rules' triples.
local batch_costs
if batch_size then
  batch_costs = {}
  local base = 10 + 3 * (nrules - 1)
  for j = 1, batch_size do
    -- Cost 1, the usual one, fits every capacity: no parsing, no comparing (see SPEED).
    local c = 1
    if ARGV[base + j] ~= '1' then
      c = integer(ARGV[base + j], -MAX_INT, MAX_INT)
      if c == nil then return redis.error_reply(E .. 'cost must be an integer') end
      for i = 1, nrules do
        if not policy and (c > rules[i].capacity or -c > rules[i].capacity) then return redis.error_reply(E .. 'cost exceeds capacity') end
      end
    end
    batch_costs[j] = c
  end
end

-- The algorithm in use: inspect(r, key, c) reads rule r's key and fills in its record for a check of cost c;
-- commit(r, key, c) writes what inspect decided. Only the chosen section runs (see SPEED).
local inspect, commit

if algorithm == 'sliding-window' then
  -- Sliding window: a packed log in one string (see STORAGE and the log's functions above) ------------------
  function inspect(r, key, c)
    local period, capacity = r.period, r.capacity
    local t, head, tail, size, used, newest = locate(key, period)
    r.at, r.head, r.tail, r.size, r.used = t, head, tail, size, used
    if c <= 0 or used + c <= capacity then
      local consumed = c > 0 and not peek
      r.ok = true
      r.remaining = max(capacity - used - (consumed and c or 0), 0)
      r.reset = consumed and t + period or (newest and newest + period or now)
    elseif c > capacity then
      -- Only under an override: no wait admits it (check() says so); nothing to read.
      r.ok, r.remaining, r.reset = false, max(capacity - used, 0), newest and newest + period or now
    else
      r.ok, r.remaining, r.reset = false, max(capacity - used, 0), newest + period
      r.retry = paid_at(key, head, tail, period, used + c - capacity, newest + period)
    end
  end
  -- A refund gives back the newest units first.
  local function refund(r, key, units)
    if r.size == 0 then
      r.reset, r.remaining = now, r.capacity
      return
    end
    local head, tail, used, left, newest = r.head, r.tail, r.used, units, nil
    while left > 0 and tail > head do
      local s = read(key, max(tail - 16, head), tail)
      local t = unpack('>d', s, #s - 7)
      local cost, start = 1, tail - 8
      if #s == 16 then
        local v = unpack('>d', s, 1)
        if v < 0 then cost, start = -v, tail - 16 end
      end
      if cost > left then
        local keep = cost - left
        local entry = keep == 1 and pack('>d', t) or pack('>dd', -keep, t)
        call('SETRANGE', key, start, entry)
        tail, used, left, newest = start + #entry, used - left, 0, t
      else
        tail, used, left = start, used - cost, left - cost
      end
    end
    if tail > head and not newest then newest = unpack('>d', read(key, tail - 8, tail)) end
    call('SETRANGE', key, '0', pack(HF, 'W1', head, tail, r.size, used, newest or 0))
    r.reset = newest and newest + r.period or now
    r.remaining = max(r.capacity - used, 0)
    seen[key] = nil
  end

  function commit(r, key, c)
    if converted and converted[key] then
      -- The converted log replaces the sorted set before any write to it; the key keeps its expiry.
      call('SET', key, converted[key], 'KEEPTTL')
      converted[key] = nil
    end
    if c > 0 then append(key, r.at, r.head, r.tail, r.size, r.used, r.period, c) else refund(r, key, -c) end
  end
elseif algorithm == 'gcra' then
  -- GCRA ------------------------------------------------------------------------------------------------------
  function inspect(r, key, c)
    local interval = r.interval
    local tolerance = r.capacity * interval
    local stored = max(tonumber(call('GET', key) or '0') or 0, now)
    local tat = c > 0 and stored + c * interval or max(stored + c * interval, now)
    r.tat = tat
    if tat - now <= tolerance then
      local shown = peek and stored or tat
      r.ok, r.remaining, r.reset = true, floor((now + tolerance - shown) / interval), shown
    else
      r.ok, r.remaining, r.reset, r.retry = false, floor((now + tolerance - stored) / interval), stored, tat - tolerance
    end
  end

  function commit(r, key)
    if r.tat > now then
      -- Kept for the whole tolerance, not just until the TAT: a caller time (ARGV[3]) that runs behind the
      -- server's clock must not see its state expire early; a TAT in the past reads like no key.
      call('SET', key, format('%d', r.tat), 'PX', max(ceil(r.capacity * r.interval / 1000), 1))
    else
      call('DEL', key)
    end
  end
else
  -- Fixed window ----------------------------------------------------------------------------------------------
  function inspect(r, key, c)
    local period, capacity = r.period, r.capacity
    local index, count = fixed_state(key, period)
    local after = max(count + c, 0)
    r.window_index, r.count, r.reset = index, after, (index + 1) * period
    if c <= 0 or after <= capacity then
      r.ok, r.remaining = true, max(capacity - (peek and count or after), 0)
    else
      r.ok, r.remaining, r.retry = false, max(capacity - count, 0), r.reset
    end
  end

  function commit(r, key)
    -- Kept a whole period, not just to the window's end, for the same reason as GCRA's: a count of an
    -- earlier window reads like no key.
    call('SET', key, format('%d:%d', r.window_index, r.count), 'PX', max(ceil(r.period / 1000), 1))
  end
end

-- One check -----------------------------------------------------------------------------------------------------

-- The binding rule of `rs`: when admitted the one with the least left; when refused the one that frees up
-- last, or (refused by the block alone) the one with the least left. Returns its index and that latest retry
-- time (NEVER when a cost exceeds its capacity).
local NEVER = math.huge
local function binding_rule(rs, allowed)
  local binding, latest = 1, -1
  if not allowed then
    for i = 1, nrules do
      local r = rs[i]
      if not r.ok and r.retry > latest then binding, latest = i, r.retry end
    end
  end
  if latest < 0 then
    for i = 2, nrules do
      if rs[i].remaining < rs[binding].remaining then binding = i end
    end
  end
  return binding, latest
end

-- The id's policy (its hash: allow, deny, rules): 'allow' or 'deny' when listed (deny wins), else the rules in
-- force, the override's when there is one ('limit window burst' per rule, ';' between rules).
local function read_policy(key)
  local p = call('HMGET', key, 'allow', 'deny', 'rules')
  if p[2] then return 'deny' end
  if p[1] then return 'allow' end
  if not p[3] then return rules end
  local rs = {}
  for limit_s, window_s, burst in string.gmatch(p[3], '([^ ;]+) ([^ ;]+) ([^ ;]*)') do
    local r, wrong = rule_record(limit_s, window_s, burst)
    if r == nil then error(redis.error_reply(E .. 'override: ' .. wrong)) end
    rs[#rs + 1] = r
  end
  if #rs ~= nrules then error(redis.error_reply(E .. 'override must have one rule per rule of the call')) end
  return rs
end

-- The reply of a listed id, as a rich reply: allowed with rule 1 untouched, or refused for good (retry -1).
local function listed_reply(listed)
  local r = rules[1]
  if listed == 'allow' then return { 1, r.capacity, 0, 0, 0, 1, r.capacity, r.period } end
  return { 0, 0, 0, -1, 0, 2, r.capacity, r.period }
end

-- One check of the keys from KEYS[offset + 1] on, at cost c: reads every rule, then writes all or none.
local function check(offset, c)
  local request_key = request_id ~= '' and KEYS[nkeys] or nil
  if request_key and not peek then
    local seen = call('GET', request_key)
    if seen then
      -- A request id seen before: its reply again, as it was stored.
      local out = {}
      for v in string.gmatch(seen, '%-?%d+') do out[#out + 1] = tonumber(v) end
      return out
    end
  end
  local block_key = block_ms > 0 and KEYS[offset + nrules + 1]
  local rs = rules
  if policy then
    rs = read_policy(KEYS[offset + nrules + (block_key and 2 or 1)])
    if type(rs) == 'string' then return listed_reply(rs) end
  end

  local allowed = true
  for i = 1, nrules do
    local r = rs[i]
    inspect(r, KEYS[offset + i], c)
    -- Only an override can make a cost exceed a capacity: no wait admits it.
    if c > r.capacity then r.ok, r.retry = false, NEVER end
    if not r.ok then allowed = false end
  end
  local blocked_until = block_key and tonumber(call('GET', block_key) or '')
  if blocked_until and blocked_until <= now then blocked_until = nil end
  if blocked_until then allowed = false end

  if allowed and c ~= 0 and not peek then
    for i = 1, nrules do commit(rs[i], KEYS[offset + i], c) end
  end

  if not rich then return allowed and rs[1].remaining + 1 or 0 end
  local binding, latest = binding_rule(rs, allowed)
  local retry = latest >= 0 and latest - now or 0
  if blocked_until then
    retry = max(retry, blocked_until - now)
  elseif block_key and not allowed and not peek then
    -- This refusal starts the block.
    call('SET', block_key, format('%d', now + block_ms * 1000), 'PX', max(ceil(block_ms), 1))
    retry = max(retry, block_ms * 1000)
  end

  local r = rs[binding]
  local reply = { allowed and 1 or 0, r.remaining, max(r.reset - now, 0), retry == NEVER and -1 or max(retry, 0), binding - 1 }
  if short and nargs == 3 then return allowed and format('1 %d %d', reply[2], reply[3]) or format('0 %d %d %d', reply[2], reply[3], reply[4]) end
  if policy then reply[6], reply[7], reply[8] = 0, r.capacity, r.period end
  if request_key and not peek then
    local longest, parts = block_ms * 1000, {}
    for i = 1, nrules do longest = max(longest, rs[i].period) end
    for i = 1, #reply do parts[i] = format('%d', reply[i]) end
    call('SET', request_key, table.concat(parts, ' '), 'PX', max(ceil(longest / 1000), 1))
  end
  return reply
end

-- Entry point ---------------------------------------------------------------------------------------------------

if batch_size then
  local out = fast_out or {}
  for j = fast_from or 1, batch_size do out[j] = check((j - 1) * group_size, batch_costs[j]) end
  return out
end
return check(0, cost)
