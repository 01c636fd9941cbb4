-- load: fill the booked-seat cache from the database after Redis lost it (or on first use).
-- ARGV: 1 channel, 2 bookgen read before the database query, 3 the keys' expiry (ms since the
--       epoch: the show's start plus the grace, or a little later than now for a past show),
--       4.. booked seat ids
-- Returns {"OK"} | {"ALREADY"} | {"RETRY"} (a booking changed meanwhile: read the database again)
if redis.call('HGET', KEYS[6], 'loaded') == '1' then return {'ALREADY'} end
if tostring(redis.call('HGET', KEYS[6], 'bookgen') or '0') ~= ARGV[2] then return {'RETRY'} end
redis.call('DEL', KEYS[5])
for i = 4, #ARGV do redis.call('SADD', KEYS[5], ARGV[i]) end
-- Holds that survived on seats the database says are booked lose them.
for i = 4, #ARGV do
  local h = redis.call('HGET', KEYS[1], ARGV[i])
  if h then drop_hold(h, {}) end
end
rebuild_occ()
redis.call('HSET', KEYS[6], 'loaded', '1', 'tag', stamp_now(), 'exp', ARGV[3])
keep_all()
return {'OK'}
