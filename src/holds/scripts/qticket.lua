-- qticket: a user's place in a show's waiting room.
-- ARGV: 1 channel, 2 user id
-- Returns {"QCFG"} | {"OFF"} | the user's ticket (see `ticket` in common.lua)
local cfg = redis.call('HMGET', KEYS[6], 'q_cfg', 'q_on')
if cfg[1] ~= '1' then return {'QCFG'} end
if cfg[2] ~= '1' then return {'OFF'} end
return ticket(ARGV[2], now_ms())
