-- cairn: read the live buckets of an entity's windowed feature whose
-- starts are in [ARGV[1], ARGV[2]] (seconds since the Unix epoch).
--
-- KEYS[1]  the buckets hash (see bucket_put.lua)
-- KEYS[2]  the expiry index
--
-- Returns a flat array of start, version, state for each bucket, in order
-- of start. Buckets expired by the server's clock are left out. The script
-- only reads.
local hash, index = KEYS[1], KEYS[2]
local from, to = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = tonumber(redis.call('TIME')[1])

local starts = {}
for _, s in ipairs(redis.call('ZRANGEBYSCORE', index, '(' .. now, '+inf')) do
  local n = tonumber(s)
  if n and n >= from and n <= to then
    starts[#starts + 1] = {n, s}
  end
end
table.sort(starts, function(a, b) return a[1] < b[1] end)

local out = {}
local chunk = 1000
for i = 1, #starts, chunk do
  local fields = {}
  for j = i, math.min(#starts, i + chunk - 1) do
    local s = starts[j][2]
    fields[#fields + 1] = s
    fields[#fields + 1] = 'v' .. s
  end
  local got = redis.call('HMGET', hash, unpack(fields))
  for k = 1, #fields, 2 do
    if got[k] and got[k + 1] then
      out[#out + 1] = fields[k]
      out[#out + 1] = got[k + 1]
      out[#out + 1] = got[k]
    end
  end
end
return out
