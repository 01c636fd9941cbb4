-- sweep_ack: settle sweep entries after `expire` ran. Single key (the global sweep index).
-- KEYS: 1 sweep ZSET  member "<show>:<hold>" -> expiry ms
-- ARGV: 1 cutoff ms the sweeper used, then pairs member, new expiry ms ("0": gone)
-- An entry is touched only if its score is still <= cutoff, so a concurrent re-registration
-- (a checkout extending the hold) is never lost.
local cutoff = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= cutoff then
    if ARGV[i + 1] == '0' then
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    end
  end
end
return 1
