-- KEYS: heartbeat; ARGV: host µs, trust. {found, beat_ms, now_ms}.
local _, now = clock()
local beat = redis.call('GET', KEYS[1])
if beat then return {1, tonumber(beat), now} end
return {0, 0, now}
