-- KEYS: pause; ARGV: host µs, trust, until_ms (host), program. Later, never earlier.
local _, _, shift = clock()
local til = tonumber(ARGV[3]) + shift
local cur = redis.call('HGET', KEYS[1], 'until_ms')
if not cur or tonumber(cur) < til then
  redis.call('HSET', KEYS[1], 'until_ms', string.format('%.0f', til), 'set_by', ARGV[4])
end
return 0
