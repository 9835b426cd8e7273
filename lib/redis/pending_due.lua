-- KEYS: due; ARGV: host µs, trust, prefix, max, lease_ms, ahead_ms (how far past now the
-- caller asks for rows). Claims and returns the rows due by the store's clock:
-- {now_ms, {id, chat_id, message_id, delete_at_ms, next_try_ms, attempts}, ...}
local _, now = clock()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now + tonumber(ARGV[6]),
                       'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
local out = {now}
for i = 1, #due, 2 do
  local id = due[i]
  local h = redis.call('HMGET', ARGV[3] .. 'pending:' .. id, 'chat_id',
                       'message_id', 'delete_at_ms', 'attempts')
  if h[1] then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), id)
    out[#out+1] = {tonumber(id), h[1], tonumber(h[2]), tonumber(h[3]),
                   tonumber(due[i+1]), tonumber(h[4])}
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
