-- hold: take every requested seat under one new hold, or none.
-- ARGV: 1 channel, 2 hold id, 3 user id, 4 ttl ms, 5 max live holds of the user, 6.. seat ids
-- Returns {"OK", version, expires_ms} | {"TAKEN", seat, ...} | {"LIMIT"} | {"LOAD"} | {"QCFG"}
--   | {"NOTADMITTED"} (the show's waiting room is on and this user has no live session)
-- Invariant: all-or-nothing; a booked or held seat is never granted; never blocks (no waits).
local loaded, q_cfg, room = read_meta('loaded', 'q_cfg', 'q_on')
if loaded ~= '1' then return {'LOAD'} end
if q_cfg ~= '1' then return {'QCFG'} end
local q_on = room == '1'
local now = now_ms()
expire_due(now)
local hold_id, user, ttl, max_holds = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if not admitted(user, now, q_on) then return {'NOTADMITTED'} end
if tonumber(redis.call('HGET', KEYS[4], user) or '0') >= max_holds then return {'LIMIT'} end
local taken = {'TAKEN'}
for i = 6, #ARGV do
  local s = ARGV[i]
  if redis.call('SISMEMBER', KEYS[5], s) == 1 or redis.call('HEXISTS', KEYS[1], s) == 1 then
    taken[#taken + 1] = s
  end
end
if #taken > 1 then return taken end
local seats = {}
for i = 6, #ARGV do seats[#seats + 1] = ARGV[i] end
local v, expires = grant(hold_id, user, ttl, seats, now, q_on)
return {'OK', v, expires}
