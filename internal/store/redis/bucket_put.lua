-- cairn: put one bucket of a windowed feature if its version is the one
-- expected.
--
-- KEYS[1]  the buckets hash of the entity's feature: field <start> holds
--          the state, field v<start> the version, field t<start> the token
--          of the put that wrote it
-- KEYS[2]  the expiry index: a sorted set of the starts, scored by their
--          expiry in seconds since the Unix epoch
-- ARGV[1]  the bucket's start, seconds since the Unix epoch (decimal)
-- ARGV[2]  the version expected: 0 for a bucket that must not exist
-- ARGV[3]  the bucket's expiry, seconds since the Unix epoch
-- ARGV[4]  the state
-- ARGV[5]  the put's token: random bytes, the same when the client sends
--          the put again after a lost answer
--
-- Buckets expired by the server's clock are deleted first; an expired
-- bucket counts as absent. If the stored version is not ARGV[2], nothing is
-- written and the script returns 0, or 1 if the bucket holds this put's
-- token at version ARGV[2] + 1: an earlier attempt of the same put was
-- applied and its answer lost. Otherwise it stores the state with
-- version ARGV[2] + 1, indexes its expiry, sets both keys to expire with
-- their latest bucket, and returns 1.
local hash, index = KEYS[1], KEYS[2]
local start, expect, expire = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = tonumber(redis.call('TIME')[1])

-- Trim the expired buckets (usually none, or the one that just expired).
local dead = redis.call('ZRANGEBYSCORE', index, '-inf', now)
if #dead > 0 then
  local chunk = 1000 -- 3 fields each; unpack is limited to about 8000 values
  for i = 1, #dead, chunk do
    local fields = {}
    for j = i, math.min(#dead, i + chunk - 1) do
      fields[#fields + 1] = dead[j]
      fields[#fields + 1] = 'v' .. dead[j]
      fields[#fields + 1] = 't' .. dead[j]
    end
    redis.call('HDEL', hash, unpack(fields))
  end
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
end

local version = 0
if redis.call('ZSCORE', index, start) then
  version = tonumber(redis.call('HGET', hash, 'v' .. start)) or 0
end
if version ~= expect then
  if version == expect + 1 and redis.call('HGET', hash, 't' .. start) == ARGV[5] then
    return 1
  end
  return 0
end
redis.call('HSET', hash, start, ARGV[4], 'v' .. start, expect + 1, 't' .. start, ARGV[5])
redis.call('ZADD', index, expire, start)
local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', hash, last[2])
redis.call('EXPIREAT', index, last[2])
return 1
