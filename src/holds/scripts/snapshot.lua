-- snapshot: the show's live state at one version.
-- ARGV: 1 channel
-- Returns {"LOAD"} | {"OK", version, nbooked, booked..., seat, hold, user, seat, hold, user, ...}
if redis.call('HGET', KEYS[6], 'loaded') ~= '1' then return {'LOAD'} end
expire_due(now_ms())
local booked = redis.call('SMEMBERS', KEYS[5])
local out = {'OK', version(), tostring(#booked)}
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
