-- KEYS: by-message, due; ARGV: host µs, trust, prefix, field, lease_ms, margin_ms, owner
-- ("": none). Returns {claim, now_ms, id, chat_id, message_id, delete_at_ms, next_try_ms,
-- attempts}, or {0, now_ms} (also for another owner's row).
local _, now = clock()
local id = redis.call('HGET', KEYS[1], ARGV[4])
if not id then return {0, now} end
local row = ARGV[3] .. 'pending:' .. id
local h = redis.call('HMGET', row, 'chat_id', 'message_id', 'delete_at_ms', 'attempts',
                     'owner')
local score = redis.call('ZSCORE', KEYS[2], id)
if not h[1] or not score or (h[5] or '') ~= ARGV[7] then return {0, now} end
local lease = tonumber(ARGV[5])
local da = tonumber(h[3])
if da <= now + tonumber(ARGV[6]) then
  return {1, now, tonumber(id), h[1], tonumber(h[2]), da, tonumber(score), tonumber(h[4])}
end
redis.call('HSET', row, 'delete_at_ms', string.format('%.0f', now))
redis.call('ZADD', KEYS[2], now + lease, id)
return {2, now, tonumber(id), h[1], tonumber(h[2]), now, now + lease, tonumber(h[4])}
