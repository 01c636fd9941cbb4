-- best: choose the best `count` free seats and hold them, in one step. The algorithm is
-- holds/best.rs's `choose`, over the plan catalogue/plan.rs encodes (KEYS[7]) and the
-- occupancy string (KEYS[8]); tests/it/best.rs holds both stores to the same answers.
-- ARGV: 1 channel, 2 hold id, 3 user id, 4 ttl ms, 5 max live holds of the user, 6 count,
--       7 together required (1|0), 8 wheelchair spaces, 9 category mask ('' = every category;
--       else one byte per category index, '1' = allowed)
-- Returns {"OK", version, expires_ms, side by side (1|0), seat, ...} | {"NONE"} | {"LIMIT"}
--       | {"LOAD"} (booked cache missing) | {"PLAN"} (plan missing) | {"QCFG"} (waiting-room
--       settings missing) | {"NOTADMITTED"} (the waiting room is on, no live session)
-- Invariant: as hold.lua — all or nothing, never a held or booked seat, never blocks.
local loaded, q_cfg, room = read_meta('loaded', 'q_cfg', 'q_on')
if loaded ~= '1' then return {'LOAD'} end
if q_cfg ~= '1' then return {'QCFG'} end
local q_on = room == '1'
local n, wc = tonumber(ARGV[6]), tonumber(ARGV[8])
-- Windows with a wheelchair space or companion seat are only for requests that want one.
local list = wc > 0 and 'w' or 'p'
local plan = redis.call('HMGET', KEYS[7], 'attr', 'cat', 'rank', list .. n)
local attr, cat, rank, wins = plan[1], plan[2], plan[3], plan[4]
if not (attr and wins) or redis.call('EXISTS', KEYS[8]) == 0 then return {'PLAN'} end
local now = now_ms()
expire_due(now)
local hold_id, user, ttl, max_holds = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if not admitted(user, now, q_on) then return {'NOTADMITTED'} end
if tonumber(redis.call('HGET', KEYS[4], user) or '0') >= max_holds then return {'LIMIT'} end
local together, mask = ARGV[7] == '1', ARGV[9]
local occ = redis.call('GET', KEYS[8]) -- read after the expiry above
local byte, band, len = string.byte, bit.band, #occ
local LEFT, WHEELCHAIR, SPECIAL = 1, 2, 6 -- SPECIAL: wheelchair space or companion seat

-- Positions are 0-based, as in the plan.
local function free(p) return byte(occ, p + 1) == 48 end
local function joins_left(p) return p < len and band(byte(attr, p + 1), LEFT) ~= 0 end
local function eligible(p)
  if not free(p) then return false end
  if mask ~= '' and byte(mask, byte(cat, p + 1) + 1) ~= 49 then return false end
  return wc > 0 or band(byte(attr, p + 1), SPECIAL) == 0
end
local find = string.find
-- No seat of the window [s, s + m) is taken: one search in C (no string is built).
local function untaken_window(s, m)
  local t = find(occ, '1', s + 1, true)
  return not t or t > s + m
end
-- Every seat fits: its number of wheelchair spaces; nil otherwise.
local function fitting(s, m)
  if not untaken_window(s, m) then return nil end
  local w = 0
  for p = s, s + m - 1 do
    if not eligible(p) then return nil end
    if band(byte(attr, p + 1), WHEELCHAIR) ~= 0 then w = w + 1 end
  end
  return w
end
local function joined_free(p) return joins_left(p) and free(p - 1) end
local function orphans(s, m)
  if joined_free(s) and not (s >= 2 and joined_free(s - 1)) then return true end
  local q = s + m
  return q < len and joins_left(q) and free(q) and not (q + 1 < len and joins_left(q + 1) and free(q + 1))
end
local function u16(str, i) return byte(str, 2 * i - 1) * 256 + byte(str, 2 * i) end

-- Skip hint: windows before index hint[list..n] of the list have a taken seat (kept by this
-- script, cleared by every script that frees a seat: see `mark` in common.lua).
local hint_field = 'h' .. list .. n
local first = tonumber(redis.call('HGET', KEYS[6], hint_field) or '1')
local untaken
local picked, side = {}, '1'
local chosen, fallback
for i = first, #wins / 2 do
  local hi, lo = byte(wins, 2 * i - 1, 2 * i)
  local s = hi * 256 + lo
  local t = find(occ, '1', s + 1, true)
  if not t or t > s + n then
    untaken = untaken or i
    -- A free window of the plain list fits any request without categories or wheelchair
    -- spaces as it is; otherwise check each seat.
    if (mask == '' and wc == 0) or fitting(s, n) == wc then
      if not orphans(s, n) then chosen = s break end
      fallback = fallback or s
    end
  end
end
untaken = untaken or (#wins / 2 + 1)
if untaken > first then redis.call('HSET', KEYS[6], hint_field, untaken) end
chosen = chosen or fallback
if chosen then
  for p = chosen, chosen + n - 1 do picked[#picked + 1] = p end
elseif not together and n > 1 then
  side = '0'
  local rows, rowof = unpack(redis.call('HMGET', KEYS[7], 'rows', 'row'))
  local function best_in_row(r, m, want)
    if r < 0 or 4 * r + 4 > #rows then return nil end
    local a, e = u16(rows, 2 * r + 1), u16(rows, 2 * r + 2)
    local best, best_score
    for s = a, e - m do
      local joined = true
      for p = s + 1, s + m - 1 do
        if not joins_left(p) then joined = false break end
      end
      if joined and fitting(s, m) == want then
        local score = 0
        for p = s, s + m - 1 do score = score + u16(rank, p + 1) end
        if not best_score or score < best_score then best, best_score = s, score end
      end
    end
    return best, best_score
  end
  for k = n - 1, math.ceil(n / 2), -1 do
    local wk = redis.call('HGET', KEYS[7], list .. k)
    local seen = 0
    for i = 1, #wk / 2 do
      local s = u16(wk, i)
      local a = fitting(s, k)
      if a and a <= wc then
        seen = seen + 1
        local r = byte(rowof, s + 1)
        local f, fs = best_in_row(r - 1, n - k, wc - a)
        local b, bs = best_in_row(r + 1, n - k, wc - a)
        local partner = f
        if b and (not f or bs < fs) then partner = b end
        if partner then
          for p = s, s + k - 1 do picked[#picked + 1] = p end
          for p = partner, partner + n - k - 1 do picked[#picked + 1] = p end
          table.sort(picked)
          break
        end
        if seen >= 32 then break end
      end
    end
    if #picked > 0 then break end
  end
end
if #picked == 0 then return {'NONE'} end
local fields = {}
for i, p in ipairs(picked) do fields[i] = 'i' .. p end
local seats = redis.call('HMGET', KEYS[7], unpack(fields))
local v, expires = grant(hold_id, user, ttl, seats, now, q_on)
local out = {'OK', v, expires, side}
for _, s in ipairs(seats) do out[#out + 1] = s end
return out
