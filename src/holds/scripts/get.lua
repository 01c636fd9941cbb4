-- get: read one hold if it is live.
-- ARGV: 1 channel, 2 hold id
-- Returns {"LIVE", user, expires_ms, created_ms, seat, ...} | {"NOTLIVE"}
local now = now_ms()
expire_due(now)
local rec = redis.call('HGET', KEYS[3], ARGV[2])
if not rec then return {'NOTLIVE'} end
local user, exp, created, seats = parse_rec(rec)
local out = {'LIVE', user, dec(exp), dec(created)}
for _, s in ipairs(seats) do out[#out + 1] = s end
return out
