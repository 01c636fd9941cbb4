-- counts: the show's held and booked counts and its stamp, without the map (a list of shows).
-- ARGV: 1 channel
-- Returns {"LOAD"} | {"OK", version, stamp, held, booked}
if redis.call('HGET', KEYS[6], 'loaded') ~= '1' then return {'LOAD'} end
expire_due(now_ms())
local m = redis.call('HMGET', KEYS[6], 'ver', 'tag')
local stamp = tostring(m[2] or '') .. ':' .. tostring(m[1] or '0')
return {'OK', version(), stamp, tostring(redis.call('HLEN', KEYS[1])), tostring(redis.call('SCARD', KEYS[5]))}
