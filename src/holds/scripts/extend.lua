-- extend: keep a live hold alive through a payment. Bounded: the new expiry is
-- min(now + window, created + cap), never earlier than the current one, so it cannot be renewed
-- for ever. No version bump: the map does not change.
-- ARGV: 1 channel, 2 hold id, 3 user id, 4 window ms, 5 cap ms (from creation)
-- Returns {"OK", expires_ms, created_ms, seat, ...} (the hold as kept) | {"NOTLIVE"}
--   | {"FORBIDDEN"} | {"NOTADMITTED"} (the waiting room is on and the user's session is over: a
--   hold taken in a session lengthens it to the hold's expiry, so this is a hold taken before the
--   queue was switched on)
local now = now_ms()
expire_due(now)
local rec = redis.call('HGET', KEYS[3], ARGV[2])
if not rec then return {'NOTLIVE'} end
local user, exp, created, seats = parse_rec(rec)
if user ~= ARGV[3] then return {'FORBIDDEN'} end
if not admitted(user, now) then return {'NOTADMITTED'} end
local target = math.min(now + tonumber(ARGV[4]), created + tonumber(ARGV[5]))
local longer = target > exp
if longer then exp = target end
local exp_s, created_s = dec(exp), dec(created)
if longer then
  redis.call('ZADD', KEYS[2], exp_s, ARGV[2])
  redis.call('ZADD', KEYS[11], exp_s, ARGV[2])
  redis.call('HSET', KEYS[3], ARGV[2], user .. '|' .. exp_s .. '|' .. created_s .. '|' .. table.concat(seats, ','))
end
local out = {'OK', exp_s, created_s}
for _, s in ipairs(seats) do out[#out + 1] = s end
return out
