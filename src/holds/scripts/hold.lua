-- hold: one or more new holds (the requests that reached this show's batch at the same moment,
-- holds/redis/batch.rs), each taking every seat it asks for, or none. They are decided one
-- after another, in order, exactly as separate calls would decide them (a seat taken by an
-- earlier hold of the batch is TAKEN for a later one; a user's holds count as they are granted),
-- but in one atomic step: one expiry pass, one version bump and one event for all the granted.
-- ARGV: 1 channel, then per hold: hold id, user id, ttl ms, max live holds of the user, number of
--       seats n, n seat ids
-- Returns one reply per hold, in order: {"OK", version, expires_ms} | {"TAKEN", seat, ...}
--   | {"LIMIT"} | {"NOTADMITTED"} (the show's waiting room is on and this user has no live
--   session); or, for every hold, {"LOAD"} (the booked cache is not loaded) or {"QCFG"}.
-- Invariant: all-or-nothing per hold; a booked or held seat is never granted; never blocks.
local function every(reply)
  local replies, i = {}, 2
  while i <= #ARGV do
    replies[#replies + 1] = reply
    i = i + 5 + tonumber(ARGV[i + 4])
  end
  return replies
end
local loaded, q_cfg, room = read_meta('loaded', 'q_cfg', 'q_on')
if loaded ~= '1' then return every({'LOAD'}) end
if q_cfg ~= '1' then return every({'QCFG'}) end
local q_on = room == '1'
local now = now_ms()
expire_due(now)
local replies, granted, parts, held = {}, {}, {}, 0
local i = 2
while i <= #ARGV do
  local hold_id, user, ttl, max_holds = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local first, last = i + 5, i + 4 + tonumber(ARGV[i + 4])
  i = last + 1
  local reply
  if not admitted(user, now, q_on) then
    reply = {'NOTADMITTED'}
  elseif tonumber(redis.call('HGET', KEYS[4], user) or '0') >= max_holds then
    reply = {'LIMIT'}
  else
    reply = {'TAKEN'}
    for j = first, last do
      local s = ARGV[j]
      if redis.call('SISMEMBER', KEYS[5], s) == 1 or redis.call('HEXISTS', KEYS[1], s) == 1 then
        reply[#reply + 1] = s
      end
    end
    if #reply == 1 then
      local seats = {}
      for j = first, last do seats[#seats + 1] = ARGV[j] end
      held = held + #seats
      -- The version is known once every hold of the batch is decided.
      reply = {'OK', '', take(hold_id, user, ttl, seats, now, q_on, parts)}
      granted[#granted + 1] = reply
    end
  end
  replies[#replies + 1] = reply
end
if #granted > 0 then
  local v = announce_taken(parts, held)
  for _, r in ipairs(granted) do r[2] = v end
end
return replies
