-- book: seats were committed as booked in the database; mirror it, for one or more bookings (the
-- mirrors that reached this show's batch at the same moment, holds/redis/batch.rs), in order, in
-- one atomic step: one version bump and one event for all of them. Consumes each given hold.
-- ARGV: 1 channel, then per booking: hold id or "", number of seats n, n seat ids
-- Returns one reply per booking, in order: {"OK", version}
-- Invariant: a booked seat is never held: any hold on these seats loses them (and its other
-- seats become available, announced in the same event).
local now = now_ms()
local room = read_meta('q_on')
expire_due(now)
redis.call('HINCRBY', KEYS[6], 'bookgen', '1')
local booked, freed, replies = {}, {}, {}
local i = 2
while i <= #ARGV do
  local hold, first, last = ARGV[i], i + 2, i + 1 + tonumber(ARGV[i + 1])
  i = last + 1
  if hold ~= '' then
    local owner = drop_hold(hold, freed)
    -- A checkout ends the buyer's waiting-room session: the slot goes to the next in line.
    if owner and room == '1' then
      redis.call('ZADD', KEYS[10], 'XX', 'LT', dec(now), owner)
    end
  end
  for j = first, last do
    local other = redis.call('HGET', KEYS[1], ARGV[j])
    if other then drop_hold(other, freed) end
  end
  for j = first, last do
    redis.call('SADD', KEYS[5], ARGV[j])
    mark(ARGV[j], '1')
    booked[#booked + 1] = ARGV[j]
  end
  replies[#replies + 1] = {'OK', ''}
end
local is_booked = {}
for _, s in ipairs(booked) do is_booked[s] = true end
local parts = {}
for _, p in ipairs(freed) do
  local s = string.match(p, '^%[(%d+),')
  if not is_booked[s] then parts[#parts + 1] = p end
end
for _, s in ipairs(booked) do parts[#parts + 1] = '[' .. s .. ',"B"]' end
local v, _, nbooked = publish(parts)
-- The booked set holds no more than these seats: it was just created and gets the show's
-- lifetime (a set that lived before kept its own, so no read and write on every booking).
if nbooked <= #booked then keep(5) end
for _, r in ipairs(replies) do r[2] = v end
return replies
