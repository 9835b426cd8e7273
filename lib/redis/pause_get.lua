-- KEYS: pause; ARGV: host µs, trust. {found, until_ms, now_ms}.
local _, now = clock()
local til = redis.call('HGET', KEYS[1], 'until_ms')
if til then return {1, tonumber(til), now} end
return {0, 0, now}
