-- qconfig: mirror a show's waiting-room settings from the database (on set, or when missing).
-- ARGV: 1 channel, 2 on (1|0), 3 opens ms, 4 ms between admissions, 5 session ms, 6 most shoppers
--       at once (0: no cap), 7 only if missing (1: a lazy load, which must not overwrite a newer set)
-- Returns {"OK"} | {"KEPT"}
if ARGV[7] == '1' and redis.call('HGET', KEYS[6], 'q_cfg') == '1' then return {'KEPT'} end
redis.call('HSET', KEYS[6], 'q_cfg', '1', 'q_on', ARGV[2], 'q_open', ARGV[3], 'q_int', ARGV[4],
  'q_sess', ARGV[5], 'q_max', ARGV[6])
keep(6)
return {'OK'}
