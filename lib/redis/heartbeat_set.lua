-- KEYS: heartbeat; ARGV: host µs, trust. The beat is the store's now: a host whose clock runs
-- ahead cannot write one from the future.
local _, now = clock()
redis.call('SET', KEYS[1], string.format('%.0f', now))
return 0
