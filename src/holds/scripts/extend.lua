-- extend: keep live holds alive through their payments; one or more (the extensions that reached
-- this show's batch at the same moment, holds/redis/batch.rs), each decided exactly as a separate
-- call would decide it. Bounded: the new expiry is min(now + window, created + cap), never earlier
-- than the current one, so a hold cannot be renewed for ever. No version bump: the map does not
-- change.
-- ARGV: 1 channel, then per hold: hold id, user id, window ms, cap ms (from creation)
-- Returns one reply per hold, in order: {"OK", expires_ms, created_ms, seat, ...} (the hold as
--   kept) | {"NOTLIVE"} | {"FORBIDDEN"} | {"NOTADMITTED"} (the waiting room is on and the user's
--   session is over: a hold taken in a session lengthens it to the hold's expiry, so this is a
--   hold taken before the queue was switched on)
local now = now_ms()
expire_due(now)
local q_on -- whether the waiting room is on: read once, when a hold first needs it
local function extend(hold, who, window, cap)
  local rec = redis.call('HGET', KEYS[3], hold)
  if not rec then return {'NOTLIVE'} end
  local user, exp, created, seats = parse_rec(rec)
  if user ~= who then return {'FORBIDDEN'} end
  if q_on == nil then q_on = room_on() end
  if not admitted(user, now, q_on) then return {'NOTADMITTED'} end
  local target = math.min(now + window, created + cap)
  local longer = target > exp
  if longer then exp = target end
  local exp_s, created_s = dec(exp), dec(created)
  if longer then
    redis.call('ZADD', KEYS[2], exp_s, hold)
    redis.call('ZADD', KEYS[11], exp_s, hold)
    redis.call('HSET', KEYS[3], hold, user .. '|' .. exp_s .. '|' .. created_s .. '|' .. table.concat(seats, ','))
  end
  local out = {'OK', exp_s, created_s}
  for _, s in ipairs(seats) do out[#out + 1] = s end
  return out
end
local replies = {}
for i = 2, #ARGV, 4 do
  replies[#replies + 1] = extend(ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]))
end
return replies
