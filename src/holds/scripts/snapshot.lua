-- snapshot: the show's live state at one version.
-- ARGV: 1 channel, 2 the stamp (`tag:ver`) of a state the caller already has, or ''
-- Returns {"LOAD"} | {"SAME", stamp} (nothing changed since the caller's stamp) |
--         {"OK", version, stamp, nbooked, booked..., seat, hold, user, seat, hold, user, ...}
if redis.call('HGET', KEYS[6], 'loaded') ~= '1' then return {'LOAD'} end
expire_due(now_ms())
local m = redis.call('HMGET', KEYS[6], 'ver', 'tag')
local stamp = tostring(m[2] or '') .. ':' .. tostring(m[1] or '0')
if ARGV[2] == stamp then return {'SAME', stamp} end
local booked = redis.call('SMEMBERS', KEYS[5])
local out = {'OK', version(), stamp, tostring(#booked)}
for _, s in ipairs(booked) do out[#out + 1] = s end
local held = redis.call('HGETALL', KEYS[1])
local owners = {}
for i = 1, #held, 2 do
  local h = held[i + 1]
  if owners[h] == nil then
    local rec = redis.call('HGET', KEYS[3], h)
    owners[h] = rec and parse_rec(rec) or '0'
  end
  out[#out + 1] = held[i]
  out[#out + 1] = h
  out[#out + 1] = owners[h]
end
return out
