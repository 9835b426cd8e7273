-- KEYS: due; ARGV: host µs, trust. The earliest next try: {found, next_try_ms, now_ms}.
local _, now = clock()
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then return {1, tonumber(first[2]), now} end
return {0, 0, now}
