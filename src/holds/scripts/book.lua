-- book: seats were committed as booked in the database; mirror it. Consumes the hold if given.
-- ARGV: 1 channel, 2 hold id or "", 3.. seat ids
-- Returns {"OK", version}
-- Invariant: a booked seat is never held: any hold on these seats loses them (and its other
-- seats become available, announced in the same event).
local now = now_ms()
local room = read_meta('q_on')
expire_due(now)
redis.call('HINCRBY', KEYS[6], 'bookgen', '1')
local booking = {}
for i = 3, #ARGV do booking[ARGV[i]] = true end
local freed = {}
if ARGV[2] ~= '' then
  local owner = drop_hold(ARGV[2], freed)
  -- A checkout ends the buyer's waiting-room session: the slot goes to the next in line.
  if owner and room == '1' then
    redis.call('ZADD', KEYS[10], 'XX', 'LT', dec(now), owner)
  end
end
for i = 3, #ARGV do
  local other = redis.call('HGET', KEYS[1], ARGV[i])
  if other then drop_hold(other, freed) end
end
local parts = {}
for _, p in ipairs(freed) do
  local s = string.match(p, '^%[(%d+),')
  if not booking[s] then parts[#parts + 1] = p end
end
for i = 3, #ARGV do
  redis.call('SADD', KEYS[5], ARGV[i])
  mark(ARGV[i], '1')
  parts[#parts + 1] = '[' .. ARGV[i] .. ',"B"]'
end
local v, _, booked = publish(parts)
-- The booked set holds no more than these seats: it was just created and gets the show's
-- lifetime (a set that lived before kept its own, so no read and write on every booking).
if booked <= #ARGV - 2 then keep(5) end
return {'OK', v}
