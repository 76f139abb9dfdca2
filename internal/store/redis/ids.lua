-- cairn: give feature names their short ids.
--
-- KEYS[1]  the mapping hash: FQN -> id, and #gen, #last, #layout
-- ARGV[1]  the layout version this client writes
-- ARGV[2]  the last generation this client knew, "" if none
-- ARGV[3], ...  FQNs
--
-- A new mapping gets a generation, the server's clock in milliseconds in
-- base 36 (but at least one more than ARGV[2]), so that a mapping created
-- after the old one was lost has a greater generation. An FQN without an id gets the next number of the
-- counter #last, in base 36; the counter only grows, so no id is handed out
-- twice in one generation.
--
-- Returns {generation, id, id, ...}, the ids aligned with the FQNs, or
-- fails with CAIRNLAYOUT when the mapping was made for another layout.
local m = KEYS[1]

local function base36(n)
  local digits = '0123456789abcdefghijklmnopqrstuvwxyz'
  local s = ''
  repeat
    local d = n % 36
    s = string.sub(digits, d + 1, d + 1) .. s
    n = (n - d) / 36
  until n == 0
  return s
end

local layout = redis.call('HGET', m, '#layout')
if layout and layout ~= ARGV[1] then
  return redis.error_reply('CAIRNLAYOUT mapping ' .. m .. ' has layout ' .. layout .. ', this client writes ' .. ARGV[1])
end
local gen = redis.call('HGET', m, '#gen')
if not gen then
  local t = redis.call('TIME')
  local n = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local floor = tonumber(ARGV[2], 36)
  if floor and n <= floor then
    n = floor + 1
  end
  gen = base36(n)
  redis.call('HSET', m, '#gen', gen, '#layout', ARGV[1])
end

local out = {gen}
for i = 3, #ARGV do
  local id = redis.call('HGET', m, ARGV[i])
  if not id then
    id = base36(redis.call('HINCRBY', m, '#last', 1))
    redis.call('HSET', m, ARGV[i], id)
  end
  out[#out + 1] = id
end
return out
