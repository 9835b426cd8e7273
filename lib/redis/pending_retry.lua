-- KEYS: due, row; ARGV: host µs, trust, id, next_try_ms (host). Never before delete_at.
-- Returns 1, or 0 when the row is gone.
local _, _, shift = clock()
local da = redis.call('HGET', KEYS[2], 'delete_at_ms')
if not da then return 0 end
redis.call('HINCRBY', KEYS[2], 'attempts', 1)
redis.call('ZADD', KEYS[1], math.max(tonumber(ARGV[4]) + shift, tonumber(da)), ARGV[3])
return 1
