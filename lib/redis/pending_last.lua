-- KEYS: due; ARGV: host µs, trust. The latest next try: {found, next_try_ms, now_ms}.
local _, now = clock()
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then return {1, tonumber(last[2]), now} end
return {0, 0, now}
