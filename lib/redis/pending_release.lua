-- KEYS: due, row; ARGV: host µs, trust, id. Due at max(now, delete_at) if it is later now.
local _, now = clock()
local score = redis.call('ZSCORE', KEYS[1], ARGV[3])
local da = redis.call('HGET', KEYS[2], 'delete_at_ms')
if score and da and tonumber(score) > now then
  redis.call('ZADD', KEYS[1], math.max(now, tonumber(da)), ARGV[3])
end
return 0
