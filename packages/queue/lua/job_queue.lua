--[[
job_queue.lua: a crash-safe job queue with priorities, delays, leases, retries with backoff and dead letters.

KEYS (the seed's four; every key of one queue must share one hash tag on Redis Cluster)
  KEYS[1] queue       ZSET of waiting jobs: member = job id, score = (1000 - priority) * 2^42 + sequence, so
                      ZPOPMIN serves the highest priority first and FIFO within a priority
  KEYS[2] processing  ZSET of leased jobs: member = job id, score = lease deadline (ms)
  KEYS[3] failed      ZSET of jobs that failed and wait for their retry: score = retry time (ms)
  KEYS[4] dead        ZSET of dead letters: score = time of death (ms)
  Derived from KEYS[1] (same hash tag, so declare none of them):
  KEYS[1]..':delayed' ZSET of jobs pushed with a delay: score = ready time (ms)
  KEYS[1]..':jobs'    HASH id -> "<priority>:<max_retries>:<data>" (immutable while the job lives)
  KEYS[1]..':state'   HASH id -> "<attempts>:<lease token>:<last error>" (from the first pop on)
  KEYS[1]..':meta'    HASH seq (waiting sequence), lease (last lease token), completed (count)
  KEYS[1]..':wake'    LIST holding at most one "1": pushed while jobs wait, so idle workers BLPOP it

ARGV[1] is the operation, ARGV[2] current_time: seconds since the epoch (fractions allowed, kept to the
millisecond), or "*" for the server's TIME. Use one clock per queue. Optional trailing ARGV switch on the
TypeScript API's richer replies; the seed calls (first five operations, without them) work as written.

  PUSH  <current_time> <job_id> <job_data> <priority> <max_retries> <delay_seconds>
        -> 1 when queued, 0 when a job with this id exists (nothing is written).
        priority: integer in [-1000, 1000], higher first; max_retries: integer in [0, 1000], a job runs at
        most max_retries + 1 times; delay_seconds: number in [0, 31536000]; data: at most 1 MiB; id: 1 to
        1024 bytes.
  POP   <current_time> <count> [lease_ms] [full]
        -> seed shape: { {id, data}, ... } up to count (1..1000) jobs, leased for lease_ms (default 30000).
        With full = "1": { wait_ms, id, data, priority, attempts, max_retries, lease_token, ... } where
        wait_ms is 0 if jobs still wait, else ms until the next delayed/retry/lease event, or -1 for none.
        Before popping, a POP reclaims up to 256 expired leases (back to the queue, or dead once the attempt
        that expired was the last) and moves up to 256 due delayed and 256 due retry jobs to the queue.
  COMPLETE <current_time> <job_id> [lease_token]
        -> 1 when completed (record deleted, completed counter + 1), 0 when the job is not leased (unknown,
        already completed, reclaimed) or, with a token, leased under another token. A repeat is harmless.
  FAIL  <current_time> <job_id> <error_message> [lease_token] [backoff_base_ms] [backoff_max_ms]
        -> { "retry", retry_at_ms } while attempts <= max_retries: waits in `failed` for
           min(max, base * 2^(attempts-1)) ms, jittered down by up to half (defaults 1000 and 60000);
           { "dead", died_at_ms } once attempts > max_retries; { "lost", 0 } as COMPLETE's 0.
        The error is kept (cut to 1000 bytes) with the job.
  STATS <current_time>
        -> { "waiting", n, "delayed", n, "processing", n, "failed", n, "dead", n, "completed", n }
  PUSHN <current_time> <n> then n times <job_id> <job_data> <priority> <max_retries> <delay_seconds>
        -> { 1|0, ... } per job as PUSH (n in 1..1000; a repeated id within one call is a duplicate).
  ACK   <current_time> <lease_ms> <fetch> <n> then n times <job_id> <lease_token>
        -> { {1|0, ...}, wait_ms, jobs as POP full ... }: completes n (0..1000) jobs, then pops up to fetch
        (0..1000) more, in one call.
  EXTEND <current_time> <lease_ms> <n> then n times <job_id> <lease_token>
        -> { 1|0, ... }: renews each lease that is still held under that token to now + lease_ms.
  RELEASE <current_time> <job_id> <lease_token>
        -> 1 when the leased job went back to the queue without its attempt counted, else 0.
  RETRYDEAD <current_time> <count>
        -> number of dead jobs (oldest first, at most count in 1..1000) moved back to the queue with their
        attempts reset.
  DEAD  <current_time> <count>
        -> { id, data, attempts, error, died_at_ms, ... } for the count (1..1000) most recent dead jobs.

Retention: a completed job is deleted at once (only counted). The dead letter set keeps at most 10000 jobs
for at most 7 days; older or excess ones are deleted (up to 100 per call that adds dead jobs).

Errors: bad input (unknown op, missing or non-numeric or out-of-range numbers, empty or long id, data over
1 MiB, a sequence that would pass 2^42 while jobs wait) -> an "ERR job_queue: ..." reply, written nothing.

Complexity: PUSH O(log N); POP/ACK O((count + n + 768) log N); COMPLETE, FAIL, RELEASE O(log N) plus up to
100 dead-letter deletions; EXTEND O(n log N); STATS O(1); RETRYDEAD, DEAD O(count log N).
]]

local MAX_BATCH = 1000
local MAX_DATA = 1048576
local MAX_ID = 1024
local MAX_ERROR = 1000
local MAX_PRIORITY = 1000
local MAX_RETRIES = 1000
local MAX_DELAY_S = 31536000
local SEQ_SPAN = 4398046511104 -- 2^42: 2001 priorities * 2^42 stays below 2^53, so scores are exact
local MOVE_LIMIT = 256
local DEAD_MAX = 10000
local DEAD_AGE_MS = 7 * 24 * 3600 * 1000
local DEAD_TRIM = 100
local DEFAULT_LEASE_MS = 30000
local MAX_LEASE_MS = 86400000

local waiting, processing, failed, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local delayed = waiting .. ':delayed'
local jobs = waiting .. ':jobs'
local state = waiting .. ':state'
local meta = waiting .. ':meta'
local wake = waiting .. ':wake'

local function bad(message)
  error({ err = 'ERR job_queue: ' .. message })
end

local function number(name, value, min, max, integer)
  local n = tonumber(value)
  if n == nil or n ~= n or n < min or n > max then
    bad(name .. ' must be a number in [' .. min .. ', ' .. max .. '], got ' .. tostring(value))
  end
  if integer and n ~= math.floor(n) then bad(name .. ' must be an integer, got ' .. tostring(value)) end
  return n
end

local function id_arg(name, value)
  if type(value) ~= 'string' or #value == 0 or #value > MAX_ID then
    bad(name .. ' must be a string of 1 to ' .. MAX_ID .. ' bytes')
  end
  return value
end

local function clock(value)
  if value == '*' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return math.floor(number('current_time', value, 0, 1e11) * 1000 + 0.5)
end

if #KEYS ~= 4 then bad('takes 4 keys (queue, processing, failed, dead), got ' .. #KEYS) end
local op = ARGV[1]
local now = clock(ARGV[2])

-- Waiting scores need a fresh sequence number; it restarts only when nothing waits, so FIFO holds.
local seq, seq_dirty
local function load_seq(needed)
  seq = tonumber(redis.call('HGET', meta, 'seq') or '0')
  if seq + needed >= SEQ_SPAN then
    if redis.call('ZCARD', waiting) > 0 then bad('sequence space exhausted while jobs wait; drain the queue') end
    seq = 0
  end
end

local function save_seq()
  if seq_dirty then redis.call('HSET', meta, 'seq', seq) end
  seq_dirty = false
end

local function enqueue(id, priority)
  seq = seq + 1
  seq_dirty = true
  redis.call('ZADD', waiting, (MAX_PRIORITY - priority) * SEQ_SPAN + seq, id)
end

local function parse_record(rec)
  local a = string.find(rec, ':', 1, true)
  local b = string.find(rec, ':', a + 1, true)
  return tonumber(string.sub(rec, 1, a - 1)), tonumber(string.sub(rec, a + 1, b - 1)), b
end

local function read_state(id)
  local s = redis.call('HGET', state, id)
  if not s then return 0, '', '' end
  local a = string.find(s, ':', 1, true)
  local b = string.find(s, ':', a + 1, true)
  return tonumber(string.sub(s, 1, a - 1)), string.sub(s, a + 1, b - 1), string.sub(s, b + 1)
end

local function write_state(id, attempts, token, err)
  redis.call('HSET', state, id, attempts .. ':' .. token .. ':' .. err)
end

local function signal()
  if redis.call('LLEN', wake) == 0 and redis.call('ZCARD', waiting) > 0 then redis.call('RPUSH', wake, '1') end
end

local function forget(id)
  redis.call('HDEL', jobs, id)
  redis.call('HDEL', state, id)
end

local function bury(id, attempts, err)
  write_state(id, attempts, '0', err)
  redis.call('ZADD', dead, now, id)
end

-- Retention: drop the oldest dead letters past the count cap, then those past the age cap.
local function trim_dead()
  local over = redis.call('ZCARD', dead) - DEAD_MAX
  if over > 0 then
    for _, id in ipairs(redis.call('ZRANGE', dead, 0, math.min(over, DEAD_TRIM) - 1)) do
      redis.call('ZREM', dead, id)
      forget(id)
    end
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', dead, '-inf', now - DEAD_AGE_MS, 'LIMIT', 0, DEAD_TRIM)) do
    redis.call('ZREM', dead, id)
    forget(id)
  end
end

local function promote(source)
  local ids = redis.call('ZRANGEBYSCORE', source, '-inf', now, 'LIMIT', 0, MOVE_LIMIT)
  if #ids == 0 then return end
  redis.call('ZREM', source, unpack(ids))
  for _, id in ipairs(ids) do
    enqueue(id, (parse_record(redis.call('HGET', jobs, id))))
  end
end

-- An expired lease ends the attempt it was granted for: the job waits again, or dies after its last one.
local function reclaim()
  local ids = redis.call('ZRANGEBYSCORE', processing, '-inf', now, 'LIMIT', 0, MOVE_LIMIT)
  if #ids == 0 then return 0 end
  redis.call('ZREM', processing, unpack(ids))
  local buried = 0
  for _, id in ipairs(ids) do
    local priority, max_retries = parse_record(redis.call('HGET', jobs, id))
    local attempts = read_state(id)
    if attempts > max_retries then
      bury(id, attempts, 'lease expired')
      buried = buried + 1
    else
      write_state(id, attempts, '0', 'lease expired')
      enqueue(id, priority)
    end
  end
  return buried
end

local function wait_ms()
  if redis.call('ZCARD', waiting) > 0 then return 0 end
  local best = -1
  for _, key in ipairs({ delayed, failed, processing }) do
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if first[2] then
      local d = math.max(0, tonumber(first[2]) - now)
      if best < 0 or d < best then best = d end
    end
  end
  return best
end

-- Leases `count` jobs; appends them to `out` (seed pairs, or flat groups of six when `full`).
local function pop(count, lease_ms, full, out)
  local buried = reclaim()
  promote(delayed)
  promote(failed)
  save_seq()
  if buried > 0 then trim_dead() end
  if count > 0 then
    local popped = redis.call('ZPOPMIN', waiting, count)
    local n = #popped / 2
    if n > 0 then
      local token = redis.call('HINCRBY', meta, 'lease', n) - n
      local deadline = now + lease_ms
      local leases = {}
      for i = 1, n do
        local id = popped[2 * i - 1]
        local rec = redis.call('HGET', jobs, id)
        local priority, max_retries, at = parse_record(rec)
        local attempts, _, err = read_state(id)
        attempts = attempts + 1
        token = token + 1
        write_state(id, attempts, token, err)
        leases[2 * i - 1] = deadline
        leases[2 * i] = id
        if full then
          local k = #out
          out[k + 1] = id
          out[k + 2] = string.sub(rec, at + 1)
          out[k + 3] = priority
          out[k + 4] = attempts
          out[k + 5] = max_retries
          out[k + 6] = tostring(token)
        else
          out[#out + 1] = { id, string.sub(rec, at + 1) }
        end
      end
      redis.call('ZADD', processing, unpack(leases))
    end
  end
  signal()
end

-- The job's state when `id` is leased (under `token`, if given), else nil.
local function leased(id, token)
  if not redis.call('ZSCORE', processing, id) then return nil end
  local attempts, held, err = read_state(id)
  if token and token ~= held then return nil end
  return attempts, held, err
end

local function check_push(base, id_name)
  local id = id_arg(id_name, ARGV[base])
  local data = ARGV[base + 1]
  if data == nil then bad('job_data is missing') end
  if #data > MAX_DATA then bad('job_data must be at most ' .. MAX_DATA .. ' bytes, got ' .. #data) end
  local priority = number('priority', ARGV[base + 2], -MAX_PRIORITY, MAX_PRIORITY, true)
  local max_retries = number('max_retries', ARGV[base + 3], 0, MAX_RETRIES, true)
  local delay = number('delay_seconds', ARGV[base + 4], 0, MAX_DELAY_S, false)
  return id, data, priority, max_retries, math.floor(delay * 1000 + 0.5)
end

local function push(id, data, priority, max_retries, delay_ms)
  if redis.call('HSETNX', jobs, id, priority .. ':' .. max_retries .. ':' .. data) == 0 then return 0 end
  if delay_ms > 0 then
    redis.call('ZADD', delayed, now + delay_ms, id)
  else
    enqueue(id, priority)
  end
  return 1
end

local function pairs_arg(base, n)
  local list = {}
  for i = 1, n do
    list[i] = { id_arg('job_id', ARGV[base + 2 * i - 2]), id_arg('lease_token', ARGV[base + 2 * i - 1]) }
  end
  return list
end

if op == 'PUSH' then
  local id, data, priority, max_retries, delay_ms = check_push(3, 'job_id')
  load_seq(1)
  local added = push(id, data, priority, max_retries, delay_ms)
  if added == 1 and delay_ms == 0 then
    save_seq()
    signal()
  end
  return added
elseif op == 'PUSHN' then
  local n = number('n', ARGV[3], 1, MAX_BATCH, true)
  if #ARGV ~= 3 + 5 * n then bad('PUSHN with n = ' .. n .. ' takes ' .. (3 + 5 * n) .. ' arguments, got ' .. #ARGV) end
  local batch = {}
  for i = 1, n do batch[i] = { check_push(4 + 5 * (i - 1), 'job_id') } end
  load_seq(n)
  local out = {}
  for i = 1, n do out[i] = push(unpack(batch[i])) end
  save_seq()
  signal()
  return out
elseif op == 'POP' then
  local count = number('count', ARGV[3], 1, MAX_BATCH, true)
  local lease_ms = DEFAULT_LEASE_MS
  if ARGV[4] ~= nil then lease_ms = number('lease_ms', ARGV[4], 1, MAX_LEASE_MS, true) end
  local full = ARGV[5] == '1'
  load_seq(3 * MOVE_LIMIT)
  local out = {}
  if full then out[1] = 0 end
  pop(count, lease_ms, full, out)
  if full then out[1] = wait_ms() end
  return out
elseif op == 'ACK' then
  local lease_ms = number('lease_ms', ARGV[3], 1, MAX_LEASE_MS, true)
  local fetch = number('fetch', ARGV[4], 0, MAX_BATCH, true)
  local n = number('n', ARGV[5], 0, MAX_BATCH, true)
  if #ARGV ~= 5 + 2 * n then bad('ACK with n = ' .. n .. ' takes ' .. (5 + 2 * n) .. ' arguments, got ' .. #ARGV) end
  local acks = pairs_arg(6, n)
  load_seq(3 * MOVE_LIMIT)
  local results = {}
  local done = 0
  for i = 1, n do
    local id = acks[i][1]
    if leased(id, acks[i][2]) then
      redis.call('ZREM', processing, id)
      forget(id)
      done = done + 1
      results[i] = 1
    else
      results[i] = 0
    end
  end
  if done > 0 then redis.call('HINCRBY', meta, 'completed', done) end
  local out = { results, 0 }
  pop(fetch, lease_ms, true, out)
  out[2] = wait_ms()
  return out
elseif op == 'COMPLETE' then
  local id = id_arg('job_id', ARGV[3])
  local token = ARGV[4] and id_arg('lease_token', ARGV[4])
  if not leased(id, token) then return 0 end
  redis.call('ZREM', processing, id)
  forget(id)
  redis.call('HINCRBY', meta, 'completed', 1)
  return 1
elseif op == 'FAIL' then
  local id = id_arg('job_id', ARGV[3])
  local message = ARGV[4]
  if message == nil then bad('error_message is missing') end
  local token = ARGV[5] and id_arg('lease_token', ARGV[5])
  local base = 1000
  local cap = 60000
  if ARGV[6] ~= nil then base = number('backoff_base_ms', ARGV[6], 0, MAX_LEASE_MS, true) end
  if ARGV[7] ~= nil then cap = number('backoff_max_ms', ARGV[7], base, MAX_LEASE_MS, true) end
  local attempts, held = leased(id, token)
  if not attempts then return { 'lost', 0 } end
  local _, max_retries = parse_record(redis.call('HGET', jobs, id))
  local err = string.sub(message, 1, MAX_ERROR)
  redis.call('ZREM', processing, id)
  if attempts > max_retries then
    bury(id, attempts, err)
    trim_dead()
    return { 'dead', now }
  end
  local delay = math.min(cap, base * 2 ^ (attempts - 1))
  -- Scripts start with a fixed seed; seed from time and token so retries of many jobs spread out.
  math.randomseed((now + (tonumber(held) or 0) * 7919) % 2147483647)
  local at = now + math.floor(delay / 2 + math.random() * delay / 2)
  write_state(id, attempts, '0', err)
  redis.call('ZADD', failed, at, id)
  return { 'retry', at }
elseif op == 'STATS' then
  return {
    'waiting', redis.call('ZCARD', waiting),
    'delayed', redis.call('ZCARD', delayed),
    'processing', redis.call('ZCARD', processing),
    'failed', redis.call('ZCARD', failed),
    'dead', redis.call('ZCARD', dead),
    'completed', tonumber(redis.call('HGET', meta, 'completed') or '0'),
  }
elseif op == 'EXTEND' then
  local lease_ms = number('lease_ms', ARGV[3], 1, MAX_LEASE_MS, true)
  local n = number('n', ARGV[4], 1, MAX_BATCH, true)
  if #ARGV ~= 4 + 2 * n then bad('EXTEND with n = ' .. n .. ' takes ' .. (4 + 2 * n) .. ' arguments, got ' .. #ARGV) end
  local list = pairs_arg(5, n)
  local out = {}
  for i = 1, n do
    if leased(list[i][1], list[i][2]) then
      redis.call('ZADD', processing, 'XX', now + lease_ms, list[i][1])
      out[i] = 1
    else
      out[i] = 0
    end
  end
  return out
elseif op == 'RELEASE' then
  local id = id_arg('job_id', ARGV[3])
  local token = id_arg('lease_token', ARGV[4])
  local attempts, _, err = leased(id, token)
  if not attempts then return 0 end
  load_seq(1)
  redis.call('ZREM', processing, id)
  write_state(id, attempts - 1, '0', err)
  enqueue(id, (parse_record(redis.call('HGET', jobs, id))))
  save_seq()
  signal()
  return 1
elseif op == 'RETRYDEAD' then
  local count = number('count', ARGV[3], 1, MAX_BATCH, true)
  load_seq(count)
  local popped = redis.call('ZPOPMIN', dead, count)
  for i = 1, #popped, 2 do
    local id = popped[i]
    redis.call('HDEL', state, id)
    enqueue(id, (parse_record(redis.call('HGET', jobs, id))))
  end
  save_seq()
  signal()
  return #popped / 2
elseif op == 'DEAD' then
  local count = number('count', ARGV[3], 1, MAX_BATCH, true)
  local out = {}
  local list = redis.call('ZREVRANGE', dead, 0, count - 1, 'WITHSCORES')
  for i = 1, #list, 2 do
    local id = list[i]
    local rec = redis.call('HGET', jobs, id)
    local _, _, at = parse_record(rec)
    local attempts, _, err = read_state(id)
    local k = #out
    out[k + 1] = id
    out[k + 2] = string.sub(rec, at + 1)
    out[k + 3] = attempts
    out[k + 4] = err
    out[k + 5] = tonumber(list[i + 1])
  end
  return out
end
bad('unknown op ' .. tostring(op) .. '; expected PUSH, POP, COMPLETE, FAIL, STATS, PUSHN, ACK, EXTEND, RELEASE, RETRYDEAD or DEAD')
