-- Shared prelude of every per-show script (prepended at build time; see holds/redis/mod.rs,
-- which also defines PUB: 'PUBLISH' on a single node, 'SPUBLISH' (sharded) on a cluster).
--
-- KEYS (all share the hash tag of the show's bucket, so one script touches one cluster slot):
--   1 seats    HASH  seat id -> hold id           (held seats)
--   2 holds    ZSET  hold id -> expiry (ms, Redis TIME)
--   3 holdrec  HASH  hold id -> "user|expires|created|seat,seat,..."
--   4 uholds   HASH  user id -> number of live holds on this show
--   5 booked   SET   booked seat ids (a cache of the database, the truth)
--   6 meta     HASH  ver (seat-map version), loaded (1 when `booked` mirrors the database),
--                    bookgen (bumped by every booked-set change, fences cache reloads),
--                    tag (Redis TIME in µs of the last map change or cache load: `tag:ver` names
--                    one map state even across a restart, a restore or a failover that lost
--                    writes, where `ver` alone could repeat with other contents)
--   7 plan     HASH  the layout as best-available reads it (catalogue/plan.rs `redis_fields`):
--                    n, attr, cat, row, rank, rows, w1..wN, s<seat id> -> position,
--                    i<position> -> seat id. Immutable once loaded (layouts never change).
--   8 occ      STRING one byte per position, '1' held or booked, '0' free; exists only while
--                    `plan` does and is kept in step by every change of `seats` and `booked`.
--   9 qwait    ZSET  waiting room: user id -> place (a random number below 2^52 for who joined
--                    before the opening, 2^52 + arrival number after): the order of admission
--  10 qadm     ZSET  waiting room: user id -> end of the user's admitted session (ms)
--  11 sweep    ZSET  the BUCKET's expiry index (shared by the shows of the bucket, same slot):
--                    hold id -> expiry (ms); the sweeper reads it so that a hold nobody touches
--                    is still expired and announced. Kept in step with `holds` by every script.
-- Lifetime: meta.exp (ms, set by load.lua: the show's start plus a grace period) is the moment
-- every key of the show (1-10) expires; a script that may create a key gives it that expiry
-- (`keep`), so all of a show's keys expire together and a late request finds none and reloads.
-- Waiting-room settings and state, in `meta`: q_cfg (1 once mirrored from the database), q_on,
-- q_open (ms), q_int (ms between two admissions), q_sess (session ms), q_max (most shoppers at
-- once, 0: no cap), q_next (when the next admission is due, ms), q_seq (arrivals after the
-- opening), q_done (admitted so far).
-- ARGV[1] is always the show's event channel.
--
-- Invariants: every hold in `holds` is in `sweep` with the same score; a seat is in `seats` at
-- most once; a held seat is never in `booked`; every map
-- change bumps `ver` by exactly 1 and publishes one event carrying it, inside the same script;
-- while `plan` exists, `occ` says '1' exactly for the seats in `seats` or `booked`.

-- Give keys (by index) the show's lifetime; nothing to do before the show is loaded.
local function keep(...)
  local e = redis.call('HGET', KEYS[6], 'exp')
  if not e then return end
  for _, i in ipairs({...}) do redis.call('PEXPIREAT', KEYS[i], e) end
end

local function keep_all()
  keep(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
end

-- Redis TIME, read once per script run: a script is one atomic step, so one instant serves all of
-- it (its expiry checks, its new expiries and the `tag` of its map changes).
local script_time = nil
local function time_now()
  if not script_time then script_time = redis.call('TIME') end
  return script_time
end

-- A whole number as a decimal string. Lua's own conversion (`tostring`, `..`) and Redis's
-- conversion of a number given to redis.call both go through C's floating-point printf, which was
-- a seventh of Redis's instructions in a hold (callgrind); '%d' takes the integer path. Every
-- number these scripts format is a whole number below 2^53 (milliseconds, counts, versions).
local function dec(n)
  return string.format('%d', n)
end

local function now_ms()
  local t = time_now()
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Redis TIME in microseconds, as a string: the `tag` of a map change.
local function stamp_now()
  local t = time_now()
  return t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
end

local function parse_rec(rec)
  local user, exp, created, seats = string.match(rec, '^(%d+)|(%d+)|(%d+)|(.*)$')
  local list = {}
  for s in string.gmatch(seats or '', '%d+') do list[#list + 1] = s end
  return user, tonumber(exp), tonumber(created), list
end

-- best.lua's skip hints (meta fields h<list><n>: windows before that index have a taken seat)
-- hold only while no seat is freed: a script that frees one clears them, once.
local hints_cleared = false
local function clear_hints()
  if hints_cleared then return end
  hints_cleared = true
  local fields = {}
  for n = 1, 10 do
    fields[#fields + 1] = 'hp' .. n
    fields[#fields + 1] = 'hw' .. n
  end
  redis.call('HDEL', KEYS[6], unpack(fields))
end

-- Keep the occupancy string in step (`taken` is '1' or '0'); nothing to do without a plan.
local function mark(seat, taken)
  local p = redis.call('HGET', KEYS[7], 's' .. seat)
  if p then
    redis.call('SETRANGE', KEYS[8], p, taken)
    if taken == '0' then clear_hints() end
  end
end

-- Build the occupancy string afresh from the holds and the booked cache.
local function rebuild_occ()
  clear_hints()
  local n = redis.call('HGET', KEYS[7], 'n')
  if not n then
    redis.call('DEL', KEYS[8])
    return
  end
  redis.call('SET', KEYS[8], string.rep('0', tonumber(n)))
  for _, s in ipairs(redis.call('HKEYS', KEYS[1])) do mark(s, '1') end
  for _, s in ipairs(redis.call('SMEMBERS', KEYS[5])) do mark(s, '1') end
end

-- The show's map version as stored (a string).
local function version()
  return tostring(redis.call('HGET', KEYS[6], 'ver') or '0')
end

-- The show's map version as this script last read or wrote it (`ver` in meta), or nil before
-- the first read: `read_meta` reads it beside the fields a script reads anyway, and every
-- publish after the first then writes the version without reading it again.
local known_ver = nil

-- The named meta fields (in order, as multiple values), read in one HMGET together with the
-- version `publish` needs.
local function read_meta(...)
  local m = redis.call('HMGET', KEYS[6], 'ver', ...)
  known_ver = tonumber(m[1] or '0')
  return unpack(m, 2)
end

-- Bump the version and publish one event with the held/booked counts after the change; returns
-- the new version (a string) and the numbers of held and booked seats after the change. `parts`
-- are JSON arrays [seat,"A"|"B"] or [seat,"H",user].
local function publish(parts)
  known_ver = (known_ver or tonumber(version())) + 1
  local v = dec(known_ver)
  redis.call('HSET', KEYS[6], 'ver', v, 'tag', stamp_now())
  local h, b = redis.call('HLEN', KEYS[1]), redis.call('SCARD', KEYS[5])
  redis.call(PUB, ARGV[1],
    '{"v":' .. v .. ',"h":' .. dec(h) .. ',"b":' .. dec(b) .. ',"c":[' .. table.concat(parts, ',') .. ']}')
  return v, h, b
end

-- Remove a hold; its seats (those still pointing at it) become available. Returns the owner,
-- or nil when the hold is not live. Appends ["seat","A"] parts to `parts`.
local function drop_hold(hold_id, parts)
  local rec = redis.call('HGET', KEYS[3], hold_id)
  redis.call('ZREM', KEYS[2], hold_id)
  redis.call('ZREM', KEYS[11], hold_id)
  if not rec then return nil end
  local user, _, _, seats = parse_rec(rec)
  for _, s in ipairs(seats) do
    if redis.call('HGET', KEYS[1], s) == hold_id then
      redis.call('HDEL', KEYS[1], s)
      mark(s, '0')
      parts[#parts + 1] = '[' .. s .. ',"A"]'
    end
  end
  redis.call('HDEL', KEYS[3], hold_id)
  if redis.call('HINCRBY', KEYS[4], user, '-1') <= 0 then redis.call('HDEL', KEYS[4], user) end
  return user
end

-- Expire every hold due at `now`: one version bump and one event per expired hold.
local function expire_due(now)
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', dec(now))
  for _, h in ipairs(due) do
    local parts = {}
    drop_hold(h, parts)
    if #parts > 0 then publish(parts) end
  end
  return #due
end

-- Whether the show's waiting room is on: `known` when the caller has read it already (nil: read
-- it now).
local function room_on(known)
  if known == nil then return redis.call('HGET', KEYS[6], 'q_on') == '1' end
  return known
end

-- Put `seats` (free, checked by the caller) under a new hold, without publishing: appends its
-- ["seat","H",user] parts to `parts`; returns the expiry (ms, a string). `q_on`: whether the
-- waiting room is on, when the caller has read it already.
local function take(hold_id, user, ttl, seats, now, q_on, parts)
  local expires = dec(now + ttl)
  for _, s in ipairs(seats) do
    redis.call('HSET', KEYS[1], s, hold_id)
    mark(s, '1')
    parts[#parts + 1] = '[' .. s .. ',"H",' .. user .. ']'
  end
  redis.call('ZADD', KEYS[2], expires, hold_id)
  redis.call('ZADD', KEYS[11], expires, hold_id)
  redis.call('HSET', KEYS[3], hold_id, user .. '|' .. expires .. '|' .. dec(now) .. '|' .. table.concat(seats, ','))
  redis.call('HINCRBY', KEYS[4], user, '1')
  -- An admitted session lasts at least as long as the hold taken in it (so it can be paid for).
  if room_on(q_on) then
    redis.call('ZADD', KEYS[10], 'XX', 'GT', expires, user)
  end
  return expires
end

-- Publish the holds just taken (`parts`, `taken`: how many seats they hold); returns the new
-- version (a string).
local function announce_taken(parts, taken)
  local v, held = publish(parts)
  -- The show's hold keys (1-4) are empty together and vanish together (every live hold has its
  -- seats in `seats`). When the only held seats are the ones just taken, they were created afresh
  -- and get the show's lifetime (four PEXPIREATs only then, and no read to find out).
  if held <= taken then keep(1, 2, 3, 4) end
  return v
end

-- Hold `seats` (free, checked by the caller) under a new hold and publish it; returns the new
-- version and the expiry (ms), both as strings.
local function grant(hold_id, user, ttl, seats, now, q_on)
  local parts = {}
  local expires = take(hold_id, user, ttl, seats, now, q_on, parts)
  return announce_taken(parts, #seats), expires
end

-- The waiting room lets this user shop now: it is off, or the user's session is live. `q_on`:
-- whether the room is on, when the caller has read it already.
local function admitted(user, now, q_on)
  if not room_on(q_on) then return true end
  local u = redis.call('ZSCORE', KEYS[10], user)
  return u ~= false and tonumber(u) > now
end

-- A user's place: {state, rank (0-based; -1 before the opening or when not waiting), session
-- end (ms, 0 if none), admitted so far, waiting}. States: NONE, WAITING, ADMITTED, EXPIRED.
local function ticket(user, now)
  local m = redis.call('HMGET', KEYS[6], 'q_open', 'q_done')
  local open, done = tonumber(m[1] or '0'), m[2] or '0'
  local waiting = tostring(redis.call('ZCARD', KEYS[9]))
  local rank = redis.call('ZRANK', KEYS[9], user)
  if not rank then
    local adm = redis.call('ZSCORE', KEYS[10], user)
    if not adm then return {'NONE', '-1', '0', done, waiting} end
    local state = tonumber(adm) > now and 'ADMITTED' or 'EXPIRED'
    return {state, '-1', adm, done, waiting}
  end
  if now < open then rank = -1 end
  return {'WAITING', tostring(rank), '0', done, waiting}
end
