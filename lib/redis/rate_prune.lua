-- KEYS: subjects; ARGV: host µs, trust, list key prefix, expired_ms (host), max subjects.
-- Returns the number of events dropped.
local _, _, shift = clock()
local expired = tonumber(ARGV[4]) + shift
local dropped = 0
for _, sub in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', expired,
                                'LIMIT', 0, tonumber(ARGV[5]))) do
  dropped = dropped + trim(ARGV[3] .. sub, expired, KEYS[1], sub)
end
return dropped
