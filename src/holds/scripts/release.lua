-- release: end a live hold at its owner's request; its seats become available.
-- ARGV: 1 channel, 2 hold id, 3 user id
-- Returns {"RELEASED", version} | {"NOTLIVE"} | {"FORBIDDEN"}
-- Invariant: compare-and-set on the hold id: only the owner, only while live.
local now = now_ms()
expire_due(now)
local rec = redis.call('HGET', KEYS[3], ARGV[2])
if not rec then return {'NOTLIVE'} end
local user = parse_rec(rec)
if user ~= ARGV[3] then return {'FORBIDDEN'} end
local parts = {}
drop_hold(ARGV[2], parts)
local v
if #parts > 0 then v = publish(parts) else v = version() end
return {'RELEASED', v}
