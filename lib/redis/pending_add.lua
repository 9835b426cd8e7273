-- KEYS: counter, due, by-message; ARGV: host µs, trust, prefix, chat_id, message_id,
-- delete_at_ms (host), by-message field, chat_key, owner ("": none).
-- Returns {id, delete_at_ms as stored}.
local _, now, shift = clock()
local da = tonumber(ARGV[6]) + shift
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', ARGV[3] .. 'pending:' .. id, 'chat_id', ARGV[4], 'message_id',
           ARGV[5], 'delete_at_ms', string.format('%.0f', da), 'attempts', 0,
           'created_at_ms', string.format('%.0f', now), 'chat_key', ARGV[8])
if ARGV[9] ~= '' then redis.call('HSET', ARGV[3] .. 'pending:' .. id, 'owner', ARGV[9]) end
redis.call('ZADD', KEYS[2], da, id)
redis.call('HSET', KEYS[3], ARGV[7], id)
return {id, da}
