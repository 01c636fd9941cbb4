-- expire: called by the sweeper for holds it found due. Expires everything due, then tells
-- which of the named holds are still live (extended meanwhile) and until when.
-- ARGV: 1 channel, 2.. hold ids
-- Returns {hold, expires_ms, hold, expires_ms, ...} for the named holds still live
expire_due(now_ms())
local out = {}
for i = 2, #ARGV do
  local e = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if e then
    out[#out + 1] = ARGV[i]
    out[#out + 1] = tostring(e)
  end
end
return out
