-- qadmit: admit who is due from a show's waiting room, on a schedule kept in Redis: one
-- admission every q_int ms from the opening, whichever instance asks (any number of instances
-- call this a few times a second; the schedule, not the callers, sets the rate, so together they
-- admit exactly the configured rate and never one person twice). At most one second's worth in
-- one call (no burst after a pause); a backlog older than a second is dropped, not caught up.
-- With a cap on shoppers, a full house admits nobody and the schedule restarts when a slot frees.
-- ARGV: 1 channel
-- Returns {admitted now, admitted so far, waiting, shopping}
local m = redis.call('HMGET', KEYS[6], 'q_on', 'q_open', 'q_int', 'q_sess', 'q_max', 'q_next')
local function status(n)
  local now = now_ms()
  return {tostring(n), redis.call('HGET', KEYS[6], 'q_done') or '0',
    tostring(redis.call('ZCARD', KEYS[9])), tostring(redis.call('ZCOUNT', KEYS[10], '(' .. now, '+inf'))}
end
if m[1] ~= '1' then return status(0) end
local now = now_ms()
local open, int, sess, max = tonumber(m[2]), tonumber(m[3]), tonumber(m[4]), tonumber(m[5])
if now < open then return status(0) end
-- Sessions that ended an hour ago are forgotten (EXPIRED is shown until then).
redis.call('ZREMRANGEBYSCORE', KEYS[10], '-inf', now - 3600000)
local due_at = math.max(tonumber(m[6] or open), open)
if now < due_at then return status(0) end
local due = math.floor((now - due_at) / int) + 1
due = math.min(due, math.max(1, math.floor(1000 / int)))
if max > 0 then
  local shopping = redis.call('ZCOUNT', KEYS[10], '(' .. now, '+inf')
  if shopping >= max then
    redis.call('HSET', KEYS[6], 'q_next', now)
    return status(0)
  end
  due = math.min(due, max - shopping)
end
local popped = redis.call('ZPOPMIN', KEYS[9], due)
local n = #popped / 2
for i = 1, #popped, 2 do redis.call('ZADD', KEYS[10], now + sess, popped[i]) end
keep(10)
if n > 0 then redis.call('HINCRBY', KEYS[6], 'q_done', n) end
local next_at = due_at + due * int
if n < due or next_at < now - 1000 then next_at = now + int end
redis.call('HSET', KEYS[6], 'q_next', next_at)
return status(n)
