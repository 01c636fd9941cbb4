-- expire: called by the sweeper for holds it found due in the bucket's sweep index. Expires
-- everything due on the show, then drops the named entries whose hold is gone (a hold that
-- was extended meanwhile keeps its entry, re-scored by extend).
-- ARGV: 1 channel, 2.. hold ids
-- Returns {number of stale entries dropped}
expire_due(now_ms())
local dropped = 0
for i = 2, #ARGV do
  if not redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    dropped = dropped + redis.call('ZREM', KEYS[11], ARGV[i])
  end
end
return {tostring(dropped)}
