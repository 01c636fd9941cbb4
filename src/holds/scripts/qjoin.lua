-- qjoin: take a place in a show's waiting room; one per user, joining again returns it. Before
-- the opening the place is the random number the server drew (never shown until the opening,
-- so the order is a shuffle no client can predict); after it, arrival order. A user whose
-- session lapsed (or ended with a checkout) joins again at the back (the ended session stays
-- in `qadm` until forgotten, so that the audit can tell every buyer was admitted).
-- ARGV: 1 channel, 2 user id, 3 a random integer below 2^52
-- Returns {"QCFG"} | {"OFF"} | the user's ticket (see `ticket` in common.lua)
local cfg = redis.call('HMGET', KEYS[6], 'q_cfg', 'q_on', 'q_open')
if cfg[1] ~= '1' then return {'QCFG'} end
if cfg[2] ~= '1' then return {'OFF'} end
local now, user = now_ms(), ARGV[2]
local adm = redis.call('ZSCORE', KEYS[10], user)
if adm and tonumber(adm) > now then return ticket(user, now) end
if redis.call('ZSCORE', KEYS[9], user) then return ticket(user, now) end
local place
if now < tonumber(cfg[3]) then
  place = ARGV[3]
else
  -- '%.0f': exact below 2^53 (tostring would round to 14 digits and tie later arrivals).
  place = string.format('%.0f', 4503599627370496 + redis.call('HINCRBY', KEYS[6], 'q_seq', 1))
end
redis.call('ZADD', KEYS[9], 'NX', place, user)
keep(9)
return ticket(user, now)
