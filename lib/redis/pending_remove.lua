-- KEYS: due, by-message; ARGV: prefix, id... Removes the rows and their look-up entries.
for i = 2, #ARGV do
  local key = ARGV[1] .. 'pending:' .. ARGV[i]
  local h = redis.call('HMGET', key, 'chat_id', 'message_id', 'chat_key')
  if h[1] then
    local f = (h[3] or string.lower(h[1])) .. ':' .. h[2]
    if redis.call('HGET', KEYS[2], f) == ARGV[i] then redis.call('HDEL', KEYS[2], f) end
  end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], ARGV[i])
end
return 0
