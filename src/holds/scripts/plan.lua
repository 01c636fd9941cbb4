-- plan: load a show's seat plan for best-available (once per show, or after Redis lost it) and
-- build the occupancy string from the live holds and the booked cache.
-- ARGV: 1 channel, 2.. field, value pairs of the plan hash (catalogue/plan.rs `redis_fields`)
-- Returns {"OK"} | {"LOAD"} (load the booked cache first)
if redis.call('HGET', KEYS[6], 'loaded') ~= '1' then return {'LOAD'} end
redis.call('DEL', KEYS[7])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[7], ARGV[i], ARGV[i + 1]) end
rebuild_occ()
keep(7, 8)
return {'OK'}
