-- cairn: apply feature values to one entity, newest-wins per feature.
--
-- KEYS[1]  the entity's hash
-- ARGV[1]  the mapping generation the feature ids belong to (base 36)
-- ARGV[2]  the key's time to live in milliseconds; 0: no expiry
-- ARGV[3], ARGV[4], ...  pairs of feature id and field: 8 bytes of
--          observed-at (big-endian, sign bit flipped), then the value
--
-- A field replaces the stored one unless the stored one was observed
-- later; a stored field too short to hold an observed-at is replaced.
-- Field "0" holds the generation the entity was written under: an entity
-- of an older generation is deleted first (its ids mean nothing any more),
-- and one of a newer generation makes the script fail with CAIRNGEN and
-- change nothing. When anything was written, the expiry is raised to
-- ARGV[2] (or removed when ARGV[2] is 0).
--
-- Returns {written, skipped}: how many values were stored, and how many
-- were older than the stored ones.
local key, gen, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])

local mark = redis.call('HGET', key, '0')
if mark and mark ~= gen then
  local m = tonumber(mark, 36)
  if m and m > tonumber(gen, 36) then
    return redis.error_reply('CAIRNGEN entity ' .. key .. ' was written under mapping generation ' .. mark ..
      ', newer than ' .. gen)
  end
  redis.call('DEL', key)
end

-- before reports whether field a was observed before field b.
local function before(a, b)
  for i = 1, 8 do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return false
end

local written, skipped = 0, 0
-- Fields go to HMGET and HSET in chunks, as unpack is limited to a few
-- thousand values.
local chunk = 1000
local i = 3
while i <= #ARGV do
  local last = math.min(#ARGV, i + 2 * chunk - 1)
  local ids = {}
  for j = i, last, 2 do
    ids[#ids + 1] = ARGV[j]
  end
  local stored = redis.call('HMGET', key, unpack(ids))
  local set = {}
  for k = 1, #ids do
    local field = ARGV[i + 2 * k - 1]
    local old = stored[k]
    if old and #old > 8 and before(field, old) then
      skipped = skipped + 1
    else
      set[#set + 1] = ids[k]
      set[#set + 1] = field
      written = written + 1
    end
  end
  if #set > 0 then
    redis.call('HSET', key, unpack(set))
  end
  i = last + 1
end

if written > 0 then
  redis.call('HSET', key, '0', gen)
  if ttl > 0 then
    if redis.call('PTTL', key) < ttl then
      -- ARGV[2] as sent: a Lua number of 2^53 or so may be formatted
      -- with an exponent, which PEXPIRE refuses.
      redis.call('PEXPIRE', key, ARGV[2])
    end
  else
    redis.call('PERSIST', key)
  end
end
return {written, skipped}
