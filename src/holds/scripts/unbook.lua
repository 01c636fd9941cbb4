-- unbook: a booking was cancelled in the database; its seats become available.
-- ARGV: 1 channel, 2.. seat ids
-- Returns {"OK", version}
local now = now_ms()
expire_due(now)
redis.call('HINCRBY', KEYS[6], 'bookgen', '1')
local parts = {}
for i = 2, #ARGV do
  redis.call('SREM', KEYS[5], ARGV[i])
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then
    mark(ARGV[i], '0')
    parts[#parts + 1] = '[' .. ARGV[i] .. ',"A"]'
  end
end
return {'OK', (publish(parts))}
