--[[
job_queue.lua: a crash-safe job queue with priorities, delays, leases, retries with backoff and dead letters.
The file reads top to bottom as one section per operation (each opens with its own KEYS, ARGV and reply),
cheapest first; shared helpers sit just before the first section that needs them.

FORMATS. Public contract (the seed's raw EVALSHA calls; frozen, they keep working exactly as written):
  PUSH, POP (without `full`), COMPLETE, FAIL, STATS, each with the four seed KEYS. Everything else is
  internal to @cyredis/queue (its src/protocol.ts is the one place that builds and reads it) and may change
  with the package: PUSHN, ACK, EXTEND, RELEASE, RETRYDEAD, DEAD and the inspection and control operations
  (PAUSED, GETJOB, GETJOBS, LOGS, LOG, PROGRESS, REMOVE, PROMOTE, RETRYJOB, PAUSE, DRAIN, CLEAN,
  OBLITERATE), the group and scheduler operations (GROUPOPTS, GROUPPAUSE, SCHEDULE, SCHEDNEXT, SCHEDGET,
  SCHEDULERS, UNSCHEDULE), RELEASE's pause_ms, the LIMITS of the policy, the optional trailing ARGV of the
  public operations (POP's full and request, COMPLETE's lease_token, return_value, FAIL's lease_token and
  final, PUSH's "<max_retries>,<base_ms>,<max_ms>" policy), the POLICY form of current_time, the EVENTS
  entries and the stored formats below.

KEYS: 4 (the seed's, public), 17 (all declared) or 18 (all declared and a request's memo; both internal);
PUSHN takes the seventeen and then one dedup key per job pushed with a dedup (see PUSHN).
Every key of one queue shares one hash tag on Redis Cluster.
  KEYS[1] queue       ZSET of the priorities that have waiting jobs: member = priority, score = -priority
  KEYS[2] processing  ZSET of leased jobs: member = job id, score = lease deadline (ms)
  KEYS[3] failed      ZSET of jobs that failed and wait for their retry: score = retry time (ms)
  KEYS[4] dead        ZSET of dead letters: score = time of death (ms)
  KEYS[5] queue..':delayed' ZSET of jobs pushed with a delay: score = ready time (ms)
  KEYS[6] queue..':jobs'    HASH id -> "<priority>:<policy>@<created_ms>:<data>" (immutable while the job
                      lives); policy is the job's retry policy as pushed: "<max_retries>" or
                      "<max_retries>,<base_ms>,<max_ms>"; created_ms the push time (records written before
                      it was kept have no "@<created_ms>")
  KEYS[7] queue..':state'   HASH id -> "<attempts>:<lease token>:<last error>" (from the first pop on). STATE:
                      the token is the lease's while the job is leased; once the lease ended it is
                      "~<token>" (retry, release, expiry, death) or "=<token>" (completed), which no
                      caller holds (older states say "0"). A token is at least the time in microseconds when it was granted,
                      so token / 1000 is when that run began (processedAt)
  KEYS[8] queue..':meta'    HASH waiting (count), lease (last lease token), completed (count), ids (last auto
                      id), audit (cursor of the audit under way), audited (ms when the last audit ended),
                      paused ("1" while paused), tat and until (see LIMITS), gwaiting (jobs waiting in
                      groups) and gseq (see GROUPS), gsweep and gswept (see RECOVERY), obliterate (the
                      cursor of an OBLITERATE under way)
  KEYS[9] queue..':wake'    LIST holding at most one "1", pushed when jobs wait or a delay/retry is
                      scheduled, so idle workers block on it (BLPOP) instead of polling
  KEYS[10] queue..':completed' ZSET of completed jobs kept (see POLICY): score = when completed (ms)
  KEYS[11] queue..':events'    STREAM of events (see EVENTS)
  KEYS[12] queue..':info'      HASH INFO: "p:"..id -> progress (JSON text), "r:"..id -> return value (the
                      codec's text), "l:"..id -> lines logged, "l:"..id..":"..k -> log line k mod 100 (the
                      last 100 kept); deleted with the job's record
  KEYS[13] queue..':groups'    HASH GROUPS: "j:"..id -> the group of a job pushed with one (while its record
                      lives), "s:"..group -> its leased jobs (while it has jobs waiting or leased),
                      "o:"..group -> "<concurrency>,<rate_limit>,<rate_window_ms>" (GROUPOPTS; kept),
                      "p:"..group -> "1" while paused, "t:"..group -> its rate limit's tat (ms)
  KEYS[14] queue..':gready'    ZSET of the groups that may lease now: score = a round-robin sequence
                      (meta gseq), so the first is the one served longest ago
  KEYS[15] queue..':glimited'  ZSET of groups with waiting jobs held by their rate limit: score = the ms
                      of their next slot
  KEYS[16] queue..':schedulers' HASH SCHEDULERS: scheduler id -> its record (see SCHEDULE)
  KEYS[17] queue..':gwait'     ZSET of the groups with jobs waiting in their lists, every score 0 (so by
                      name, bytewise): GETJOBS, DRAIN, OBLITERATE and RECOVERY walk it in bounded steps
  KEYS[18] queue..':req:'..request_lane  a request's memo (see REQUESTS), only with a request
  KEYS[5..18] must be named exactly so (checked). A seed call with only the four derives them from KEYS[1].
  UNDECLARED (derived in the script from KEYS[1], same hash tag, so they land on the same shard):
  queue..':w:'..p     LIST of the job ids waiting at priority p, served from the head: FIFO within a
                      priority; a job whose lease expired or was released goes back to the head. Which
                      lists a POP reads is decided inside the script (the highest priority in KEYS[1]),
                      and a repair reads all 2001, so they cannot be declared; servers that refuse
                      undeclared keys must allow them (Dragonfly:
                      --default_lua_flags=allow-undeclared-keys, or SCRIPT FLAGS <sha> allow-undeclared-keys).
  queue..':g:'..group LIST of the job ids waiting in a group, FIFO (a lease that ended goes back to the
                      head); which group a POP serves is decided inside the script, as for the priorities.

GROUPS: a job pushed with a group waits in its group's list, whatever its priority, and counts in meta
`gwaiting` (STATS adds it to waiting). A POP or ACK leases ungrouped jobs first (by priority), then from
the groups: the head of the first group in `gready`, which then moves to the back (round robin) or, at
its concurrency (default 1) or rate limit, paused or empty, out of `gready`: O(log groups) per job, and
a group that cannot lease is never looked at. A lease of a grouped job that ends (COMPLETE, ACK, FAIL,
RELEASE, an expired lease, REMOVE) gives its group the slot back. A group with nothing waiting or leased
keeps no key and no field but its options and pause flag (and its tat until it passes). A group with
jobs in its list is in `gwait` (by name): GETJOBS, DRAIN and OBLITERATE walk it in bounded steps.

ARGV[1] is the operation, ARGV[2] current_time: seconds since the epoch (fractions allowed, kept to the
millisecond), or "*" for the server's TIME. Use one clock per queue. Each section below gives the rest.

POLICY (internal): current_time "[seconds]*<events>,<max_len>,<keep>,<keep_ms>,<keep_dead>,<keep_dead_ms>" is
the time (the server's TIME when no seconds come before the "*") plus what the call does beyond its
operation: events 1 writes EVENTS (the stream keeps about max_len events, 1..1000000: each entry trims
it to max_len / its number of events entries); keep and keep_ms (-1: no limit) are how many completed
jobs `completed` keeps and for how long, 0 deleting them at once; keep_dead and keep_dead_ms the same for `dead`. Without
it (the seed calls): no events, completed jobs deleted at once, dead jobs kept 10000 / 7 days. The
finishing call trims (oldest first, at most as many as it adds plus 100 by count, and up to 100 + its
count by age), so retention is O(1) amortised with no sweeper. A keep of 32 or more is trimmed in
batches: only the call whose completions take meta `completed` past a multiple of min(64, floor(keep /
16)) trims `completed` (by count and by age), so it holds up to that batch less one over keep between
trims; dead letters are trimmed by every call that adds some.

LIMITS (internal): current_time's policy may end with ",<rate_limit>,<rate_window_ms>,<concurrency>" (0:
none), the queue-wide limits POP and ACK enforce when they lease: at most `concurrency` jobs leased at once
(ZCARD processing, the call's own completions not counted), and at most rate_limit leases in any
rate_window_ms, spread evenly: a GCRA without burst (meta `tat`, the theoretical arrival time in ms; each
lease moves it window / limit on), so a call leases at most one job while a rate limit is set. A
RELEASE with pause_ms stops all leasing until meta `until`. A call held back leases nothing and answers
wait_ms: the ms to the next rate slot or the pause's end, or -1 (block until woken: a finished job frees a
slot and wakes one worker, since COMPLETE, FAIL and RELEASE wake one and ACK leases into the slots it
frees); it wakes no other worker. Every instance of a queue should pass the same limits.

EVENTS (internal): a call that changes jobs with events on writes one stream entry (XADD MAXLEN) holding
its events in order (a call with thousands writes a few entries, each event whole in one), after its
other writes, so an event never stands for a change that did not happen. Each event is the field
<name> with the job id ('' for queue events), followed by its extra fields: r (return value, completed),
f (reason, retrying and dead), t (ready time in ms, delayed and retrying), p (progress JSON, progress).
Names: added, delayed (pushed with a delay), waiting (a delay or retry came due, promoted, released,
retried from dead), active (leased), progress, completed, retrying, dead, removed (REMOVE, DRAIN, CLEAN;
retention trims write none), stalled (a lease ran out: waiting again, or dead after its last attempt,
which also writes dead), paused, resumed, drained (a POP/ACK took the last waiting job).

REQUESTS: ioredis resends a call whose reply a reset lost, and a caller retries one whose outcome is
unknown, so a POP or ACK may run twice. A request names the call: request_lane (1 to 1024 bytes) and
request_seq (an integer >= 0, new for each call on its lane). Its first run is remembered in its lane,
replacing the lane's previous call, for lease_ms and at least 60 s (a resend waits for the reconnection,
which may outlast a short lease), in
  queue..':req:'..request_lane  STRING (KEYS[18], or derived from KEYS[1]): "<request_seq>:" then three
                                MessagePack values: the completion results string, the lease token and the
                                leased job ids {job_id, ...}
and a repeat with the same lane and seq writes nothing and answers as the first run did: the same
completion results, and the jobs it leased that are still leased under its token (instead of leasing
more while the first run's jobs sit out their leases, and instead of calling jobs it completed lost). So
memory is one memo per lane: give each call in flight its own lane, and reuse a lane only once its last
call was answered. A call that completed and leased nothing is not remembered: its repeat runs as a new
call, which is harmless.

RECOVERY: every job is in exactly one place: a waiting list, `processing`, `delayed`, `failed`, `dead` or
`completed`.
Eviction or a DEL can break that. What each call does about it, never leaving a job in no state:
  - a job id whose record is gone is dead-lettered ("record lost") where a call meets it (POP, FAIL,
    RELEASE, a due delay, retry or lease) and never returned;
  - a POP that leaves the waiting lists empty compares the waiting count with the lists (a lost list or
    priority index or `meta`) and the record count with the sets, `completed` included (a lost set): on
    a difference, and
    every 60 s of server time in any case, it rebuilds the priority index and the count from the
    lists (one EXISTS of the 2001 list names and an LLEN per indexed priority; 2001 LLEN when a list
    lost its index entry) and then audits the records, 100 per POP while the lists stay empty: a record in
    no place goes back where it can run again: leased before (its lease set was lost) -> leased again
    for this call's lease_ms, so its worker can still complete it; dead before -> dead; else (a lost
    delay or retry) -> waiting at the head, so a delayed job may run early;
  - a waiting count read negative (a lost `meta`) is rebuilt from the lists at once; STATS never
    reports less than 0;
  - lease tokens stay unique when `meta` is lost: every token is at least the server time in
    microseconds, above every token given before (unless the server clock stepped back);
  - a lost `completed` set: the audit finds its jobs' records (their state says completed) and puts them
    back, completed at the audit's time; a lost `info` loses progress, return values and logs only;
    a lost `events` stream loses events only;
  - a request memo that cannot be read counts as absent (the call runs as new);
  - groups: "empty" above means `gwait` too is empty, and the audit checks grouped records as well: a
    record of a group whose list is empty and in no set goes back to the head of its group; a group list
    holding jobs that `gwait` does not name is indexed again (its jobs added to meta `gwaiting`, which is
    reset to 0 when it counts jobs while `gwait` is empty) and its jobs are left to a later pass;
    a group named in `gwait` whose list is gone leaves it when next placed. A POP that finds no group
    ready re-places (`place_group`) the groups of `gwait`, 100 per call (meta `gsweep`), a pass at most
    every 60 s (meta `gswept`) or at once when `groups` is empty while `gwait` is not (a lost `groups`:
    its "s:" counters, "j:" links, options and pauses); each grouped lease writes its "j:" link again, a
    counter never goes below 0, and a sweep by a call that finds nothing leased at all (`processing` empty)
    sets the counters it passes to 0 (leases a lost `processing` took; the audit re-leases their jobs), so
    no group stays at its concurrency. A lost `groups` and `gwait`
    together can leave a job both in its group's list and requeued ungrouped by the audit (run twice).
Keys of another type than the ones above (a key overwritten by hand) make calls fail with WRONGTYPE.

Retention (see POLICY): completed jobs go to `completed` or, when none are kept, are deleted at once
(always counted); dead letters stay in `dead`; each set is trimmed by the call that adds to it.

Errors: bad input (unknown op, wrong key count or names, missing or non-numeric or out-of-range numbers,
empty or long id, data over 1 MiB, a bad retry policy) -> an "ERR job_queue: ..." reply, written nothing.
A lost key is never an error (see RECOVERY).

Complexity: PUSH O(log N); PUSHN O(n log N) (a grouped job O(log groups) more); POP/ACK O((count + n +
768) log N) plus retention trims of O(n + 100) (each with the kept logs of the jobs it deletes, at most 100 lines each), plus, when one
leaves the queue empty, 5 to 9 O(1) checks (the sets are counted only until they hold every record) and, on a difference or every 60 s, an EXISTS of 2001 keys, an LLEN per indexed priority
(2001 when a list lost its index entry) and an audit of
about 100 records (HSCAN COUNT 100, 5 ZSCORE each); COMPLETE, FAIL, RELEASE O(log N) plus up to 356
retention deletions; EXTEND O(n log N); STATS O(1); RETRYDEAD, DEAD O(count log N); the inspection and
control operations: see their sections (each bounded: pages and steps of at most 1000). Groups add
O(log groups) per grouped job leased or finished (see GROUPS), and a POP that finds no group ready up to
100 O(log groups) placements once a minute (see RECOVERY); DRAIN O((limit + 1) log N), OBLITERATE about
3000 UNLINKs or an HSCAN COUNT 1000 per call (see each); SCHEDULE and SCHEDNEXT O(log N) (a push), SCHEDGET and UNSCHEDULE O(log N),
SCHEDULERS a page of about 1000.

Speed notes (once for the file): per-job loops use locals for library functions (a global costs a table
lookup), count their appends in locals (`#t` searches the table) and check events before calling `emit`;
numbers sent as arguments are formatted once as strings (Redis formats a Lua number with %.17g per use),
and loops that need many decimal texts (generated ids, the 2001 list names of a repair) build them from
digits (formatting a number, by string.format, tostring or a concatenation, costs about five short
concatenations); replies pack per-job flags and attempts into one string (a reply element per job costs the
server and the client more than a few bytes do); each section returns before the helpers of later ones
are defined, since a script call runs its whole top level (and builds every closure) each time; and the
helpers of paths a call may not take are built only when it takes them: the group helpers by
`load_groups` and `load_group_pop` (a call that meets a group), the memo helpers by `request_arg` (a
call with a request; the replay helper only for a repeated call), the helpers that requeue or
dead-letter a job by `load_moves` (a call that moves one), the push helpers and POP's and ACK's leasing
helpers under a check of the operation, helpers of one operation inside its section; and a step with one
caller on the hot path is written inline there (ACK's argument parse and lease check, the lease token,
the leasing allowance, the wait). A closure costs each call about 0.9k instructions and about 0.35k more
per variable it captures (callgrind, Redis 7.0), so PUSH, COMPLETE, FAIL and POP on a queue without
groups build only what they run. One built inside a function takes that function's upvalues as they are,
so the many leasing helpers are built inside one (`load_lease`; building it costs a POP or ACK about 23k,
`load_moves` about 15k, the helpers up to `finish` about 35k). The commonest push (PUSHN of generated
ids, no delay, dedup or group) has a fast path placed before most helpers: one job costs about 178k
instructions instead of 243k, a job at 32 pushes in flight about 21k instead of 27k (the build before the
declared keys, 4fe707b: 25k), a job of a bulk of 1000 about 18.5k instead of 22k. The commonest ACK (a
worker's: a request, completions and a fetch the top priority's list fills with jobs to spare, no
groups, limits, pause or due work) has one right after the PUSHN fast path, behind only the helpers it
shares with the general path (`any_groups`, `wake_worker`, `finish` and the retention helpers, which
PUSH and PUSHN do not build), so it builds none of the count, group, enqueue, state and push helpers:
one job completed and one leased costs about 342k instead of 458k with events off and nothing kept
(4fe707b: 334k), 385k instead of 536k with events on and 1000 kept (moving it there from after `finish`
saved about 15k; a general push pays about 1k more).
Redis numbers (ZRANGEBYSCORE bounds, LPOP counts, PX) go to `redis.call` as text there: a Lua number
argument costs a %.17g format, about 2k instructions each. Measured and not worth
their code: values
declared again next to `load_lease` (the new upvalues cost what the shorter search for them saves), and
one HSET of the lease token and the waiting count (read with the lease state) instead of an HSET and an
HINCRBY (under 1k less per call). The policy's keep and max_len values stay text
until a call uses them, and checked text is converted by arithmetic: a library call (tonumber, type,
math.floor, string.byte) costs about 0.8k instructions, five or so arithmetic operations.
]]

local MAX_BATCH = 1000
local MAX_DATA = 1048576
local MAX_ID = 1024
local MAX_ERROR = 1000
local MAX_PRIORITY = 1000
local MAX_RETRIES = 1000
local MAX_DELAY_S = 31536000
local MOVE_LIMIT = 256
local DEAD_MAX = 10000
local DEAD_AGE_MS = 7 * 24 * 3600 * 1000
local DEAD_TRIM = 100
local DEFAULT_LEASE_MS = 30000
local MAX_LEASE_MS = 86400000
local MIN_MEMO_MS = 60000
local MIN_MEMO_TEXT = '60000'
local AUDIT_EVERY_MS = 60000
local AUDIT_STEP = 100
local DEFAULT_BACKOFF_MS, DEFAULT_BACKOFF_MAX_MS = 1000, 60000
local MAX_PROGRESS = 1024
local MAX_LOG_LINE = 1024
local LOG_MAX = 100
local MAX_EVENTS_LEN = 1000000
local STEP = 1000
local MAX_RATE = 1000000
local MAX_GROUP = 256
-- Keys declared by the API (see KEYS); a request's memo or PUSHN's dedup keys come after them.
local DECLARED = 17

local waiting, processing, failed, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local delayed = waiting .. ':delayed'
local jobs = waiting .. ':jobs'
local state = waiting .. ':state'
local meta = waiting .. ':meta'
local wake = waiting .. ':wake'
local completed = waiting .. ':completed'
local events = waiting .. ':events'
local info = waiting .. ':info'
local groups = waiting .. ':groups'
local gready = waiting .. ':gready'
local glimited = waiting .. ':glimited'
local schedulers = waiting .. ':schedulers'
local gwait = waiting .. ':gwait'
local find, sub, byte, unpack = string.find, string.sub, string.byte, unpack

local function bad(message)
  error({ err = 'ERR job_queue: ' .. message })
end

local function number(name, value, min, max, integer)
  local n = tonumber(value)
  if n == nil or n ~= n or n < min or n > max then
    bad(name .. ' must be a number in [' .. min .. ', ' .. max .. '], got ' .. tostring(value))
  end
  if integer and n % 1 ~= 0 then bad(name .. ' must be an integer, got ' .. tostring(value)) end
  return n
end

local function id_arg(name, value)
  -- An argument is a string or nil (no `type` call).
  if value == nil or #value == 0 or #value > MAX_ID then
    bad(name .. ' must be a string of 1 to ' .. MAX_ID .. ' bytes')
  end
  return value
end

-- The call's time in microseconds (from the server clock, or the time the caller passed).
local now_us

if #KEYS ~= 4 and #KEYS < DECLARED then
  bad('takes 4 keys (queue, processing, failed, dead), 17 or 18 (see KEYS), got ' .. #KEYS)
end
if #KEYS > DECLARED + 1 and ARGV[1] ~= 'PUSHN' then bad('takes 4, 17 or 18 keys (only PUSHN takes dedup keys), got ' .. #KEYS) end
if #KEYS >= DECLARED
  and (KEYS[5] ~= delayed or KEYS[6] ~= jobs or KEYS[7] ~= state or KEYS[8] ~= meta or KEYS[9] ~= wake
    or KEYS[10] ~= completed or KEYS[11] ~= events or KEYS[12] ~= info or KEYS[13] ~= groups
    or KEYS[14] ~= gready or KEYS[15] ~= glimited or KEYS[16] ~= schedulers or KEYS[17] ~= gwait) then
  bad('KEYS[5..17] must be KEYS[1] with :delayed, :jobs, :state, :meta, :wake, :completed, :events, :info, :groups, :gready, :glimited, :schedulers and :gwait')
end
local op = ARGV[1]
-- The call's policy (see POLICY): the seed's defaults unless ARGV[2] carries one. events_max and the keep
-- values are checked here but may stay the policy's text: each is converted (by arithmetic, checked
-- digits) where it is used, and most calls use none or one of them.
local events_on, events_max = false, 0
local keep_done, keep_done_ms, keep_dead, keep_dead_ms = 0, -1, DEAD_MAX, DEAD_AGE_MS
-- Queue-wide limits (see LIMITS): 0 is none.
local rate_limit, rate_window, max_active = 0, 0, 0
local clock = ARGV[2]
local star = clock and find(clock, '*', 1, true)
if star and #clock > star then
  local e, m, c, ca, d, da, rest = string.match(clock, '^%*([01]),(%d+),(%-?%d+),(%-?%d+),(%-?%d+),(%-?%d+)(.*)$', star)
  if not e then bad('current_time must be seconds, "*" or "[seconds]*<events>,<max_len>,<keep>,<keep_ms>,<keep_dead>,<keep_dead_ms>[,<rate_limit>,<rate_window_ms>,<concurrency>]", got ' .. clock) end
  if rest ~= '' then
    local rl, rw, ma = string.match(rest, '^,(%d+),(%d+),(%d+)$')
    if not rl then bad('current_time limits must be ",<rate_limit>,<rate_window_ms>,<concurrency>", got ' .. rest) end
    rate_limit = number('rate_limit', rl, 0, MAX_RATE, true)
    rate_window = number('rate_window_ms', rw, rate_limit > 0 and 1 or 0, MAX_DELAY_S * 1000, true)
    max_active = number('concurrency', ma, 0, MAX_RATE, true)
  end
  events_on = e == '1'
  -- Every call parses this: the pattern admits integers only, so the usual values pass by their text and
  -- sign ("-1", or not below 0 and few enough digits to be in range; max_len at least 1; arithmetic
  -- converts the text without a library call; no string ordering: Redis collates by its locale), and
  -- `number` runs (and words the error) only otherwise.
  events_max, keep_done, keep_done_ms, keep_dead, keep_dead_ms = m, c, ca, d, da
  if not (#m <= 6 and m + 0 >= 1 and (c == '-1' or #c <= 9 and c + 0 >= 0)
    and (ca == '-1' or #ca <= 13 and ca + 0 >= 0) and (d == '-1' or #d <= 9 and d + 0 >= 0)
    and (da == '-1' or #da <= 13 and da + 0 >= 0)) then
    number('events max_len', m, 1, MAX_EVENTS_LEN, true)
    number('keep', c, -1, 1e9, true)
    number('keep_ms', ca, -1, 1e13, true)
    number('keep_dead', d, -1, 1e9, true)
    number('keep_dead_ms', da, -1, 1e13, true)
  end
  clock = star == 1 and '*' or sub(clock, 1, star - 1)
end
-- Milliseconds, from the server clock (`TIME`) unless the caller passes the time.
local now
if clock ~= '*' then
  now = math.floor(number('current_time', clock, 0, 1e11) * 1000 + 0.5)
  now_us = now * 1000
else
  local t = redis.call('TIME')
  -- Arithmetic converts TIME's two strings, and `%` floors: no library call (each costs about five
  -- arithmetic operations).
  now_us = t[1] * 1000000 + t[2]
  now = (now_us - now_us % 1000) / 1000
end

-- Events of this call (see EVENTS): name, job id, then extra fields, written by one XADD at the end (no
-- table when events are off).
local ev, ev_count = events_on and {}, 0
-- The stream keeps about events_max events: entries hold many, so the cap in entries is events_max over
-- this entry's events (exact when small, since `~` trims only whole stream nodes).
local function flush_events()
  if ev_count == 0 then return end
  local cap = math.max(1, math.floor((events_max + 0) / ev_count))
  redis.call('XADD', events, 'MAXLEN', cap < 100 and '=' or '~', cap, '*', unpack(ev))
  ev, ev_count = {}, 0
end
local function emit(name, id)
  if events_on then
    -- One entry per call; a call with very many events writes a few (unpack has a stack limit), each
    -- event whole in one entry.
    if #ev >= 6000 then flush_events() end
    ev[#ev + 1] = name
    ev[#ev + 1] = id
    ev_count = ev_count + 1
  end
end
local function emit_field(field, value)
  if events_on then
    ev[#ev + 1] = field
    ev[#ev + 1] = value
  end
end

--[[ STATS (public) --------------------------------------------------------------------------------------
KEYS: 2 processing, 3 failed, 4 dead, 5 delayed, 8 meta.
ARGV: STATS <current_time>
Reply: { "waiting", n, "delayed", n, "processing", n, "failed", n, "dead", n, "completed", n }
]]
if op == 'STATS' then
  local counts = redis.call('HMGET', meta, 'waiting', 'gwaiting')
  return {
    -- A lost `meta` can leave the count below 0 until the next POP rebuilds it. Jobs in groups count too.
    'waiting', math.max(0, tonumber(counts[1] or '0')) + math.max(0, tonumber(counts[2] or '0')),
    'delayed', redis.call('ZCARD', delayed),
    'processing', redis.call('ZCARD', processing),
    'failed', redis.call('ZCARD', failed),
    'dead', redis.call('ZCARD', dead),
    'completed', tonumber(redis.call('HGET', meta, 'completed') or '0'),
  }
end

--[[ PAUSED (internal) -----------------------------------------------------------------------------------
KEYS: 8 meta.
ARGV: PAUSED <current_time>
Reply: 1 when the queue is paused (see PAUSE), else 0.
]]
if op == 'PAUSED' then
  return redis.call('HEXISTS', meta, 'paused')
end

-- Waiting jobs added (or, negative, popped) by this call; written to the counter once, at the end.
local waiting_delta = 0

-- Rebuilds the priority index from the lists (one per possible priority) and sets the waiting count to
-- what they hold: after a lost list, index or `meta` (see RECOVERY). One EXISTS over the 2001 list names
-- and an LLEN per indexed priority; about 2001 LLEN more only when a list lost its index entry: rare by
-- design.
local function repair()
  local call, prefix = redis.call, waiting .. ':w:'
  -- The priorities' texts are built from digits: formatting a number (tostring, or a number in a
  -- concatenation) costs about ten times a short concatenation, and this builds 2001 names.
  local texts = { [0] = '0', '1', '2', '3', '4', '5', '6', '7', '8', '9' }
  for p = 10, MAX_PRIORITY do texts[p] = texts[(p - p % 10) / 10] .. texts[p % 10] end
  local names, negative = {}, prefix .. '-'
  for p = 1, MAX_PRIORITY do
    names[MAX_PRIORITY + 1 - p] = negative .. texts[p]
    names[MAX_PRIORITY + 1 + p] = prefix .. texts[p]
  end
  names[MAX_PRIORITY + 1] = prefix .. '0'
  local lists, total, found = call('EXISTS', unpack(names)), 0, 0
  for _, name in ipairs(call('ZRANGE', waiting, 0, -1)) do
    -- Only a priority's own text names one of the lists (a push writes no other member).
    local p = tonumber(name)
    local list = p and names[p + MAX_PRIORITY + 1]
    if list == prefix .. name then
      local len = call('LLEN', list)
      if len > 0 then
        total, found = total + len, found + 1
      else
        call('ZREM', waiting, name)
      end
    end
  end
  -- Lists holding jobs that no index entry names: every list is counted again and indexed.
  if found < lists then
    total = 0
    for p = -MAX_PRIORITY, MAX_PRIORITY do
      local len = call('LLEN', names[p + MAX_PRIORITY + 1])
      total = total + len
      if len > 0 then call('ZADD', waiting, -p, tostring(p)) end
    end
  end
  redis.call('HSET', meta, 'waiting', total)
  waiting_delta = 0
end

-- Generated ids (decimal): ids[i] = first + i for i in 1..n where `auto` is nil or auto[i] is set. Formatting a
-- number costs about five concatenations, so with ten or more the tens are formatted once per ten ids and the
-- last digit appended. Built for the calls that push only (see the speed notes).
local pushing = op == 'PUSH' or op == 'PUSHN' or op == 'SCHEDULE' or op == 'SCHEDNEXT'
local decimal_ids
if pushing then
  function decimal_ids(first, n, ids, auto)
    local digits = n >= 10 and { [0] = '0', '1', '2', '3', '4', '5', '6', '7', '8', '9' }
    local tens, tens_text, next_id = -1, '', first
    for i = 1, n do
      if not auto or auto[i] then
        next_id = next_id + 1
        if digits then
          local last = next_id % 10
          local t = (next_id - last) / 10
          if t ~= tens then tens, tens_text = t, t == 0 and '' or string.format('%d', t) end
          ids[i] = tens_text .. digits[last]
        else
          ids[i] = string.format('%d', next_id)
        end
      end
    end
  end
end

--[[ PUSHN fast path (see the speed notes): the commonest push, one run of n jobs with generated ids, the
priority and retry policy as plain digits (a priority without leading zeros, a policy of one digit), no
delay, dedup or group, with the declared keys. It runs before the helpers of the other operations are
built, takes only input the PUSHN section accepts, and writes and answers exactly as that section would
(test/protocol.test.ts pushes the same jobs through both); anything else goes on to that section. A
generated id that a job pushed with its own id already holds (checked after the ids were reserved) also
goes on there, with the block this path reserved (`reserved_from`), which that section then handles as if
it had reserved it itself; nothing else was written. ]]
local reserved_from
if op == 'PUSHN' and #KEYS == DECLARED and ARGV[8] == '0' and ARGV[7] == '0' and ARGV[4] == ARGV[3] then
  local n_text, priority, policy = ARGV[3], ARGV[5], ARGV[6]
  -- Arithmetic only on text the patterns checked (it raises on anything else).
  local n = #n_text <= 4 and find(n_text, '^[1-9]%d*$') and n_text + 0
  local p = priority == '0' and 0 or #priority <= 5 and find(priority, '^%-?[1-9]%d*$') and priority + 0
  if n and n <= MAX_BATCH and #ARGV == 8 + n and p and p >= -MAX_PRIORITY and p <= MAX_PRIORITY
    and #policy == 1 and byte(policy) >= 48 and byte(policy) <= 57 then
    local head = priority .. ':' .. policy .. '@' .. string.format('%d', now) .. ':'
    -- fields: id, record, id, record, ... (the ids once reserved).
    local fields = {}
    for i = 1, n do
      local data = ARGV[8 + i]
      if #data > MAX_DATA then
        fields = nil
        break
      end
      fields[2 * i] = head .. data
    end
    if fields then
      local ids = {}
      reserved_from = redis.call('HINCRBY', meta, 'ids', n) - n
      decimal_ids(reserved_from, n, ids)
      local taken = false
      for _, v in ipairs(redis.call('HMGET', jobs, unpack(ids))) do
        if v then taken = true end
      end
      if not taken then
        for i = 1, n do fields[2 * i - 1] = ids[i] end
        redis.call('HSET', jobs, unpack(fields))
        if redis.call('RPUSH', waiting .. ':w:' .. priority, unpack(ids)) == n then redis.call('ZADD', waiting, -p, p) end
        -- Below 0 only when `meta` was lost while jobs waited.
        if redis.call('HINCRBY', meta, 'waiting', n) < 0 then repair() end
        if redis.call('LLEN', wake) == 0 then redis.call('RPUSH', wake, '1') end
        if events_on then
          for i = 1, n do emit('added', ids[i]) end
          flush_events()
        end
        return ids
      end
    end
  end
end

-- GROUPS: whether the queue has any group state, and whether `info` holds anything (nil: not read yet).
-- Read once per call; a call that writes either sets its flag to true.
local any_groups_seen, info_seen
local function any_groups()
  if any_groups_seen == nil then
    -- A hash exists while it holds a field: one EXISTS answers for both unless exactly one exists (an
    -- ungrouped queue without progress, logs or kept return values pays this one call).
    local n = redis.call('EXISTS', groups, info)
    if n == 1 then
      any_groups_seen = redis.call('EXISTS', groups) == 1
      info_seen = not any_groups_seen
    else
      any_groups_seen, info_seen = n == 2, n == 2
    end
  end
  return any_groups_seen
end

-- Wakes one blocked worker (a woken worker that leaves jobs behind wakes the next).
local function wake_worker()
  if redis.call('LLEN', wake) == 0 then redis.call('RPUSH', wake, '1') end
end

-- Retention and forgetting (see POLICY), for the calls that finish or remove jobs: PUSH and PUSHN use none
-- of them, so they do not build them (each closure costs about 1.5k instructions per call).
local hdel_all, drop_info, forget_all, trim_finished, finish
if op ~= 'PUSH' and op ~= 'PUSHN' then
  -- HDEL of many fields, in steps (unpack has a stack limit).
  function hdel_all(key, fields)
    for from = 1, #fields, STEP do
      redis.call('HDEL', key, unpack(fields, from, math.min(#fields, from + STEP - 1)))
    end
  end

  -- Drops the progress, return values and logs of `ids` (see INFO); nothing to read when no job has any.
  function drop_info(ids)
    if info_seen == nil then info_seen = redis.call('EXISTS', info) == 1 end
    if not info_seen then return end
    local counts, fields = {}, {}
    for i, id in ipairs(ids) do counts[i] = 'l:' .. id end
    counts = redis.call('HMGET', info, unpack(counts))
    for i, id in ipairs(ids) do
      fields[#fields + 1] = 'p:' .. id
      fields[#fields + 1] = 'r:' .. id
      local lines = tonumber(counts[i])
      if lines then
        fields[#fields + 1] = 'l:' .. id
        for k = 0, math.min(lines, LOG_MAX) - 1 do fields[#fields + 1] = 'l:' .. id .. ':' .. k end
      end
    end
    hdel_all(info, fields)
  end

  -- Deletes what is kept of jobs that left every state: records, states, progress, return values, logs.
  function forget_all(ids)
    if #ids == 0 then return end
    redis.call('HDEL', jobs, unpack(ids))
    redis.call('HDEL', state, unpack(ids))
    drop_info(ids)
    if any_groups() then
      local fields = {}
      for i, id in ipairs(ids) do fields[i] = 'j:' .. id end
      hdel_all(groups, fields)
    end
  end

  -- Retention of a finished set (`completed` or `dead`, scored by when): keeps at most `keep` (-1: any
  -- number) no older than `keep_ms` (-1: any age). Deletes at most `limit` by count and `limit` by age per
  -- call, the oldest first: a call that adds n jobs passes at least n, so the set never outgrows its cap.
  function trim_finished(set, keep, keep_ms, limit)
    local oldest = -1
    if keep >= 0 then
      local over = redis.call('ZCARD', set) - keep
      if over > 0 then
        -- Members by rank and one score: ZPOPMIN's reply would format every score as text.
        local last = math.min(over, limit) - 1
        local ids = redis.call('ZRANGE', set, 0, last)
        oldest = tonumber(redis.call('ZSCORE', set, ids[#ids]))
        redis.call('ZREMRANGEBYRANK', set, 0, last)
        forget_all(ids)
      end
    end
    -- What is left is no older than what the count took: when that is young enough, nothing to look for.
    if keep_ms >= 0 and oldest <= now - keep_ms then
      local ids = redis.call('ZRANGEBYSCORE', set, '-inf', now - keep_ms, 'LIMIT', 0, limit)
      if #ids > 0 then
        redis.call('ZREM', set, unpack(ids))
        forget_all(ids)
      end
    end
  end

  -- Records completions of leased jobs: `ids`, their new states ("<attempts>:=<token>:") and return values
  -- (text, or '' for none; `values` may be nil). Kept in `completed` under the call's retention, or deleted
  -- at once when it keeps none (the seed's behaviour). A keep of 32 or more is trimmed once per batch of
  -- keep / 16 completions (see POLICY): a trim costs about six calls whatever it removes, so batching takes
  -- most of them off each completion.
  function finish(ids, states, values)
    local n = #ids
    redis.call('ZREM', processing, unpack(ids))
    local total = redis.call('HINCRBY', meta, 'completed', n)
    local keep = keep_done + 0
    -- With events off and nothing kept (the seed's way) there is nothing to build per job.
    if keep == 0 and not events_on then
      forget_all(ids)
      return
    end
    local scored, results, at = {}, {}, string.format('%d', now)
    for i = 1, n do
      local id = ids[i]
      emit('completed', id)
      if values and values[i] ~= '' then
        emit_field('r', values[i])
        results[#results + 1] = 'r:' .. id
        results[#results + 1] = values[i]
      end
      scored[2 * i - 1] = at
      scored[2 * i] = id
    end
    if keep == 0 then
      forget_all(ids)
      return
    end
    redis.call('ZADD', completed, unpack(scored))
    redis.call('HSET', state, unpack(states))
    if #results > 0 then
      redis.call('HSET', info, unpack(results))
      info_seen = true
    end
    -- A new counter (total == n: `meta` was lost) trims at once.
    local step = keep < 0 and 1 or math.min(64, math.floor(keep / 16))
    if step <= 1 or math.floor(total / step) ~= math.floor((total - n) / step) or total == n then
      trim_finished(completed, keep, keep_done_ms + 0, n + DEAD_TRIM)
    end
  end
end

-- A new lease for POP and ACK, written to meta `lease`: its token, above every one given before (`last`,
-- that counter) and at least the time in microseconds, so tokens never repeat for a job that outlived a
-- lost `meta`, and the lease's start is the token / 1000 (exact while the calls that lease are fewer than
-- one per microsecond). Returns the token, ":<token>:" (a state's middle), the state of a first attempt
-- under it ("1:<token>:") and the deadline (ms, as text) of a lease of lease_ms.
local new_lease
if op == 'POP' or op == 'ACK' or op == 'DRAIN' then
  function new_lease(last, lease_ms)
    local token = (tonumber(last) or 0) + 1
    if token < now_us then token = now_us end
    local text = string.format('%d', token)
    redis.call('HSET', meta, 'lease', text)
    local held = ':' .. text .. ':'
    return token, held, '1' .. held, string.format('%d', now + lease_ms)
  end
end

--[[ ACK's argument parse and fast path (see the speed notes). The parse (ACK's section below gives the
format) runs here for both paths, and `ack_check` decides which jobs complete. The fast path is the
worker's usual call: a request, completions, and a fetch that the highest priority's list fills with jobs
to spare, on a queue without groups, limits, pause, due delays, retries or expired leases, whose leased
jobs all have their records. Every condition is read before its first write but one: a popped job whose
record is lost puts the popped ids back where they were and goes on to ACK's section, as does anything
else. It writes and answers exactly as that section would (test/protocol.test.ts runs the same calls
through both). ]]
local ack_lease_ms, ack_fetch, ack_n, ack_ids, ack_at, ack_check
if op == 'ACK' then
  ack_lease_ms = number('lease_ms', ARGV[3], 1, MAX_LEASE_MS, true)
  ack_fetch = number('fetch', ARGV[4], 0, MAX_BATCH, true)
  ack_n = number('n', ARGV[5], 0, MAX_BATCH, true)
  -- The groups of jobs leased under one token (`<lease_token> <k> <valued>` then k ids, or k id and return
  -- value pairs when valued is 1), from ARGV[6] on: the ids, each one's token, the whole state of a first
  -- attempt under it, the return values (nil when no group has any), and the index of the argument after
  -- the groups.
  local ids, tokens, firsts, values = {}, {}, {}, nil
  local at, count = 6, 0
  while count < ack_n do
    local token = id_arg('lease_token', ARGV[at])
    -- Strings compare by identity in Lua: one comparison finds the common case.
    local first = '1:' .. token .. ':'
    local k = number('k', ARGV[at + 1], 1, ack_n - count, true)
    local valued = ARGV[at + 2]
    if valued ~= '0' and valued ~= '1' then bad('valued must be 0 or 1, got ' .. tostring(valued)) end
    if valued == '1' and not values then
      values = {}
      for i = 1, count do values[i] = '' end
    end
    at = at + 3
    for _ = 1, k do
      local id = ARGV[at]
      -- id_arg inlined (a call per job); it still words the error.
      if id == nil or #id == 0 or #id > MAX_ID then id_arg('job_id', id) end
      count = count + 1
      ids[count] = id
      tokens[count] = token
      firsts[count] = first
      at = at + 1
      if valued == '1' then
        local value = ARGV[at]
        if value == nil or #value > MAX_DATA then bad('return_value must be at most ' .. MAX_DATA .. ' bytes') end
        values[count] = value
        at = at + 1
      elseif values then
        values[count] = ''
      end
    end
  end
  if #ARGV ~= at - 1 and #ARGV ~= at + 1 then
    bad('ACK with these groups takes ' .. (at - 1) .. ' or ' .. (at + 1) .. ' arguments, got ' .. #ARGV)
  end
  ack_ids, ack_at = ids, at

  -- Which jobs are leased under the token given with them (read only), from their states (`states[1..n]`):
  -- one "1" or "0" per job as one string, the ids to complete, those ids as a set, their states once
  -- completed (id and state pairs, only when completed jobs are kept) and their return values (when given).
  function ack_check(states)
    local results, done, seen, finals, kept, d = {}, {}, {}, {}, values and {}, 0
    local keep = keep_done + 0 ~= 0
    -- A first attempt's final state is the same for every job completed under its token: built once.
    local first_finals = keep and {}
    for i = 1, ack_n do
      local id, token, s = ids[i], tokens[i], states[i]
      local r = '0'
      -- The state names the token of the lease a job is under ("~<token>" once it ended, and gone with the
      -- record), so a match means leased under this token; a repeated pair in one call completes once.
      if s and token ~= '0' and not seen[id] then
        local fresh = s == firsts[i]
        local a = not fresh and find(s, ':', 1, true)
        if fresh or (byte(s, a + #token + 1) == 58 and sub(s, a + 1, a + #token) == token) then
          seen[id] = true
          d = d + 1
          done[d] = id
          if kept then kept[d] = values[i] end
          if keep then
            finals[2 * d - 1] = id
            local final = fresh and first_finals[token]
            if not final then
              final = (fresh and '1:' or sub(s, 1, a)) .. '=' .. token .. ':'
              if fresh then first_finals[token] = final end
            end
            finals[2 * d] = final
          end
          r = '1'
        end
      end
      results[i] = r
    end
    return table.concat(results), done, seen, finals, kept
  end

  local lane, seq, fetch_text, lease_text = ARGV[at], ARGV[at + 1], ARGV[4], ARGV[3]
  local memo = #KEYS == DECLARED + 1 and #ARGV == at + 1 and waiting .. ':req:' .. lane
  -- Canonical digits only, so the texts can go to Redis as they are (as the general path's numbers would).
  if memo and KEYS[DECLARED + 1] == memo and #lane >= 1 and #lane <= MAX_ID and #seq <= 15 and find(seq, '^%d+$')
    and ack_n > 0 and ack_fetch > 0 and rate_limit == 0 and max_active == 0 and find(fetch_text, '^[1-9]%d*$')
    and find(lease_text, '^[1-9]%d*$') then
    local saved = redis.call('GET', memo)
    local now_text = string.format('%d', now)
    local m
    -- Not a repeat (the section below replays it), no group state, nothing due.
    if not (saved and sub(saved, 1, #seq + 1) == seq .. ':') and not any_groups()
      and not redis.call('ZRANGEBYSCORE', processing, '-inf', now_text, 'LIMIT', '0', '1')[1]
      and not redis.call('ZRANGEBYSCORE', delayed, '-inf', now_text, 'LIMIT', '0', '1')[1]
      and not redis.call('ZRANGEBYSCORE', failed, '-inf', now_text, 'LIMIT', '0', '1')[1] then
      m = redis.call('HMGET', meta, 'paused', 'lease', 'until')
    end
    local top = m and not m[1] and not (tonumber(m[3]) and tonumber(m[3]) > now) and redis.call('ZRANGE', waiting, '0', '0')[1]
    local list = top and waiting .. ':w:' .. top
    -- Jobs to spare: the list stays indexed, no other list or group is read, and the queue is not drained.
    if list and redis.call('LLEN', list) > ack_fetch then
      local popped = redis.call('LPOP', list, fetch_text)
      local recs = redis.call('HMGET', jobs, unpack(popped))
      local whole = true
      for i = 1, ack_fetch do
        if not recs[i] then whole = false end
      end
      if not whole then
        -- Back at the head in their order: ACK's section dead-letters the lost one.
        local back = {}
        for i = 1, ack_fetch do back[i] = popped[ack_fetch + 1 - i] end
        redis.call('LPUSH', list, unpack(back))
      else
        -- One read of the states of the jobs completed (1..n) and leased (n+1..).
        local fields = {}
        for i = 1, ack_n do fields[i] = ids[i] end
        for i = 1, ack_fetch do fields[ack_n + i] = popped[i] end
        local states = redis.call('HMGET', state, unpack(fields))
        local results, done, _, finals, kept = ack_check(states)
        -- The leases, as `lease_ids` writes them.
        local token, held, fresh, deadline = new_lease(m[2], ack_lease_ms)
        local out, leases, news, tries = { results, 0, token, '' }, {}, {}, {}
        for i = 1, ack_fetch do
          local id, old = popped[i], states[ack_n + i]
          local try, s = '1', fresh
          if old then
            local a = find(old, ':', 1, true)
            try = string.format('%d', sub(old, 1, a - 1) + 1)
            s = try .. held .. sub(old, find(old, ':', a + 1, true) + 1)
          end
          news[2 * i - 1] = id
          news[2 * i] = s
          leases[2 * i - 1] = deadline
          leases[2 * i] = id
          if events_on then emit('active', id) end
          out[3 + 2 * i] = id
          out[4 + 2 * i] = recs[i]
          tries[i] = try
        end
        redis.call('HSET', state, unpack(news))
        redis.call('ZADD', processing, unpack(leases))
        -- Below 0 only when `meta` was lost while jobs waited (as `save_count`).
        if redis.call('HINCRBY', meta, 'waiting', '-' .. fetch_text) < 0 then repair() end
        wake_worker()
        if #done > 0 then finish(done, finals, kept) end
        out[4] = table.concat(tries, ',')
        -- The request's memo, as `remember_request` writes it (see REQUESTS).
        redis.call('SET', memo, seq .. ':' .. cmsgpack.pack(results, token, popped), 'PX', ack_lease_ms > MIN_MEMO_MS and lease_text or MIN_MEMO_TEXT)
        flush_events()
        return out
      end
    end
  end
end

-- Jobs waiting in groups added (or, negative, popped) by this call (see GROUPS).
local gwaiting_delta = 0

local function save_count()
  if waiting_delta ~= 0 then
    -- Below 0 only when `meta` was lost while jobs waited.
    if redis.call('HINCRBY', meta, 'waiting', waiting_delta) < 0 then repair() end
  end
  if gwaiting_delta ~= 0 then
    if redis.call('HINCRBY', meta, 'gwaiting', gwaiting_delta) < 0 then redis.call('HSET', meta, 'gwaiting', 0) end
  end
  waiting_delta, gwaiting_delta = 0, 0
end

-- Group helpers (see GROUPS), built by `load_groups` only in a call that meets a group: a script call runs
-- its whole top level each time, so closures defined here would cost every call on a queue without groups.
local group_state, place_group, enqueue_group
local function load_groups()
  if place_group then return end
  -- A group's options and state: concurrency (default 1), rate limit and window (0: none), paused, tat
  -- (ms) and leased jobs.
  function group_state(g)
    local o = redis.call('HMGET', groups, 'o:' .. g, 'p:' .. g, 't:' .. g, 's:' .. g)
    local conc, limit, window = 1, 0, 0
    if o[1] then
      local a, b, c = string.match(o[1], '^(%d+),(%d+),(%d+)$')
      conc, limit, window = tonumber(a), tonumber(b), tonumber(c)
    end
    return conc, limit, window, o[2], tonumber(o[3]) or 0, tonumber(o[4]) or 0
  end

  -- Puts group `g` where its state says (see GROUPS): ready (`gready`; at the back with `back`, else where
  -- it is), held by its rate limit (`glimited`, until its next slot), or in neither (paused, at its
  -- concurrency, nothing waiting). A group with nothing waiting or leased keeps only its options and pause.
  function place_group(g, back)
    local conc, limit, _, paused, tat, active = group_state(g)
    local len = redis.call('LLEN', waiting .. ':g:' .. g)
    if len == 0 or paused or active >= conc then
      redis.call('ZREM', gready, g)
      redis.call('ZREM', glimited, g)
      if len == 0 then redis.call('ZREM', gwait, g) end
      if len == 0 and active <= 0 then
        redis.call('HDEL', groups, 's:' .. g)
        if tat <= now then redis.call('HDEL', groups, 't:' .. g) end
      end
      return
    end
    if limit > 0 and tat > now then
      redis.call('ZREM', gready, g)
      redis.call('ZADD', glimited, tat, g)
      return
    end
    redis.call('ZREM', glimited, g)
    if back or not redis.call('ZSCORE', gready, g) then
      redis.call('ZADD', gready, redis.call('HINCRBY', meta, 'gseq', 1), g)
    end
  end

  -- Adds a job to its group's list: the tail, or with `front` (a lease that ended) the head.
  function enqueue_group(g, id, front)
    if redis.call(front and 'LPUSH' or 'RPUSH', waiting .. ':g:' .. g, id) == 1 then redis.call('ZADD', gwait, 0, g) end
    redis.call('HSETNX', groups, 's:' .. g, 0)
    gwaiting_delta = gwaiting_delta + 1
    place_group(g, false)
  end
end

-- Leased jobs that left `processing` (completed, failed, released, reclaimed, dead, removed): their groups
-- get the slots back. Returns whether any was in a group.
local function release_groups(ids)
  if #ids == 0 or not any_groups() then return false end
  load_groups()
  local fields = {}
  for i, id in ipairs(ids) do fields[i] = 'j:' .. id end
  local counts, any = {}, false
  for _, g in ipairs(redis.call('HMGET', groups, unpack(fields))) do
    if g then counts[g] = (counts[g] or 0) + 1 end
  end
  for g, k in pairs(counts) do
    -- Below 0 only when the counter was lost while its jobs were leased (see RECOVERY).
    if redis.call('HINCRBY', groups, 's:' .. g, -k) < 0 then redis.call('HSET', groups, 's:' .. g, 0) end
    place_group(g, false)
    any = true
  end
  return any
end

-- Adds ids of one priority to the tail (FIFO) or, with `front`, the head of that priority's list. (A list
-- whose index entry was lost is found again by `repair`.)
local function enqueue_ids(priority, ids, front)
  local len = redis.call(front and 'LPUSH' or 'RPUSH', waiting .. ':w:' .. priority, unpack(ids))
  if len == #ids then redis.call('ZADD', waiting, -priority, priority) end
  waiting_delta = waiting_delta + #ids
end

-- Push helpers: built only by the calls that push (see the speed notes).
local check_policy, check_options, check_data, push_all, pushed
if pushing then
  -- A retry policy argument: "<max_retries>" or "<max_retries>,<backoff_base_ms>,<backoff_max_ms>"; returns
  -- it as stored (the default backoff is not spelled out).
  function check_policy(policy)
    if type(policy) ~= 'string' then bad('max_retries is missing') end
    -- One digit (the usual policy) is already as stored: no conversion.
    if #policy == 1 and byte(policy) >= 48 and byte(policy) <= 57 then return policy end
    local a = string.find(policy, ',', 1, true)
    if not a then return tostring(number('max_retries', policy, 0, MAX_RETRIES, true)) end
    local b = string.find(policy, ',', a + 1, true)
    if not b then bad('max_retries must be "n" or "n,base_ms,max_ms", got ' .. policy) end
    local r = number('max_retries', string.sub(policy, 1, a - 1), 0, MAX_RETRIES, true)
    local base = number('backoff_base_ms', string.sub(policy, a + 1, b - 1), 0, MAX_LEASE_MS, true)
    local cap = number('backoff_max_ms', string.sub(policy, b + 1), base, MAX_LEASE_MS, true)
    if base == DEFAULT_BACKOFF_MS and cap == DEFAULT_BACKOFF_MAX_MS then return tostring(r) end
    return string.format('%d,%d,%d', r, base, cap)
  end

  -- Checks a job's options; returns its record head "<priority>:<policy>@<created_ms>:", priority and delay
  -- in ms.
  function check_options(priority, max_retries, delay)
    -- + 0 turns -0 into 0, so one priority has one list name.
    local p = priority == '0' and 0 or number('priority', priority, -MAX_PRIORITY, MAX_PRIORITY, true) + 0
    local head = p .. ':' .. check_policy(max_retries) .. '@' .. string.format('%d', now) .. ':'
    local delay_ms = 0
    if delay ~= '0' then delay_ms = math.floor(number('delay_seconds', delay, 0, MAX_DELAY_S, false) * 1000 + 0.5) end
    return head, p, delay_ms
  end

  function check_data(data)
    if data == nil then bad('job_data is missing') end
    if #data > MAX_DATA then bad('job_data must be at most ' .. MAX_DATA .. ' bytes, got ' .. #data) end
    return data
  end

  -- A generated id the caller already uses as an id of their own is skipped. Bounded: after 100 such ids
  -- in a row the job is not queued (nil).
  local function free_id(taken)
    for _ = 1, 100 do
      local id = string.format('%d', redis.call('HINCRBY', meta, 'ids', 1))
      if not taken[id] and redis.call('HEXISTS', jobs, id) == 0 then return id end
    end
    return nil
  end

  -- Fills in generated ids where ids[i] is false: decimal, reserved as one block per call. Returns which
  -- ids were generated.
  local function reserve_ids(n, ids)
    local auto, count = {}, 0
    for i = 1, n do
      if not ids[i] then
        auto[i] = true
        count = count + 1
      end
    end
    -- The fast path's block when it went no further (it reserved one id per job, as here).
    if count > 0 then decimal_ids(reserved_from or redis.call('HINCRBY', meta, 'ids', count) - count, n, ids, auto) end
    return auto
  end

  -- Queues n checked jobs (ids[i] = false asks for a generated id; grps[i], when grps is given, a group)
  -- with one read and one write of the job records for the whole call. Returns per job its id, or false when
  -- the id exists (a repeated id in one call is a duplicate), and then nothing is written for that job; and
  -- whether it wrote anything.
  function push_all(n, ids, recs, priorities, delays, grps)
    local auto = reserve_ids(n, ids)
    local found = redis.call('HMGET', jobs, unpack(ids))
    local out, taken, fields, by_priority, later, grouped, members = {}, {}, {}, {}, {}, {}, {}
    -- Per-job appends count with locals (`#t` searches the table), and consecutive jobs of one priority
    -- (the usual bulk) find their list without a lookup.
    local f, last_priority, last_list = 0, nil, nil
    for i = 1, n do
      local id = ids[i]
      if found[i] or taken[id] then id = auto[i] and free_id(taken) end
      out[i] = id or false
      if id then
        taken[id] = true
        fields[f + 1] = id
        fields[f + 2] = recs[i]
        f = f + 2
        local g = grps and grps[i]
        if g then
          members[#members + 1] = 'j:' .. id
          members[#members + 1] = g
        end
        -- Events are checked here, not only in `emit`: a call per job costs a bulk push with events off.
        if delays[i] > 0 then
          later[#later + 1] = now + delays[i]
          later[#later + 1] = id
          if events_on then
            emit('delayed', id)
            emit_field('t', string.format('%d', now + delays[i]))
          end
        elseif g then
          grouped[#grouped + 1] = { g, id }
          if events_on then emit('added', id) end
        else
          local priority = priorities[i]
          if priority ~= last_priority then
            last_list = by_priority[priority]
            if not last_list then
              last_list = {}
              by_priority[priority] = last_list
            end
            last_priority = priority
          end
          last_list[#last_list + 1] = id
          if events_on then emit('added', id) end
        end
      end
    end
    if f == 0 then return out end
    redis.call('HSET', jobs, unpack(fields))
    if #members > 0 then
      redis.call('HSET', groups, unpack(members))
      any_groups_seen = true
    end
    for priority, list in pairs(by_priority) do enqueue_ids(priority, list, false) end
    if #grouped > 0 then load_groups() end
    for _, job in ipairs(grouped) do enqueue_group(job[1], job[2], false) end
    if #later > 0 then redis.call('ZADD', delayed, unpack(later)) end
    return out, true
  end

  -- The end of a call that pushed: the count, a wake-up (a delayed job too wakes a blocked worker, which
  -- recomputes how long to wait) and the events.
  function pushed()
    save_count()
    wake_worker()
    flush_events()
  end
end

--[[ PUSH (public) ---------------------------------------------------------------------------------------
KEYS: 1 queue, 5 delayed, 6 jobs, 8 meta, 9 wake, 11 events and the list of the job's priority.
ARGV: PUSH <current_time> <job_id> <job_data> <priority> <max_retries> <delay_seconds>
  priority: integer in [-1000, 1000], higher first; max_retries: integer in [0, 1000], a job runs at most
  max_retries + 1 times, or (internal) "<max_retries>,<backoff_base_ms>,<backoff_max_ms>" to give its retry
  backoff too (integers, 0 <= base <= max <= 86400000; default 1000 and 60000): the policy is stored with
  the job, so FAIL never depends on who calls it; delay_seconds: number in [0, 31536000]; data: at most
  1 MiB; id: 1 to 1024 bytes.
Reply: 1 when queued, 0 when a job with this id exists (nothing is written).
]]
if op == 'PUSH' then
  local id = id_arg('job_id', ARGV[3])
  local data = check_data(ARGV[4])
  local head, priority, delay_ms = check_options(ARGV[5], ARGV[6], ARGV[7])
  local out, wrote = push_all(1, { id }, { head .. data }, { priority }, { delay_ms })
  if wrote then pushed() end
  return out[1] and 1 or 0
end

--[[ PUSHN (internal) ------------------------------------------------------------------------------------
KEYS: as PUSH, then (KEYS[18] on) the dedup key of each job pushed with a dedup, in argument order:
  queue..':dedup:'..<dedup_key> STRING: the id of the job that holds the key, expiring after ttl_ms.
ARGV: PUSHN <current_time> <n> then runs of jobs that share their options, each
  <k> <priority> <max_retries> <delay_seconds> <named> then k times [<dedup_mode> <ttl_ms> <dedup_key>]
  [<group>] [<job_id>] <job_data>
  (named is a sum of flags: 1 job_id given (else a generated decimal id, skipping ids in use), 2 dedup
  arguments given, 4 group given; k >= 1, the k summing to n in 1..1000; values as PUSH's)
  group: 1 to 256 bytes; the job waits in its group's list, FIFO, whatever its priority (see GROUPS).
  dedup_mode: "throttle": while the key lives (ttl_ms, 1 ms to a year) pushes with it are dropped;
  "debounce": the job waits ttl_ms (delay_seconds must be 0), and a push with the key while that job still
  waits replaces its data and options and restarts its wait (event delayed), so it runs once pushes stop
  for ttl_ms; dedup_key: 1 to 1024 bytes.
Reply: { id|0|{id}, ... }: per job its id when queued, 0 when the id exists (a repeated id in one call is a
  duplicate), { id } when its dedup key held job id (throttled, or that job's data replaced).
]]
if op == 'PUSHN' then
  local function dedup_arg(at)
    local mode = ARGV[at]
    if mode ~= 'throttle' and mode ~= 'debounce' then bad('dedup mode must be throttle or debounce, got ' .. tostring(mode)) end
    local ttl = number('dedup ttl_ms', ARGV[at + 1], 1, MAX_DELAY_S * 1000, true)
    return { mode, ttl, id_arg('dedup_key', ARGV[at + 2]) }
  end

  -- Pushes one job under its dedup (`d`: mode, ttl_ms, key name, key): PUSHN's answer for it, and whether it
  -- wrote anything.
  local function push_dedup(d, id, rec, priority, delay_ms, g)
    local key, ttl = d[4], d[2]
    local holder = redis.call('GET', key)
    if d[1] == 'throttle' then
      if holder then return { holder }, false end
    else
      if holder and redis.call('ZSCORE', delayed, holder) then
        redis.call('HSET', jobs, holder, rec)
        redis.call('ZADD', delayed, now + ttl, holder)
        redis.call('PEXPIRE', key, ttl)
        emit('delayed', holder)
        emit_field('t', string.format('%d', now + ttl))
        return { holder }, true
      end
      delay_ms = ttl
    end
    local got = push_all(1, { id }, { rec }, { priority }, { delay_ms }, { g })[1]
    if got then redis.call('SET', key, got, 'PX', ttl) end
    return got or 0, got ~= false
  end

  local n = number('n', ARGV[3], 1, MAX_BATCH, true)
  local ids, recs, priorities, delays, dedups, grps = {}, {}, {}, {}, {}, nil
  local i, at, keyed = 0, 4, 0
  -- Groups of jobs that share their options: the options once, then the ids (when named) and the data.
  while i < n do
    -- One run of n jobs (the usual bulk) needs no second conversion.
    local k = i == 0 and ARGV[at] == ARGV[3] and n or number('k', ARGV[at], 1, n - i, true)
    local delay_arg = ARGV[at + 3]
    local head, priority, delay_ms = check_options(ARGV[at + 1], ARGV[at + 2], delay_arg)
    local named = ARGV[at + 4]
    local flags = type(named) == 'string' and #named == 1 and byte(named) - 48
    if not flags or flags < 0 or flags > 7 then flags = number('named', named, 0, 7, true) end
    local with_id, with_dedup, with_group = flags % 2 == 1, flags % 4 >= 2, flags >= 4
    at = at + 5
    -- Groups only when some job has one (nil entries are no group).
    if with_group and not grps then grps = {} end
    for _ = 1, k do
      i = i + 1
      ids[i] = false
      if with_dedup then
        local d = dedup_arg(at)
        if d[1] == 'debounce' and delay_arg ~= '0' then bad('a debounced job waits its ttl_ms: delay_seconds must be 0') end
        keyed = keyed + 1
        d[4] = waiting .. ':dedup:' .. d[3]
        if KEYS[DECLARED + keyed] ~= d[4] then bad('KEYS[' .. (DECLARED + keyed) .. '] must be the dedup key ' .. d[4]) end
        dedups[i] = d
        at = at + 3
      end
      if with_group then
        local g = ARGV[at]
        if type(g) ~= 'string' or #g == 0 or #g > MAX_GROUP then bad('group must be a string of 1 to ' .. MAX_GROUP .. ' bytes') end
        grps[i] = g
        at = at + 1
      end
      if with_id then
        ids[i] = id_arg('job_id', ARGV[at])
        at = at + 1
      end
      local data = ARGV[at]
      -- check_data inlined (a call per job); it still words the error.
      if data == nil or #data > MAX_DATA then check_data(data) end
      recs[i] = head .. data
      priorities[i] = priority
      delays[i] = delay_ms
      at = at + 1
    end
  end
  if #ARGV ~= at - 1 then bad('PUSHN with these groups takes ' .. (at - 1) .. ' arguments, got ' .. #ARGV) end
  if #KEYS > 4 and #KEYS ~= DECLARED + keyed then bad('PUSHN with ' .. keyed .. ' dedup keys takes ' .. (DECLARED + keyed) .. ' keys, got ' .. #KEYS) end
  if keyed > 0 and #KEYS == 4 then bad('a dedup needs the declared keys and its dedup key') end
  local out, wrote = {}, false
  if keyed == 0 then
    out, wrote = push_all(n, ids, recs, priorities, delays, grps)
  else
    -- In argument order: runs of plain jobs in one push each, a job with a dedup alone.
    local from = 1
    local function run_to(last)
      if last < from then return end
      local got, w = push_all(last - from + 1, { unpack(ids, from, last) }, { unpack(recs, from, last) },
        { unpack(priorities, from, last) }, { unpack(delays, from, last) }, grps and { unpack(grps, from, last) })
      for j = from, last do out[j] = got[j - from + 1] end
      wrote = wrote or w
    end
    for j = 1, n do
      if dedups[j] then
        run_to(j - 1)
        local w
        out[j], w = push_dedup(dedups[j], ids[j], recs[j], priorities[j], delays[j], grps and grps[j])
        from = j + 1
        wrote = wrote or w
      end
    end
    run_to(n)
  end
  if wrote then pushed() end
  for j = 1, n do out[j] = out[j] or 0 end
  return out
end

-- Speed: a closure captures each local it uses by walking the list of locals captured so far, newest
-- first, so capturing a local declared early walks past every helper above it. Values that no longer
-- change once the call has started are declared again here, where the completion helpers capture them
-- near the head of that list (never a counter or flag a helper updates: those must stay one variable).
local now, processing, waiting, jobs, state, meta, unpack, emit = now, processing, waiting, jobs, state, meta, unpack, emit

local function parse_state(s)
  if not s then return 0, '', '' end
  local a = find(s, ':', 1, true)
  local b = find(s, ':', a + 1, true)
  return tonumber(sub(s, 1, a - 1)), sub(s, a + 1, b - 1), sub(s, b + 1)
end

local function read_state(id)
  return parse_state(redis.call('HGET', state, id))
end

local function wake_worker_if_waiting()
  -- `gready` is read only when the call has not found the queue without groups.
  if redis.call('ZCARD', waiting) > 0 or (any_groups_seen ~= false and redis.call('ZCARD', gready) > 0) then wake_worker() end
end

-- The job's state when `id` is leased (under `token`, if given), else nil.
local function leased(id, token)
  if not redis.call('ZSCORE', processing, id) then return nil end
  local attempts, held, err = read_state(id)
  if token and token ~= held then return nil end
  return attempts, held, err
end

--[[ COMPLETE (public; lease_token and return_value are internal) ----------------------------------------
KEYS: 2 processing, 6 jobs, 7 state, 8 meta, 10 completed, 11 events, 12 info.
ARGV: COMPLETE <current_time> <job_id> [lease_token] [return_value]
  return_value: at most 1 MiB, kept with the job while it is kept (see POLICY).
Reply: 1 when completed (completed counter + 1; the record kept in `completed` or, the seed's way, deleted;
  event completed), 0 when the job is not leased (unknown, already completed, reclaimed) or, with a token,
  leased under another token. A repeat is harmless.
]]
if op == 'COMPLETE' then
  local id = id_arg('job_id', ARGV[3])
  local token = ARGV[4] and id_arg('lease_token', ARGV[4])
  local value = ARGV[5]
  if value ~= nil and #value > MAX_DATA then bad('return_value must be at most ' .. MAX_DATA .. ' bytes, got ' .. #value) end
  local attempts, held = leased(id, token)
  if not attempts then return 0 end
  local freed = release_groups({ id })
  finish({ id }, { id, attempts .. ':=' .. held .. ':' }, value and { value })
  -- Under a concurrency limit a worker may be held back (see LIMITS), and a group may have had its slot
  -- taken: the freed slot wakes one.
  if max_active > 0 or freed then wake_worker_if_waiting() end
  flush_events()
  return 1
end

-- The helpers that move jobs between places (requeue, dead-letter, a lost record), built by `load_moves`
-- only in a call that moves one: the usual COMPLETE, POP and ACK move none (see the speed notes).
local group_of, enqueue, requeue, parse_record, ended, write_state, dead_letter, trim_dead, lost_record
local function load_moves()
  if lost_record then return end
  -- The group of job `id`, or nil; a group found builds the group helpers, so its caller can use them.
  function group_of(id)
    if not any_groups() then return nil end
    local g = redis.call('HGET', groups, 'j:' .. id)
    if not g then return nil end
    load_groups()
    return g
  end

  function enqueue(id, priority)
    local g = group_of(id)
    if g then return enqueue_group(g, id, false) end
    enqueue_ids(priority, { id }, false)
  end

  -- A job whose lease expired or was released waited its turn already: it goes first within its priority
  -- (or its group).
  function requeue(id, priority)
    local g = group_of(id)
    if g then return enqueue_group(g, id, true) end
    enqueue_ids(priority, { id }, true)
  end

  -- A job record's priority, max_retries, the index of the colon before its data, and its backoff base and
  -- cap in ms; nil when the record is lost. (A record written before creation times were kept has no "@".)
  function parse_record(rec)
    if not rec then return nil end
    local a = find(rec, ':', 1, true)
    local b = find(rec, ':', a + 1, true)
    local policy = sub(rec, a + 1, b - 1)
    local at = find(policy, '@', 1, true)
    if at then policy = sub(policy, 1, at - 1) end
    local c = find(policy, ',', 1, true)
    if not c then return tonumber(sub(rec, 1, a - 1)), tonumber(policy), b, DEFAULT_BACKOFF_MS, DEFAULT_BACKOFF_MAX_MS end
    local d = find(policy, ',', c + 1, true)
    return tonumber(sub(rec, 1, a - 1)), tonumber(sub(policy, 1, c - 1)), b,
      tonumber(sub(policy, c + 1, d - 1)), tonumber(sub(policy, d + 1))
  end

  -- The token of a lease that ended: "~" and the token, which no caller holds (see STATE); "=" and the token
  -- once completed.
  function ended(token)
    local first = byte(token, 1)
    if token == '' or token == '0' or first == 126 or first == 61 then return token end
    return '~' .. token
  end

  function write_state(id, attempts, token, err)
    redis.call('HSET', state, id, attempts .. ':' .. token .. ':' .. err)
  end

  function dead_letter(id, attempts, token, err)
    write_state(id, attempts, ended(token), err)
    redis.call('ZADD', dead, now, id)
    emit('dead', id)
    emit_field('f', err)
  end

  function trim_dead()
    trim_finished(dead, keep_dead + 0, keep_dead_ms + 0, DEAD_TRIM + MOVE_LIMIT)
  end

  -- A job met without its record (evicted or deleted): it cannot run, so it is dead-lettered with the reason.
  function lost_record(id)
    local attempts, token = read_state(id)
    dead_letter(id, attempts, token, 'record lost')
  end
end

--[[ EXTEND (internal) -----------------------------------------------------------------------------------
KEYS: 2 processing, 7 state.
ARGV: EXTEND <current_time> <lease_ms> <n> then n times <job_id> <lease_token>
Reply: { 1|0, ... }: renews each lease that is still held under that token to now + lease_ms.
]]
if op == 'EXTEND' then
  -- n (job_id, lease_token) pairs from ARGV[base] on, as two lists.
  local function pairs_arg(base, n)
    local ids, tokens = {}, {}
    for i = 1, n do
      ids[i] = id_arg('job_id', ARGV[base + 2 * i - 2])
      tokens[i] = id_arg('lease_token', ARGV[base + 2 * i - 1])
    end
    return ids, tokens
  end

  local lease_ms = number('lease_ms', ARGV[3], 1, MAX_LEASE_MS, true)
  local n = number('n', ARGV[4], 1, MAX_BATCH, true)
  if #ARGV ~= 4 + 2 * n then bad('EXTEND with n = ' .. n .. ' takes ' .. (4 + 2 * n) .. ' arguments, got ' .. #ARGV) end
  local ids, tokens = pairs_arg(5, n)
  local out = {}
  for i = 1, n do
    if leased(ids[i], tokens[i]) then
      redis.call('ZADD', processing, 'XX', now + lease_ms, ids[i])
      out[i] = 1
    else
      out[i] = 0
    end
  end
  return out
end

--[[ RELEASE (internal) ----------------------------------------------------------------------------------
KEYS: 1 queue, 2 processing, 4 dead, 6 jobs, 7 state, 8 meta, 9 wake, 11 events, 12 info and the list of
  the job's priority.
ARGV: RELEASE <current_time> <job_id> <lease_token> [pause_ms]
  pause_ms (1 ms to a day): the job's handler was told to back off (a rate limit upstream): no call
  leases from the queue for pause_ms (meta `until`; a later end wins), and no worker is woken.
Reply: 1 when the leased job went back to the head of its priority without its attempt counted (or, its
  record lost, to the dead letters), else 0 (and no pause).
]]
if op == 'RELEASE' then
  load_moves()
  local id = id_arg('job_id', ARGV[3])
  local token = id_arg('lease_token', ARGV[4])
  local pause_ms = ARGV[5] and number('pause_ms', ARGV[5], 1, MAX_LEASE_MS, true)
  if #ARGV > 5 then bad('RELEASE takes at most 5 arguments, got ' .. #ARGV) end
  local attempts, held, err = leased(id, token)
  if not attempts then return 0 end
  if pause_ms then
    local until_ms = tonumber(redis.call('HGET', meta, 'until')) or 0
    if now + pause_ms > until_ms then redis.call('HSET', meta, 'until', string.format('%d', now + pause_ms)) end
  end
  local priority = parse_record(redis.call('HGET', jobs, id))
  redis.call('ZREM', processing, id)
  if not priority then
    release_groups({ id })
    lost_record(id)
    trim_dead()
  else
    write_state(id, attempts - 1, ended(held), err)
    requeue(id, priority)
    release_groups({ id })
    emit('waiting', id)
    save_count()
    if not pause_ms then wake_worker() end
  end
  flush_events()
  return 1
end

--[[ RETRYDEAD (internal) --------------------------------------------------------------------------------
KEYS: 1 queue, 4 dead, 6 jobs, 7 state, 8 meta, 9 wake, 11 events and the lists of the jobs' priorities.
ARGV: RETRYDEAD <current_time> <count> [skip]
Reply: { moved, seen }: of the count (1..1000) oldest dead jobs after the first skip (default 0), the
  number moved back to the queue with their attempts reset, and how many were looked at; a job whose
  record is lost stays dead.
]]
if op == 'RETRYDEAD' then
  load_moves()
  local count = number('count', ARGV[3], 1, MAX_BATCH, true)
  local skip = 0
  if ARGV[4] ~= nil then skip = number('skip', ARGV[4], 0, 1e9, true) end
  local ids = redis.call('ZRANGE', dead, skip, skip + count - 1)
  local recs = #ids > 0 and redis.call('HMGET', jobs, unpack(ids)) or {}
  local moved = 0
  for i, id in ipairs(ids) do
    local priority = parse_record(recs[i])
    if priority then
      redis.call('ZREM', dead, id)
      redis.call('HDEL', state, id)
      enqueue(id, priority)
      emit('waiting', id)
      moved = moved + 1
    end
  end
  save_count()
  wake_worker_if_waiting()
  flush_events()
  return { moved, #ids }
end

--[[ DEAD (internal) -------------------------------------------------------------------------------------
KEYS: 4 dead, 6 jobs, 7 state.
ARGV: DEAD <current_time> <count>
Reply: { id, data, attempts, error, died_at_ms, ... } for the count (1..1000) most recent dead jobs; data is
  nil when the job's record is lost, error "reason lost" (and attempts 0) when its state is.
]]
if op == 'DEAD' then
  load_moves()
  local count = number('count', ARGV[3], 1, MAX_BATCH, true)
  local out = {}
  local list = redis.call('ZREVRANGE', dead, 0, count - 1, 'WITHSCORES')
  for i = 1, #list, 2 do
    local id = list[i]
    local rec = redis.call('HGET', jobs, id)
    local _, _, at = parse_record(rec)
    local saved = redis.call('HGET', state, id)
    local attempts, _, err = parse_state(saved)
    -- A dead job always has a state; without one the reason was lost with it.
    if not saved then err = 'reason lost' end
    local k = #out
    out[k + 1] = id
    -- false goes out as nil: the record is lost.
    out[k + 2] = rec and string.sub(rec, at + 1) or false
    out[k + 3] = attempts
    out[k + 4] = err
    out[k + 5] = tonumber(list[i + 1])
  end
  return out
end

--[[ FAIL (public; lease_token and final are internal) -----------------------------------------------------
KEYS: 2 processing, 3 failed, 4 dead, 6 jobs, 7 state, 9 wake, 11 events, 12 info.
ARGV: FAIL <current_time> <job_id> <error_message> [lease_token] [final]
Reply: { "retry", retry_at_ms } while attempts <= max_retries: waits in `failed` for
  min(max, base * 2^(attempts-1)) ms, jittered down by up to half, with the backoff stored with the job
  (default 1000 and 60000); { "dead", died_at_ms } once attempts > max_retries, when final is "1", or when
  the job's record is lost (error "record lost"); { "lost", 0 } as COMPLETE's 0. The error is kept (cut to
  1000 bytes) with the job.
]]
if op == 'FAIL' then
  load_moves()
  local id = id_arg('job_id', ARGV[3])
  local message = ARGV[4]
  if message == nil then bad('error_message is missing') end
  local token = ARGV[5] and id_arg('lease_token', ARGV[5])
  local final = ARGV[6]
  if final ~= nil and final ~= '0' and final ~= '1' then bad('final must be 0 or 1, got ' .. final) end
  if #ARGV > 6 then bad('FAIL takes at most 6 arguments (the backoff is stored with the job), got ' .. #ARGV) end
  local attempts, held = leased(id, token)
  if not attempts then return { 'lost', 0 } end
  local priority, max_retries, _, base, cap = parse_record(redis.call('HGET', jobs, id))
  local err = string.sub(message, 1, MAX_ERROR)
  redis.call('ZREM', processing, id)
  release_groups({ id })
  if not priority or final == '1' or attempts > max_retries then
    dead_letter(id, attempts, held, priority and err or 'record lost')
    trim_dead()
    flush_events()
    return { 'dead', now }
  end
  local delay = math.min(cap, base * 2 ^ (attempts - 1))
  -- Scripts start with a fixed seed; seed from time and token so retries of many jobs spread out.
  math.randomseed((now + ((tonumber(held) or 0) % 1000003) * 7919) % 2147483647)
  local at = now + math.floor(delay / 2 + math.random() * delay / 2)
  write_state(id, attempts, ended(held), err)
  redis.call('ZADD', failed, at, id)
  emit('retrying', id)
  emit_field('t', string.format('%d', at))
  emit_field('f', err)
  wake_worker()
  flush_events()
  return { 'retry', at }
end

-- POP's and ACK's helpers (and DRAIN's `pop_waiting_ids`), built only by those calls. The leasing ones are
-- built inside one function: a closure built there takes that function's upvalues as they are, where one
-- built at the top level looks up each local it captures among all those captured before it.
local pop_waiting_ids, lease_jobs, wait_after, request_arg, recall_request, remember_request, replay_request
if op == 'POP' or op == 'ACK' or op == 'DRAIN' then
  -- Declared again for the POP and ACK helpers below (see the speed note before `parse_state`).
  local now, processing, waiting, jobs, state, meta, delayed, failed = now, processing, waiting, jobs, state, meta, delayed, failed
  local unpack, emit = unpack, emit

  local function load_lease()
    -- Numbers go to Redis as text, formatted once (see the speed notes).
    local now_text, move_limit = string.format('%d', now), string.format('%d', MOVE_LIMIT)
    -- Pops up to `count` ids, highest priority first; each turn pops at least one id, or drops an index entry
    -- whose list is gone. Also returns true when the last list it popped from still holds jobs (so jobs wait).
    function pop_waiting_ids(count)
      local ids, n = {}, 0
      local more = false
      for _ = 1, count do
        local left = count - n
        if left == 0 then break end
        local top = redis.call('ZRANGE', waiting, '0', '0')[1]
        if not top then break end
        local list = waiting .. ':w:' .. top
        local got = redis.call('LPOP', list, left) or {}
        -- The usual pop takes from one list: its reply is the result, uncopied.
        if n == 0 then
          ids = got
        else
          for i = 1, #got do ids[n + i] = got[i] end
        end
        n = n + #got
        more = #got == left and redis.call('LLEN', list) > 0
        if not more then redis.call('ZREM', waiting, top) end
      end
      waiting_delta = waiting_delta - n
      return ids, more
    end

    -- Group leasing, built by `load_group_pop` only in a call that leases from groups:
    -- `sweep_groups` places again up to 100 of the groups with jobs waiting (`gwait`, by name from where the
    -- last step ended, meta `gsweep`), so a group that a lost `gready` or `glimited` left out is served again (see RECOVERY).
    -- Run when a call finds no group ready: one pass at most every 60 s of server time (meta `gswept`), or at
    -- once with `now_too` (`groups` is empty while groups wait: it was lost), a step per call. `first`: the
    -- call has taken no job yet; then, with no job leased at all, every leased counter above 0 counts leases a
    -- lost `processing` took (their jobs come back through the audit) and is set to 0. Returns whether a group
    -- is ready now.
    -- `pop_group_ids` pops up to `count` ids from the groups (see GROUPS), appending them to `ids`: groups whose rate limit
    -- let them lease again become ready, then each turn takes the head of the first ready group and moves
    -- that group to the back (round robin), or out of `gready` when it is at its concurrency or rate limit,
    -- paused or empty: O(log groups) per job; when none is ready, a step of `sweep_groups` (`lost`: see there)
    -- and the turns go on. Returns whether ready groups remain.
    local sweep_groups, pop_group_ids
    local function load_group_pop()
      load_groups()
      if pop_group_ids then return end
      function sweep_groups(now_too, first)
        local m = redis.call('HMGET', meta, 'gsweep', 'gswept')
        local from, swept = m[1], tonumber(m[2])
        if from then
          from = '(' .. from
        elseif not now_too and swept and now >= swept and now < swept + AUDIT_EVERY_MS then
          return false
        else
          from = '-'
        end
        local names = redis.call('ZRANGEBYLEX', gwait, from, '+', 'LIMIT', 0, AUDIT_STEP)
        local unleased = first and #names > 0 and redis.call('ZCARD', processing) == 0
        for _, g in ipairs(names) do
          if unleased then redis.call('HSET', groups, 's:' .. g, 0) end
          place_group(g, false)
        end
        if #names < AUDIT_STEP then
          redis.call('HDEL', meta, 'gsweep')
          redis.call('HSET', meta, 'gswept', now)
        else
          redis.call('HSET', meta, 'gsweep', names[#names])
        end
        return redis.call('ZCARD', gready) > 0
      end
      function pop_group_ids(count, ids, lost)
        for _, g in ipairs(redis.call('ZRANGEBYSCORE', glimited, '-inf', now_text, 'LIMIT', '0', move_limit)) do
          redis.call('ZREM', glimited, g)
          place_group(g, true)
        end
        local n = 0
        local swept = false
        while n < count do
          local g = redis.call('ZRANGE', gready, 0, 0)[1]
          if not g then
            if swept or not sweep_groups(lost, #ids == 0) then break end
            swept = true
            g = redis.call('ZRANGE', gready, 0, 0)[1]
          end
          local id = redis.call('LPOP', waiting .. ':g:' .. g)
          if id then
            n = n + 1
            ids[#ids + 1] = id
            gwaiting_delta = gwaiting_delta - 1
            -- Written again so that a lost `groups` hash cannot leave the lease holding the group's slot forever.
            redis.call('HSET', groups, 'j:' .. id, g)
            any_groups_seen = true
            redis.call('HINCRBY', groups, 's:' .. g, 1)
            local _, limit, window, _, tat = group_state(g)
            if limit > 0 then
              redis.call('HSET', groups, 't:' .. g, string.format('%.3f', math.max(tat, now) + window / limit))
            end
          end
          place_group(g, true)
        end
        return redis.call('ZCARD', gready) > 0
      end
    end

    local function promote_due(source)
      local ids = redis.call('ZRANGEBYSCORE', source, '-inf', now_text, 'LIMIT', '0', move_limit)
      if #ids == 0 then return 0 end
      load_moves()
      local recs = redis.call('HMGET', jobs, unpack(ids))
      redis.call('ZREM', source, unpack(ids))
      local buried = 0
      for i, id in ipairs(ids) do
        local priority = parse_record(recs[i])
        if priority then
          enqueue(id, priority)
          emit('waiting', id)
        else
          lost_record(id)
          buried = buried + 1
        end
      end
      return buried
    end

    -- An expired lease ends the attempt it was granted for: the job waits again, or dies after its last one.
    -- Jobs in `completing` (an ACK's accepted completions, deleted after its pop) are left alone.
    local function reclaim(completing)
      local ids = {}
      for _, id in ipairs(redis.call('ZRANGEBYSCORE', processing, '-inf', now_text, 'LIMIT', '0', move_limit)) do
        if not completing[id] then ids[#ids + 1] = id end
      end
      if #ids == 0 then return 0 end
      load_moves()
      local recs = redis.call('HMGET', jobs, unpack(ids))
      redis.call('ZREM', processing, unpack(ids))
      local buried = 0
      for i, id in ipairs(ids) do
        local priority, max_retries = parse_record(recs[i])
        local attempts, held = read_state(id)
        emit('stalled', id)
        if not priority then
          lost_record(id)
          buried = buried + 1
        elseif attempts > max_retries then
          dead_letter(id, attempts, held, 'lease expired')
          buried = buried + 1
        else
          write_state(id, attempts, ended(held), 'lease expired')
          requeue(id, priority)
        end
      end
      release_groups(ids)
      return buried
    end

    -- Run when a call leaves the waiting lists empty (see RECOVERY): checks the counts, repairs, audits.
    local function check_empty(lease_ms)
      local m = redis.call('HMGET', meta, 'waiting', 'audit', 'audited', 'gwaiting')
      local cursor, audited = m[2], tonumber(m[3])
      -- Grouped jobs counted while no group is indexed as waiting (a lost group list or `gwait`): the count
      -- starts again at 0 and the audit looks for them (a list found again adds its jobs).
      local grouped_lost = (tonumber(m[4]) or 0) + gwaiting_delta ~= 0
      if grouped_lost then
        redis.call('HSET', meta, 'gwaiting', 0)
        gwaiting_delta = 0
      end
      if (tonumber(m[1]) or 0) + waiting_delta ~= 0 then
        repair()
        cursor = '0'
      elseif grouped_lost and not cursor then
        cursor = '0'
      elseif not cursor then
        -- Records no set places (a set was lost): the sets are counted only until they account for every
        -- record, so an emptied queue that keeps no jobs reads HLEN and one ZCARD, not six counts.
        local unplaced = redis.call('HLEN', jobs)
        if unplaced > 0 then unplaced = unplaced - redis.call('ZCARD', processing) end
        if unplaced > 0 then unplaced = unplaced - redis.call('ZCARD', completed) end
        if unplaced > 0 then unplaced = unplaced - redis.call('ZCARD', dead) end
        if unplaced > 0 then unplaced = unplaced - redis.call('ZCARD', delayed) end
        if unplaced > 0 then unplaced = unplaced - redis.call('ZCARD', failed) end
        if unplaced > 0 then
          -- Records in no set: the lists too may have lost their index (with `meta`, so no count told),
          -- and the audit must not requeue jobs that still wait in them.
          repair()
          cursor = '0'
        elseif audited and now >= audited and now < audited + AUDIT_EVERY_MS then
          return
        else
          repair()
          cursor = '0'
        end
      end
      -- Jobs found in lists that had lost their index entry: serve them first, audit once the lists are empty.
      if redis.call('ZCARD', waiting) > 0 then
        redis.call('HSET', meta, 'audit', cursor)
        return
      end
      -- One step of the audit of the records (see RECOVERY); runs only while the waiting lists are empty, so a
      -- record found in none of the sets is in no place. `lease_ms`: the lease given to a job found leased.
      -- (Inline: one caller, and a closure costs every POP and ACK.)
      load_moves()
      local reply = redis.call('HSCAN', jobs, cursor, 'COUNT', AUDIT_STEP)
      -- empty[g]: whether group g's list was empty when this step first met one of its jobs.
      local found, seen, empty = reply[2], {}, {}
      for i = 1, #found, 2 do
        local id = found[i]
        local g = group_of(id)
        if g and empty[g] == nil then
          -- The audit runs while `gwait` is empty, so a list holding jobs here lost its index entry: it is
          -- indexed again (its jobs counted) and served, and its group's jobs are left to the next pass.
          local len = redis.call('LLEN', waiting .. ':g:' .. g)
          empty[g] = len == 0
          if len > 0 then
            redis.call('ZADD', gwait, 0, g)
            redis.call('HSETNX', groups, 's:' .. g, 0)
            gwaiting_delta = gwaiting_delta + len
            place_group(g, false)
          end
        end
        -- HSCAN may return an element twice: place it once.
        if not seen[id] and (not g or empty[g]) and not redis.call('ZSCORE', processing, id) and not redis.call('ZSCORE', delayed, id)
          and not redis.call('ZSCORE', failed, id) and not redis.call('ZSCORE', dead, id)
          and not redis.call('ZSCORE', completed, id) then
          seen[id] = true
          local priority, max_retries = parse_record(found[i + 1])
          local attempts, held, err = read_state(id)
          if ended(held) ~= held then
            redis.call('ZADD', processing, now + lease_ms, id)
          elseif byte(held, 1) == 61 then
            redis.call('ZADD', completed, now, id)
          elseif attempts > max_retries then
            dead_letter(id, attempts, held, err)
          else
            requeue(id, priority)
          end
        end
      end
      if reply[1] == '0' then
        redis.call('HDEL', meta, 'audit')
        redis.call('HSET', meta, 'audited', now)
      else
        redis.call('HSET', meta, 'audit', reply[1])
      end
    end

    -- Leases the popped `ids` under one new lease token (a call leases a job at most once, so the token still
    -- fences each lease) and appends them to `out` (seed pairs, or id and record pairs when `full`). Returns
    -- how many, the token (0 when none), their attempts (a table of strings) and how many were dead-lettered
    -- (their records lost).
    local function lease_ids(ids, lease_ms, full, out, last_token)
      local n = #ids
      local recs = redis.call('HMGET', jobs, unpack(ids))
      local olds = redis.call('HMGET', state, unpack(ids))
      local token, held, fresh, deadline = new_lease(last_token, lease_ms)
      local leases, states, tries = {}, {}, {}
      local k, j, buried = #out, 0, 0
      for i = 1, n do
        local id = ids[i]
        local rec = recs[i]
        if rec then
          local try, s = '1', fresh
          if olds[i] then
            local before, _, err = parse_state(olds[i])
            try = string.format('%d', before + 1)
            s = try .. held .. err
          end
          j = j + 1
          states[2 * j - 1] = id
          states[2 * j] = s
          leases[2 * j - 1] = deadline
          leases[2 * j] = id
          if events_on then emit('active', id) end
          if full then
            -- The record goes out whole ("priority:policy@created:data"): the caller splits it, Lua copies nothing.
            out[k + 1] = id
            out[k + 2] = rec
            k = k + 2
            tries[j] = try
          else
            load_moves()
            local _, _, at = parse_record(rec)
            out[#out + 1] = { id, string.sub(rec, at + 1) }
          end
        else
          load_moves()
          release_groups({ id })
          lost_record(id)
          buried = buried + 1
        end
      end
      if j == 0 then return 0, 0, tries, buried end
      redis.call('HSET', state, unpack(states))
      redis.call('ZADD', processing, unpack(leases))
      return j, token, tries, buried
    end

    -- Leases up to `count` jobs (see `lease_ids`) after moving due work to the queue. Returns how many, the
    -- token (0 when none) and, when `full`, their attempts as one string ("1,1,2"). `completing`: see `reclaim`;
    -- `ending`: how many leases the call ends. Also returns how long a worker held back by a pause or a limit
    -- waits (nil when it is not held back).
    function lease_jobs(count, lease_ms, full, out, completing, ending)
      local n, token, more, tries, hold = 0, 0, false, {}, nil
      -- Whether this call read both the priority index and `gwait` empty (not read again below).
      local read_empty = false
      local buried = reclaim(completing) + promote_due(delayed) + promote_due(failed)
      local room = 0
      if count > 0 then
        local m = redis.call('HMGET', meta, 'paused', 'lease', 'until', 'tat')
        local ids = {}
        -- How many of `count` jobs the queue's state and limits (see LIMITS) let the call lease now (`m`:
        -- meta's paused, lease, until and tat; `ending`: leases the call ends, still in `processing`), and
        -- what a worker held back waits: nil (not held), -1 (until woken) or ms.
        local until_ms = tonumber(m[3])
        room = count
        if m[1] then
          room, hold = 0, -1
        elseif until_ms and until_ms > now then
          room, hold = 0, until_ms - now
        else
          if max_active > 0 then
            local free = max_active - redis.call('ZCARD', processing) + ending
            if free <= 0 then
              room, hold = 0, -1
            elseif free < room then
              room = free
            end
          end
          if room > 0 and rate_limit > 0 then
            local tat = tonumber(m[4]) or 0
            if tat > now then
              room, hold = 0, math.ceil(tat - now)
            else
              -- Starts are spread evenly (one per window / limit), so no window of that length holds more.
              room = 1
            end
          end
        end
        if room > 0 then
          ids, more = pop_waiting_ids(room)
          -- `gwait` too: a lost `groups` hash must not hide the groups' lists (see RECOVERY).
          if #ids < room then
            local grouped = any_groups()
            if grouped or redis.call('ZCARD', gwait) > 0 then
              load_group_pop()
              more = pop_group_ids(room - #ids, ids, not grouped) or more
            else
              -- A short pop ran out of priorities, and nothing adds to either before the check below.
              read_empty = true
            end
          end
        end
        if #ids > 0 then
          local lost
          n, token, tries, lost = lease_ids(ids, lease_ms, full, out, m[2])
          buried = buried + lost
          if rate_limit > 0 then
            local tat = math.max(tonumber(m[4]) or 0, now) + n * rate_window / rate_limit
            redis.call('HSET', meta, 'tat', string.format('%.3f', tat))
            hold = math.ceil(tat - now)
          elseif max_active > 0 and redis.call('ZCARD', processing) - ending >= max_active then
            -- Every slot is taken: wake no one (a finished job will).
            hold = -1
          end
        end
      end
      if buried > 0 then trim_dead() end
      if not more and (read_empty or (redis.call('ZCARD', waiting) == 0 and redis.call('ZCARD', gwait) == 0)) then
        if n > 0 then emit('drained', '') end
        check_empty(lease_ms)
        -- Nothing left to hold back from (a pause or a held slot still holds).
        if n > 0 then hold = nil end
      end
      save_count()
      -- Jobs left behind wake the next blocked worker, unless a pause or a limit holds workers back: then a
      -- finished job (a free slot) or the worker's own timeout (the next rate slot, the pause's end) wakes one.
      if not hold then
        if more then wake_worker() else wake_worker_if_waiting() end
      end
      return n, token, table.concat(tries, ','), hold
    end

    -- What a worker that got `n` of `count` jobs should wait: held back by a pause or a limit, `hold` (-1:
    -- block until woken); a full batch means "ask again" (0); else 0 while jobs wait, the ms to the first
    -- delayed job, retry, lease deadline or rate-limited group, or -1 for none.
    function wait_after(n, count, hold)
      if hold then return hold end
      if count > 0 and n == count then return 0 end
      -- The group sets are read only when the call has not found the queue without groups.
      local grouped = any_groups_seen ~= false
      if redis.call('ZCARD', waiting) > 0 or (grouped and redis.call('ZCARD', gready) > 0) then return 0 end
      local best = -1
      for _, key in ipairs({ delayed, failed, processing, grouped and glimited or nil }) do
        local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        if first[2] then
          local d = math.max(0, tonumber(first[2]) - now)
          if best < 0 or d < best then best = d end
        end
      end
      return best
    end
  end
  load_lease()

  -- The request of a call (see REQUESTS) from ARGV[index] on: its lane's memo key and its seq, or nil (a
  -- request also builds the memo helpers).
  function request_arg(index)
    local lane = ARGV[index]
    if lane == nil then
      if #KEYS == DECLARED + 1 then bad('KEYS[18] is a request memo key: the call needs a request') end
      return nil
    end
    id_arg('request_lane', lane)
    local seq = ARGV[index + 1]
    number('request_seq', seq, 0, 9007199254740991, true)
    local key = waiting .. ':req:' .. lane
    if #KEYS == DECLARED + 1 and KEYS[DECLARED + 1] ~= key then bad('KEYS[18] must be the request memo key ' .. key) end
    -- The memo helpers (see REQUESTS), built here only in a call that names a request.
    if not recall_request then
      -- The first run's memo of this request, if its lane still holds it: { results, token, ids }. A memo that
      -- does not decode (a key overwritten by hand) counts as absent.
      function recall_request(key, seq)
        local saved = key and redis.call('GET', key)
        if not saved then return nil end
        local cut = string.find(saved, ':', 1, true)
        if not cut or string.sub(saved, 1, cut - 1) ~= seq then return nil end
        local ok, results, token, ids = pcall(cmsgpack.unpack, string.sub(saved, cut + 1))
        if not ok or type(results) ~= 'string' or type(token) ~= 'number' or type(ids) ~= 'table' then return nil end
        -- Built here, only for a repeated call: answers it, appending the jobs the first run leased that are
        -- still leased under its token (as `pop` with `full`); returns the first run's results, its token, how
        -- many jobs it appended and their attempts (as `pop`).
        function replay_request(saved, out)
          local results, token, ids = saved[1], saved[2], saved[3]
          local n, tries = 0, {}
          local held = string.format('%d', token)
          for _, id in ipairs(ids) do
            local attempts = type(id) == 'string' and leased(id, held)
            local rec = attempts and redis.call('HGET', jobs, id)
            if rec then
              local k = #out
              out[k + 1] = id
              out[k + 2] = rec
              n = n + 1
              tries[n] = string.format('%d', attempts)
            elseif attempts then
              load_moves()
              redis.call('ZREM', processing, id)
              release_groups({ id })
              lost_record(id)
            end
          end
          return results, token, n, table.concat(tries, ',')
        end
        return { results, token, ids }
      end

      -- Remembers a call in its lane (replacing the lane's previous call): "<seq>:" and its completion results,
      -- token and the ids of the jobs in `out` from index `from`, as MessagePack. A call that completed and
      -- leased nothing is not remembered: its repeat is harmless, and a first write would be refused under
      -- maxmemory.
      function remember_request(key, seq, results, completed, token, out, from, lease_ms)
        local ids, n = {}, 0
        for k = from, #out, 2 do
          n = n + 1
          ids[n] = out[k]
        end
        if completed == 0 and n == 0 then return end
        redis.call('SET', key, seq .. ':' .. cmsgpack.pack(results, token, ids), 'PX', lease_ms > MIN_MEMO_MS and lease_ms or MIN_MEMO_MS)
      end
    end
    return key, seq
  end
end

--[[ POP (public, lease_ms included; full and the request are internal) -----------------------------------
KEYS: all seventeen declared, the priority and group lists and, with a request, KEYS[18] = its memo key.
ARGV: POP <current_time> <count> [lease_ms] [full] [request_lane request_seq]
Reply: seed shape: { {id, data}, ... } up to count (1..1000) jobs, leased for lease_ms (default 30000).
  With full = "1": { wait_ms, lease_token, attempts, id, "<priority>:<policy>@<created_ms>:<data>", ... }: one token for
  the jobs of the call (0 when none), their attempt counts as one comma-separated string ("1,1,2"; ""
  when none), then two items per job; wait_ms is 0 when count jobs came or jobs still wait, else ms until
  the next delayed job, retry or lease deadline, or -1 for none (and while the queue is paused, when it
  leases nothing). A request (needs full = "1"): see REQUESTS.
  Before leasing, a POP reclaims up to 256 expired leases (back to the queue, or dead once the attempt
  that expired was the last) and moves up to 256 due delayed and 256 due retry jobs to the queue. When a
  POP leaves the queue empty it checks the structures and repairs what was lost: see RECOVERY.
]]
if op == 'POP' then
  local count = number('count', ARGV[3], 1, MAX_BATCH, true)
  local lease_ms = DEFAULT_LEASE_MS
  if ARGV[4] ~= nil then lease_ms = number('lease_ms', ARGV[4], 1, MAX_LEASE_MS, true) end
  local full = ARGV[5] == '1'
  local memo, seq = request_arg(6)
  if memo and not full then bad('a request needs full = 1') end
  local out = {}
  if full then out = { 0, 0, '' } end
  local saved = memo and recall_request(memo, seq)
  local n, token, tries, hold
  if saved then
    local _
    _, token, n, tries = replay_request(saved, out)
  else
    n, token, tries, hold = lease_jobs(count, lease_ms, full, out, {}, 0)
    if memo then remember_request(memo, seq, '', 0, token, out, 4, lease_ms) end
  end
  if full then
    out[1] = wait_after(n, count, hold)
    out[2] = token
    out[3] = tries
  end
  flush_events()
  return out
end

--[[ ACK (internal) -------------------------------------------------------------------------------------
KEYS: all seventeen declared, the priority and group lists and, with a request, KEYS[18] = the request's memo key.
ARGV: ACK <current_time> <lease_ms> <fetch> <n> then groups of jobs leased under one token, each
  <lease_token> <k> <valued> then k times <job_id> or, with valued = 1, k times <job_id> <return_value>
  ('' for none; at most 1 MiB) (k >= 1, the k summing to n), then [request_lane request_seq]
Reply: { results, wait_ms, lease_token, attempts, jobs as POP full ... }: completes n (0..1000) jobs, then
  leases up to fetch (0..1000) more, in one call; results is one "1" (completed) or "0" (not leased under
  that token) per job, in argument order. A request: see REQUESTS.
]]
if op == 'ACK' then
  local lease_ms, fetch, n, ids = ack_lease_ms, ack_fetch, ack_n, ack_ids
  local memo, seq = request_arg(ack_at)
  local saved = memo and recall_request(memo, seq)
  local out = { 0, 0, 0, '' }
  if saved then
    local results, token, got, tries = replay_request(saved, out)
    out[1] = results
    out[2] = wait_after(got, fetch, nil)
    out[3] = token
    out[4] = tries
    return out
  end
  local results, done, seen, finals, kept = '', {}, {}, {}, nil
  if n > 0 then results, done, seen, finals, kept = ack_check(redis.call('HMGET', state, unpack(ids))) end
  out[1] = results
  -- The new leases are written before the completions are deleted: a batch that completes every leased
  -- job would otherwise empty `state` and `processing`, and Redis (7.0) rebuilds a large hash or sorted
  -- set from its compact encoding at quadratic cost (a third of such a call's time).
  -- Groups get their slots back before the fetch, so it can lease from them.
  release_groups(done)
  local got, token, tries, hold = lease_jobs(fetch, lease_ms, true, out, seen, #done)
  if #done > 0 then finish(done, finals, kept) end
  out[2] = wait_after(got, fetch, hold)
  out[3] = token
  out[4] = tries
  if memo then remember_request(memo, seq, results, #done, token, out, 5, lease_ms) end
  flush_events()
  return out
end

-- Inspection and control: below the hot path, so POP and ACK never build these helpers.
load_moves()

local function forget(id)
  forget_all({ id })
end

-- Where a job is: its state name, the score it has there (lease deadline, ready time, finish time) and
-- the set holding it; 'waiting' (no score) when no set holds it.
local function where(id)
  for _, place in ipairs({ { processing, 'active' }, { delayed, 'delayed' }, { failed, 'delayed' },
    { completed, 'completed' }, { dead, 'dead' } }) do
    local score = redis.call('ZSCORE', place[1], id)
    if score then return place[2], score, place[1] end
  end
  return 'waiting', false, nil
end

-- Appends a job's seven INFO items (see GETJOB) to `out`; `name` and `score` when the caller knows them.
local function append_info(out, id, name, score)
  if not name then name, score = where(id) end
  local extra = redis.call('HMGET', info, 'p:' .. id, 'r:' .. id)
  local k = #out
  out[k + 1] = id
  out[k + 2] = name
  out[k + 3] = redis.call('HGET', jobs, id) or false
  out[k + 4] = redis.call('HGET', state, id) or false
  out[k + 5] = extra[1] or false
  out[k + 6] = extra[2] or false
  out[k + 7] = score or false
end

-- The last event id written, so a reader can start right after a lookup ("0-0" when none).
local function last_event_id()
  local last = redis.call('XREVRANGE', events, '+', '-', 'COUNT', 1)[1]
  return last and last[1] or '0-0'
end

--[[ GETJOB (internal) -----------------------------------------------------------------------------------
KEYS: all seventeen declared.
ARGV: GETJOB <current_time> <job_id>
Reply: { last_event_id } when no record has that id, else { last_event_id, id, state, record, job_state,
  progress, return_value, score }: state is waiting, delayed (pushed with a delay, or waiting for a retry),
  active, completed or dead; record "<priority>:<policy>@<created_ms>:<data>"; job_state
  "<attempts>:<token>:<last error>" or nil before the first lease (token "~<token>" once the lease ended;
  its lease began at token / 1000 ms); progress and return_value as stored, or nil; score: the lease
  deadline (active), ready time (delayed), finish time (completed, dead), nil (waiting). O(log N).
]]
if op == 'GETJOB' then
  local id = id_arg('job_id', ARGV[3])
  local out = { last_event_id() }
  if redis.call('HEXISTS', jobs, id) == 1 then append_info(out, id) end
  return out
end

-- Appends the jobs of a sorted set's page (ids and scores, as ZRANGE WITHSCORES gives them).
local function append_page(out, list, name)
  for i = 1, #list, 2 do append_info(out, list[i], name, list[i + 1]) end
  return #list / 2
end

-- Appends the jobs of a waiting list after its first `skip`, at most `left`: returns the skip and left
-- that remain for the lists after it.
local function append_list(out, list, skip, left)
  local len = redis.call('LLEN', list)
  if skip >= len then return skip - len, left end
  local ids = redis.call('LRANGE', list, skip, skip + left - 1)
  for _, id in ipairs(ids) do append_info(out, id, 'waiting', false) end
  return 0, left - #ids
end

--[[ GETJOBS (internal) ----------------------------------------------------------------------------------
KEYS: all seventeen declared and the priority and group lists.
ARGV: GETJOBS <current_time> <state> <offset> <limit> [after_group]
Reply: seven items per job as GETJOB's, for up to limit (1..1000) jobs after the first offset, in the
  order of the state: waiting: the ungrouped jobs in the order they will run (highest priority first,
  FIFO within one), then the jobs waiting in groups, group by group in the order of their names (bytewise;
  the groups are served round robin, so across groups this is not the order they run), FIFO within a
  group; delayed: jobs pushed with a delay by ready time, then jobs waiting for a retry by retry time;
  active by lease deadline; completed and dead newest first. O(log N + limit), plus for waiting one LLEN
  per priority in use and per group passed, at most 1000 groups per call: when the page is not full after
  1000 groups and more may follow, the reply ends with two more items, skip and group: call again with
  offset = skip, limit = what the page lacks and after_group = group (1 to 256 bytes), which skips the
  ungrouped jobs and the groups up to that one.
]]
if op == 'GETJOBS' then
  local name = ARGV[3]
  local offset = number('offset', ARGV[4], 0, 1e9, true)
  local limit = number('limit', ARGV[5], 1, MAX_BATCH, true)
  local after = ARGV[6]
  if after ~= nil and (name ~= 'waiting' or #after == 0 or #after > MAX_GROUP) then
    bad('after_group must be a string of 1 to ' .. MAX_GROUP .. ' bytes, and only for waiting')
  end
  local out = {}
  if name == 'waiting' then
    local skip, left = offset, limit
    if after == nil then
      for _, p in ipairs(redis.call('ZRANGE', waiting, 0, -1)) do
        if left == 0 then break end
        skip, left = append_list(out, waiting .. ':w:' .. p, skip, left)
      end
    end
    if left > 0 then
      local names = redis.call('ZRANGEBYLEX', gwait, after and '(' .. after or '-', '+', 'LIMIT', 0, STEP)
      for _, g in ipairs(names) do
        if left == 0 then break end
        skip, left = append_list(out, waiting .. ':g:' .. g, skip, left)
      end
      if left > 0 and #names == STEP then
        out[#out + 1] = skip
        out[#out + 1] = names[STEP]
      end
    end
  elseif name == 'delayed' then
    local first = redis.call('ZCARD', delayed)
    local got = 0
    if offset < first then
      got = append_page(out, redis.call('ZRANGE', delayed, offset, offset + limit - 1, 'WITHSCORES'), 'delayed')
    end
    if got < limit then
      local from = math.max(0, offset - first)
      append_page(out, redis.call('ZRANGE', failed, from, from + limit - got - 1, 'WITHSCORES'), 'delayed')
    end
  elseif name == 'active' then
    append_page(out, redis.call('ZRANGE', processing, offset, offset + limit - 1, 'WITHSCORES'), 'active')
  elseif name == 'completed' or name == 'dead' then
    local set = name == 'completed' and completed or dead
    append_page(out, redis.call('ZREVRANGE', set, offset, offset + limit - 1, 'WITHSCORES'), name)
  else
    bad('state must be waiting, delayed, active, completed or dead, got ' .. tostring(name))
  end
  return out
end

--[[ LOGS (internal) -------------------------------------------------------------------------------------
KEYS: 12 info.
ARGV: LOGS <current_time> <job_id> <offset> <limit>
Reply: { total, line, ... }: how many lines were ever logged, then up to limit (1..1000) of the kept ones
  (the last 100), oldest first, after the first offset of those.
]]
if op == 'LOGS' then
  local id = id_arg('job_id', ARGV[3])
  local offset = number('offset', ARGV[4], 0, 1e9, true)
  local limit = number('limit', ARGV[5], 1, MAX_BATCH, true)
  local total = tonumber(redis.call('HGET', info, 'l:' .. id)) or 0
  local from = total - math.min(total, LOG_MAX) + offset
  local to = math.min(total, from + limit) - 1
  local fields = {}
  for k = from, to do fields[#fields + 1] = 'l:' .. id .. ':' .. (k % LOG_MAX) end
  local out = { total }
  if #fields > 0 then
    for _, line in ipairs(redis.call('HMGET', info, unpack(fields))) do out[#out + 1] = line or '' end
  end
  return out
end

--[[ LOG (internal) --------------------------------------------------------------------------------------
KEYS: 6 jobs, 12 info.
ARGV: LOG <current_time> <job_id> <line>
Reply: the job's number of lines logged so far, this one included; 0 when no record has that id (nothing
  written). A line is at most 1024 bytes; a job keeps its last 100 lines, deleted with its record.
]]
if op == 'LOG' then
  local id = id_arg('job_id', ARGV[3])
  local line = ARGV[4]
  if line == nil or #line > MAX_LOG_LINE then bad('line must be at most ' .. MAX_LOG_LINE .. ' bytes') end
  if #ARGV ~= 4 then bad('LOG takes 4 arguments, got ' .. #ARGV) end
  if redis.call('HEXISTS', jobs, id) == 0 then return 0 end
  local total = redis.call('HINCRBY', info, 'l:' .. id, 1)
  redis.call('HSET', info, 'l:' .. id .. ':' .. ((total - 1) % LOG_MAX), line)
  return total
end

--[[ PROGRESS (internal) ---------------------------------------------------------------------------------
KEYS: 2 processing, 7 state, 11 events, 12 info.
ARGV: PROGRESS <current_time> <job_id> <lease_token> <progress>
  progress: a number in [0, 100], or JSON text of an object of at most 1024 bytes.
Reply: 1 when stored (the job is leased under that token; event progress), else 0.
]]
if op == 'PROGRESS' then
  local id = id_arg('job_id', ARGV[3])
  local token = id_arg('lease_token', ARGV[4])
  local progress = ARGV[5]
  if progress == nil or #progress > MAX_PROGRESS then bad('progress must be at most ' .. MAX_PROGRESS .. ' bytes') end
  if byte(progress, 1) == 123 then
    local ok, value = pcall(cjson.decode, progress)
    if not ok or type(value) ~= 'table' then bad('progress must be a number in [0, 100] or a JSON object') end
  else
    number('progress', progress, 0, 100, false)
  end
  if not leased(id, token) then return 0 end
  redis.call('HSET', info, 'p:' .. id, progress)
  emit('progress', id)
  emit_field('p', progress)
  flush_events()
  return 1
end

--[[ REMOVE (internal) -----------------------------------------------------------------------------------
KEYS: all seventeen declared and the list of the job's priority or group.
ARGV: REMOVE <current_time> <job_id> <force>
Reply: 1 when removed (record, state, progress, return value and logs; event removed), 0 when no job has
  that id, or it is active and force is not 1 (its worker would lose its lease). A waiting job is taken
  out of its priority's list with LREM: O(jobs waiting at that priority); other states O(log N).
]]
if op == 'REMOVE' then
  load_groups()
  local id = id_arg('job_id', ARGV[3])
  local force = ARGV[4]
  if force ~= '0' and force ~= '1' then bad('force must be 0 or 1, got ' .. tostring(force)) end
  local rec = redis.call('HGET', jobs, id)
  local name, _, set = where(id)
  if name == 'active' and force ~= '1' then return 0 end
  local g = group_of(id)
  if set then
    redis.call('ZREM', set, id)
    if set == processing then release_groups({ id }) end
  elseif g then
    if redis.call('LREM', waiting .. ':g:' .. g, 1, id) > 0 then
      gwaiting_delta = -1
      place_group(g, false)
      save_count()
    end
  elseif rec then
    local priority = parse_record(rec)
    local list = waiting .. ':w:' .. priority
    if redis.call('LREM', list, 1, id) > 0 then
      waiting_delta = -1
      if redis.call('LLEN', list) == 0 then redis.call('ZREM', waiting, priority) end
      save_count()
    end
  else
    return 0
  end
  forget(id)
  emit('removed', id)
  flush_events()
  return 1
end

--[[ PROMOTE (internal) ----------------------------------------------------------------------------------
KEYS: all seventeen declared and the list of the job's priority or group.
ARGV: PROMOTE <current_time> <job_id>
Reply: 1 when the job was delayed (or waiting for a retry) and now waits to run (event waiting; its
  record lost: dead), else 0.
]]
if op == 'PROMOTE' then
  local id = id_arg('job_id', ARGV[3])
  if redis.call('ZREM', delayed, id) == 0 and redis.call('ZREM', failed, id) == 0 then return 0 end
  local priority = parse_record(redis.call('HGET', jobs, id))
  if priority then
    enqueue(id, priority)
    emit('waiting', id)
    save_count()
    wake_worker()
  else
    lost_record(id)
    trim_dead()
  end
  flush_events()
  return 1
end

--[[ RETRYJOB (internal) ---------------------------------------------------------------------------------
KEYS: all seventeen declared and the list of the job's priority or group.
ARGV: RETRYJOB <current_time> <job_id>
Reply: 1 when the dead job went back to waiting with its attempts reset (event waiting), else 0 (not dead,
  or its record is lost).
]]
if op == 'RETRYJOB' then
  local id = id_arg('job_id', ARGV[3])
  if not redis.call('ZSCORE', dead, id) then return 0 end
  local priority = parse_record(redis.call('HGET', jobs, id))
  if not priority then return 0 end
  redis.call('ZREM', dead, id)
  redis.call('HDEL', state, id)
  enqueue(id, priority)
  emit('waiting', id)
  save_count()
  wake_worker()
  flush_events()
  return 1
end

--[[ PAUSE (internal) ------------------------------------------------------------------------------------
KEYS: 1 queue, 8 meta, 9 wake, 11 events.
ARGV: PAUSE <current_time> <paused>
Reply: 1 when the call changed the state (event paused or resumed), else 0. While paused, POP and ACK
  lease nothing (completions still count) and answer wait_ms -1; RESUME wakes a blocked worker.
]]
if op == 'PAUSE' then
  local want = ARGV[3]
  if want ~= '0' and want ~= '1' then bad('paused must be 0 or 1, got ' .. tostring(want)) end
  local was = redis.call('HEXISTS', meta, 'paused')
  if want == '1' and was == 0 then
    redis.call('HSET', meta, 'paused', '1')
    emit('paused', '')
  elseif want == '0' and was == 1 then
    redis.call('HDEL', meta, 'paused')
    emit('resumed', '')
    wake_worker_if_waiting()
  else
    return 0
  end
  flush_events()
  return 1
end

-- Deletes what is kept of `ids` (taken out of their places already), each with a removed event.
local function removed(ids)
  forget_all(ids)
  for _, id in ipairs(ids) do emit('removed', id) end
  return #ids
end

--[[ DRAIN (internal) ------------------------------------------------------------------------------------
KEYS: all seventeen declared and the priority and group lists.
ARGV: DRAIN <current_time> <delayed> <limit>
Reply: { removed, more }: removes up to limit (1..1000) waiting jobs (ungrouped first, then from the groups
  in `gwait`, first by name), and with delayed = 1 then delayed jobs and jobs waiting for a retry (each
  with an event removed); more is 1 when limit were removed or groups are left to visit (call again),
  else 0. O((limit + 1) log N): at most limit + 1 groups are visited per call (each gives up jobs or, its
  list lost, leaves `gwait`).
]]
if op == 'DRAIN' then
  load_groups()
  local with_delayed = ARGV[3]
  if with_delayed ~= '0' and with_delayed ~= '1' then bad('delayed must be 0 or 1, got ' .. tostring(with_delayed)) end
  local limit = number('limit', ARGV[4], 1, MAX_BATCH, true)
  local ids = pop_waiting_ids(limit)
  local n = removed(ids)
  local visits = 0
  while n < limit and visits <= limit do
    local g = redis.call('ZRANGE', gwait, 0, 0)[1]
    if not g then break end
    visits = visits + 1
    local got = redis.call('LPOP', waiting .. ':g:' .. g, limit - n) or {}
    gwaiting_delta = gwaiting_delta - #got
    n = n + removed(got)
    place_group(g, false)
  end
  local more = n == limit or (visits > limit and redis.call('ZCARD', gwait) > 0)
  if with_delayed == '1' then
    for _, set in ipairs({ delayed, failed }) do
      if n < limit then
        local more = redis.call('ZRANGE', set, 0, limit - n - 1)
        if #more > 0 then
          redis.call('ZREM', set, unpack(more))
          n = n + removed(more)
        end
      end
    end
  end
  save_count()
  flush_events()
  return { n, more and 1 or 0 }
end

--[[ CLEAN (internal) ------------------------------------------------------------------------------------
KEYS: all seventeen declared.
ARGV: CLEAN <current_time> <state> <older_than_ms> <limit>
Reply: how many jobs of state (completed or dead) that finished at least older_than_ms ago were removed,
  oldest first, at most limit (1..1000); each with an event removed.
]]
if op == 'CLEAN' then
  local name = ARGV[3]
  if name ~= 'completed' and name ~= 'dead' then bad('state must be completed or dead, got ' .. tostring(name)) end
  local older = number('older_than_ms', ARGV[4], 0, 1e13, true)
  local limit = number('limit', ARGV[5], 1, MAX_BATCH, true)
  local set = name == 'completed' and completed or dead
  local ids = redis.call('ZRANGEBYSCORE', set, '-inf', now - older, 'LIMIT', 0, limit)
  if #ids > 0 then redis.call('ZREM', set, unpack(ids)) end
  local n = removed(ids)
  flush_events()
  return n
end

--[[ OBLITERATE (internal) -------------------------------------------------------------------------------
KEYS: all seventeen declared and the priority and group lists.
ARGV: OBLITERATE <current_time> <force>
Reply: 1 when every key of the queue was deleted (UNLINK: O(1) per key here, the memory is freed in the
  background), 0 when jobs are active and force is not 1 (nothing deleted), 2 when it deleted a step of
  group lists: call again with the same force (each call checks for active jobs when force is not 1: a
  refusal after a first step keeps the jobs whose group lists went, and the audit of RECOVERY puts them
  back in their groups).
  A step deletes the lists of up to 1000 groups of each of `gwait`, `gready` and `glimited`, and once
  those are empty scans `groups` for the rest (HSCAN COUNT 1000 per call, cursor in meta `obliterate`),
  so a call is O(1000) whatever the number of groups; the last call deletes the other keys and the 2001
  priority lists. Request memos expire by themselves (within the lease, and 60 s).
]]
if op == 'OBLITERATE' then
  local force = ARGV[3]
  if force ~= '0' and force ~= '1' then bad('force must be 0 or 1, got ' .. tostring(force)) end
  if force ~= '1' and redis.call('ZCARD', processing) > 0 then return 0 end
  local cursor = redis.call('HGET', meta, 'obliterate')
  local lists = {}
  for _, index in ipairs({ gwait, gready, glimited }) do
    local names = redis.call('ZRANGE', index, 0, STEP - 1)
    if #names > 0 then
      redis.call('ZREM', index, unpack(names))
      for _, g in ipairs(names) do lists[#lists + 1] = waiting .. ':g:' .. g end
    end
  end
  local finished = #lists == 0
  if finished then
    -- Groups no index names (lost): their jobs' leases or waits keep an "s:" field in `groups`.
    local reply = redis.call('HSCAN', groups, cursor or '0', 'MATCH', 's:*', 'COUNT', STEP)
    for i = 1, #reply[2], 2 do lists[#lists + 1] = waiting .. ':g:' .. sub(reply[2][i], 3) end
    cursor = reply[1]
    finished = cursor == '0'
  end
  for from = 1, #lists, STEP do redis.call('UNLINK', unpack(lists, from, math.min(#lists, from + STEP - 1))) end
  if not finished then
    redis.call('HSET', meta, 'obliterate', cursor or '0')
    return 2
  end
  redis.call('UNLINK', waiting, processing, failed, dead, delayed, jobs, state, meta, wake, completed, events, info, groups, gready, glimited,
    schedulers, gwait)
  lists = {}
  for p = -MAX_PRIORITY, MAX_PRIORITY do
    lists[#lists + 1] = waiting .. ':w:' .. p
    if #lists == 500 or p == MAX_PRIORITY then
      redis.call('UNLINK', unpack(lists))
      lists = {}
    end
  end
  return 1
end

local function group_arg(value)
  if type(value) ~= 'string' or #value == 0 or #value > MAX_GROUP then bad('group must be a string of 1 to ' .. MAX_GROUP .. ' bytes') end
  return value
end

--[[ GROUPOPTS (internal) --------------------------------------------------------------------------------
KEYS: all seventeen declared and the group's list.
ARGV: GROUPOPTS <current_time> <group> <concurrency> <rate_limit> <rate_window_ms>
  concurrency: 1..1000000 jobs of the group leased at once; rate_limit 0 (none) or 1..1000000 leases per
  rate_window_ms (1 ms to a year), spread evenly as the queue-wide one (see LIMITS).
Reply: 1. Stored in `groups` ("o:"..group) until changed: set options are kept while the group is idle.
]]
if op == 'GROUPOPTS' then
  load_groups()
  local g = group_arg(ARGV[3])
  local conc = number('concurrency', ARGV[4], 1, MAX_RATE, true)
  local limit = number('rate_limit', ARGV[5], 0, MAX_RATE, true)
  local window = number('rate_window_ms', ARGV[6], limit > 0 and 1 or 0, MAX_DELAY_S * 1000, true)
  if #ARGV ~= 6 then bad('GROUPOPTS takes 6 arguments, got ' .. #ARGV) end
  redis.call('HSET', groups, 'o:' .. g, string.format('%d,%d,%d', conc, limit, window))
  place_group(g, false)
  wake_worker_if_waiting()
  return 1
end

--[[ GROUPPAUSE (internal) -------------------------------------------------------------------------------
KEYS: all seventeen declared and the group's list.
ARGV: GROUPPAUSE <current_time> <group> <paused>
Reply: 1 when the call changed the group's state, else 0. A paused group's jobs wait (pushes still
  queue) and none is leased until it is resumed; its leased jobs finish. No event (the queue's paused and
  resumed events are the whole queue's).
]]
if op == 'GROUPPAUSE' then
  load_groups()
  local g = group_arg(ARGV[3])
  local want = ARGV[4]
  if want ~= '0' and want ~= '1' then bad('paused must be 0 or 1, got ' .. tostring(want)) end
  local changed
  if want == '1' then
    changed = redis.call('HSETNX', groups, 'p:' .. g, '1')
  else
    changed = redis.call('HDEL', groups, 'p:' .. g)
  end
  if changed == 0 then return 0 end
  place_group(g, false)
  wake_worker_if_waiting()
  return 1
end

-- SCHEDULERS: a scheduler is a field of `schedulers`: id -> MessagePack of next_run_ms, group ('' for
-- none), spec (the caller's text for the repeat; the calendar lives in TypeScript), head (the job's
-- record head "<priority>:<policy>") and data. Its pending job, due at next_run_ms,
-- has the id "repeat:<scheduler id>:<next_run_ms>", so a tick's job is made once however many callers
-- ask. Scheduler ids are 1 to 256 bytes.
local MAX_SCHEDULER_ID = 256

local function sched_id(value)
  if type(value) ~= 'string' or #value == 0 or #value > MAX_SCHEDULER_ID then
    bad('scheduler id must be a string of 1 to ' .. MAX_SCHEDULER_ID .. ' bytes')
  end
  return value
end

-- A scheduler's record as its parts: next run (ms), group ('' for none), spec, head, data; nil when there
-- is none or it does not decode (a field overwritten by hand counts as absent).
local function decode_scheduler(rec)
  if not rec then return nil end
  local ok, next_run, group, spec, head, data = pcall(cmsgpack.unpack, rec)
  if not ok or type(next_run) ~= 'number' or type(data) ~= 'string' then return nil end
  return next_run, group, spec, head, data
end

local function read_scheduler(id)
  return decode_scheduler(redis.call('HGET', schedulers, id))
end

local function write_scheduler(id, next_run, group, spec, head, data)
  redis.call('HSET', schedulers, id, cmsgpack.pack(next_run, group, spec, head, data))
end

-- Makes the job of a scheduler's tick at `run_ms` (delayed until then; waiting when due); nothing when a
-- job with its id exists.
local function schedule_job(id, run_ms, group, head, data)
  local job = 'repeat:' .. id .. ':' .. string.format('%d', run_ms)
  local priority = tonumber(sub(head, 1, find(head, ':', 1, true) - 1))
  local rec = head .. '@' .. string.format('%d', now) .. ':' .. data
  push_all(1, { job }, { rec }, { priority }, { math.max(0, run_ms - now) }, { group ~= '' and group })
end

-- Removes a scheduler's pending job while it is still delayed (event removed).
local function unschedule_job(id, run_ms)
  local job = 'repeat:' .. id .. ':' .. string.format('%d', run_ms)
  if redis.call('ZREM', delayed, job) == 1 then
    forget(job)
    emit('removed', job)
  end
end

-- A repeat rule as the API writes it: JSON { "everyMs": 1..1 year } or { "cron": 5 to 7 fields or a
-- nickname such as @daily, "tz"?: a zone name }. Only its shape is checked here (the calendar, and so the pattern's values and the zone's
-- existence, are the API's to check).
local function check_spec(spec)
  if type(spec) ~= 'string' or #spec == 0 or #spec > 4096 then bad('spec must be 1 to 4096 bytes') end
  local ok, rule = pcall(cjson.decode, spec)
  if not ok or type(rule) ~= 'table' then bad('spec must be a JSON object, got ' .. spec) end
  if rule.everyMs ~= nil then
    number('spec everyMs', rule.everyMs, 1, MAX_DELAY_S * 1000, true)
    if rule.cron ~= nil or rule.tz ~= nil then bad('spec takes everyMs, or cron and tz') end
    return spec
  end
  local cron = rule.cron
  local field = '[%w%*/,%-%?#]+'
  if type(cron) ~= 'string' or not (string.match(cron, '^@%a+$')
      or string.match(cron, '^%s*' .. field .. string.rep('%s+' .. field, 4) .. '%s*$')
      or string.match(cron, '^%s*' .. field .. string.rep('%s+' .. field, 5) .. '%s*$')
      or string.match(cron, '^%s*' .. field .. string.rep('%s+' .. field, 6) .. '%s*$')) then
    bad('spec cron must be a nickname (@daily) or have 5 to 7 fields, got ' .. tostring(cron))
  end
  if rule.tz ~= nil and (type(rule.tz) ~= 'string' or not string.match(rule.tz, '^[%w_%+%-/]+$')) then
    bad('spec tz must be a time zone name, got ' .. tostring(rule.tz))
  end
  return spec
end

--[[ SCHEDULE (internal) ---------------------------------------------------------------------------------
KEYS: all seventeen declared and the list of the job's group.
ARGV: SCHEDULE <current_time> <id> <next_run_ms> <spec> <priority> <max_retries> <job_data> [group]
  spec: the repeat rule, JSON (1 to 4096 bytes; see check_spec: its shape only); next_run_ms: its next
  occurrence (0..1e13); priority, max_retries, job_data as PUSH's; group as PUSHN's.
Reply: { changed, next_run_ms }: an unchanged scheduler (same spec and job) is left as it is: { 0, its
  next run }; a new or changed one is stored, its pending job (if still delayed) removed and the job of
  next_run_ms made: { 1, next_run_ms }. So any number of callers may upsert the same one at once.
]]
if op == 'SCHEDULE' then
  local id = sched_id(ARGV[3])
  local next_run = number('next_run_ms', ARGV[4], 0, 1e13, true)
  local spec = check_spec(ARGV[5])
  local priority = number('priority', ARGV[6], -MAX_PRIORITY, MAX_PRIORITY, true) + 0
  local head = priority .. ':' .. check_policy(ARGV[7])
  local data = check_data(ARGV[8])
  local group = ARGV[9] or ''
  if ARGV[9] ~= nil and (#group == 0 or #group > MAX_GROUP) then bad('group must be a string of 1 to ' .. MAX_GROUP .. ' bytes') end
  if #ARGV > 9 then bad('SCHEDULE takes at most 9 arguments, got ' .. #ARGV) end
  local was, was_group, was_spec, was_head, was_data = read_scheduler(id)
  if was and was_group == group and was_spec == spec and was_head == head and was_data == data then return { 0, was } end
  if was then unschedule_job(id, was) end
  write_scheduler(id, next_run, group, spec, head, data)
  schedule_job(id, next_run, group, head, data)
  pushed()
  return { 1, next_run }
end

--[[ SCHEDNEXT (internal) --------------------------------------------------------------------------------
KEYS: all seventeen declared and the list of the job's group.
ARGV: SCHEDNEXT <current_time> <id> <run_ms> <next_run_ms>
  run_ms: the tick whose job was leased; next_run_ms: the occurrence after it, or, when the one after that
  has passed too, the first after now (missed ticks make no job: one catch-up job, the late one, then
  the next future tick; the caller computes it, the script only stores it).
Reply: 1 when the scheduler was at run_ms and moved on to next_run_ms (its job made), else 0 (removed,
  changed, or moved on already: a repeat is harmless).
]]
if op == 'SCHEDNEXT' then
  local id = sched_id(ARGV[3])
  local run = number('run_ms', ARGV[4], 0, 1e13, true)
  local next_run = number('next_run_ms', ARGV[5], run + 1, 1e13, true)
  if #ARGV ~= 5 then bad('SCHEDNEXT takes 5 arguments, got ' .. #ARGV) end
  local was, group, spec, head, data = read_scheduler(id)
  if was ~= run then return 0 end
  write_scheduler(id, next_run, group, spec, head, data)
  schedule_job(id, next_run, group, head, data)
  pushed()
  return 1
end

--[[ SCHEDGET (internal) ---------------------------------------------------------------------------------
KEYS: 16 schedulers.
ARGV: SCHEDGET <current_time> <id>
Reply: { next_run_ms, group, spec, "<priority>:<policy>", data }, or {} when there is no such scheduler.
]]
if op == 'SCHEDGET' then
  local next_run, group, spec, head, data = read_scheduler(sched_id(ARGV[3]))
  if not next_run then return {} end
  return { next_run, group, spec, head, data }
end

--[[ SCHEDULERS (internal) -------------------------------------------------------------------------------
KEYS: 16 schedulers.
ARGV: SCHEDULERS <current_time> <cursor>
Reply: { next_cursor, id, next_run_ms, group, spec, "<priority>:<policy>", data, ... }: a page (HSCAN,
  about 1000) of the schedulers, six items each (group '' for none); next_cursor "0" when done.
]]
if op == 'SCHEDULERS' then
  local cursor = ARGV[3]
  if type(cursor) ~= 'string' or not string.match(cursor, '^%d+$') then bad('cursor must be a decimal integer, got ' .. tostring(cursor)) end
  local reply = redis.call('HSCAN', schedulers, cursor, 'COUNT', STEP)
  local out = { reply[1] }
  for i = 1, #reply[2], 2 do
    local next_run, group, spec, head, data = decode_scheduler(reply[2][i + 1])
    if next_run then
      local k = #out
      out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = reply[2][i], next_run, group, spec, head, data
    end
  end
  return out
end

--[[ UNSCHEDULE (internal) -------------------------------------------------------------------------------
KEYS: all seventeen declared.
ARGV: UNSCHEDULE <current_time> <id>
Reply: 1 when the scheduler existed: removed with its pending job while that is still delayed (event
  removed); a job already due or running finishes, and makes no next one. Else 0.
]]
if op == 'UNSCHEDULE' then
  local id = sched_id(ARGV[3])
  local was = read_scheduler(id)
  if not was then return 0 end
  redis.call('HDEL', schedulers, id)
  unschedule_job(id, was)
  flush_events()
  return 1
end

bad('unknown op ' .. tostring(op) .. '; expected PUSH, POP, COMPLETE, FAIL, STATS, PUSHN, ACK, EXTEND, RELEASE, '
  .. 'RETRYDEAD, DEAD, PAUSED, GETJOB, GETJOBS, LOGS, LOG, PROGRESS, REMOVE, PROMOTE, RETRYJOB, PAUSE, DRAIN, '
  .. 'CLEAN, OBLITERATE, GROUPOPTS, GROUPPAUSE, SCHEDULE, SCHEDNEXT, SCHEDGET, SCHEDULERS or UNSCHEDULE')
